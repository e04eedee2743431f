//! Enrollment tokens over the API, for tokens of role `enroll`: the same
//! operations as `campanile-collector enroll new|list|revoke`.
//!
//! - `GET /enrollment/tokens`: every token, with uses left and state.
//! - `POST /enrollment/tokens` `{"site", "uses", "expires_in", "name",
//!   "replace"}`: a new token, shown in this answer only, with its install
//!   commands.
//! - `DELETE /enrollment/tokens/{id}`: ends a token.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::enroll::admin::{self, AdminError, NewTokenArgs};
use crate::http::auth::Caller;
use crate::http::config::Role;
use crate::http::reply::not_found;
use crate::http::state::HttpState;
use crate::store::certificates::TokenRow;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// The refusal when the caller may not manage enrollment, or it is off.
fn refuse(s: &HttpState, caller: &Caller) -> Option<Response> {
    if caller.role != Role::Enroll {
        return Some(error(
            StatusCode::FORBIDDEN,
            format!(
                "token {} may not manage enrollment; that needs role \"enroll\"",
                caller.token
            ),
        ));
    }
    s.enrollment
        .is_none()
        .then(|| not_found(AdminError::Disabled.to_string()))
}

#[derive(Serialize)]
struct TokenView<'a> {
    #[serde(flatten)]
    row: &'a TokenRow,
    state: &'static str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewToken {
    site: String,
    #[serde(default = "one")]
    uses: u32,
    #[serde(default = "seven_days")]
    expires_in: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    replace: bool,
}

fn one() -> u32 {
    1
}
fn seven_days() -> String {
    "7d".into()
}

pub(super) async fn list(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    if let Some(r) = refuse(&s, &caller) {
        return r;
    }
    let store = s.store.clone();
    match on_store(move || store.enrollment_tokens()).await {
        Ok(rows) => {
            let now = now_ms();
            let views: Vec<TokenView<'_>> = rows
                .iter()
                .map(|row| TokenView {
                    row,
                    state: admin::state(row, now),
                })
                .collect();
            Json(views).into_response()
        }
        Err(r) => r,
    }
}

/// Runs a store call off the async threads; its failure becomes a 500.
async fn on_store<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(crate::http::reply::store_error(e)),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("task failed: {e}"),
        )),
    }
}

pub(super) async fn create(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<NewToken>,
) -> Response {
    if let Some(r) = refuse(&s, &caller) {
        return r;
    }
    let Some(issuing) = s.enrollment.clone() else {
        return not_found(AdminError::Disabled.to_string());
    };
    let loaded = s.territory.current();
    let register_path = s.territory.config().register_path.clone();
    let register = register_path.as_deref().map(|p| (&loaded.register, p));
    let spec = match (NewTokenArgs {
        site: &body.site,
        uses: body.uses,
        expires_in: &body.expires_in,
        name: &body.name,
        may_replace: body.replace,
    })
    .validated(register)
    {
        Ok(spec) => spec,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    let store = s.store.clone();
    let now = now_ms();
    let made = tokio::task::spawn_blocking(move || {
        let pin = issuing.pin().map_err(AdminError::from)?;
        admin::create_token(&*store, &spec, pin, now).map(|t| (t, issuing))
    })
    .await;
    match made {
        Ok(Ok(((token, row), issuing))) => {
            tracing::info!(id = %row.id, site = %row.site, uses = row.uses_total, by = %caller.token,
                "enrollment token made");
            let install: Vec<_> = admin::install_commands(&issuing.endpoint, &token)
                .into_iter()
                .map(|(platform, command)| serde_json::json!({ "platform": platform, "command": command }))
                .collect();
            (
                StatusCode::CREATED,
                Json(serde_json::json!({
                    "token": token.to_string(),
                    "id": row.id,
                    "site": row.site,
                    "uses": row.uses_total,
                    "expires_ms": row.expires_ms,
                    "install": install,
                })),
            )
                .into_response()
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("task failed: {e}"),
        ),
    }
}

pub(super) async fn revoke(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = refuse(&s, &caller) {
        return r;
    }
    let store = s.store.clone();
    let now = now_ms();
    let id2 = id.clone();
    match on_store(move || store.revoke_enrollment_token(&id2, now)).await {
        Ok(true) => {
            tracing::info!(%id, by = %caller.token, "enrollment token revoked");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => not_found(AdminError::NoSuchToken(id).to_string()),
        Err(r) => r,
    }
}
