//! Bearer tokens: a request is let through only with a token whose SHA-256
//! is configured, and carries who made it ([`Caller`]).

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::config::Role;
use crate::http::state::HttpState;
use crate::http::token;

/// Who made an API request, for handlers that need more than reading.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: String,
    pub role: Role,
}

/// Lets the request through only with a configured bearer token.
pub async fn require_token(State(s): State<HttpState>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = presented.filter(|t| !t.is_empty()) else {
        return unauthorized("a bearer token is required");
    };
    let digest = token::digest(token);
    // Comparing digests: timing reveals nothing about the token itself.
    match s.api.tokens.iter().find(|t| t.sha256 == digest) {
        Some(t) => {
            tracing::debug!(token = %t.name, path = %req.uri().path(), "API request");
            req.extensions_mut().insert(Caller {
                token: t.name.clone(),
                role: t.role,
            });
            next.run(req).await
        }
        None => unauthorized("unknown token"),
    }
}

fn unauthorized(reason: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"campanile\"")],
        format!("{reason}\n"),
    )
        .into_response()
}
