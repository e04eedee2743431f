//! The HTTP side: `/metrics` for Prometheus, `/healthz` for probes and the
//! read-only JSON/CSV API under `/api/v1` (see [`crate::api`]).
//!
//! API requests need `Authorization: Bearer <token>`, matched by SHA-256
//! against the configured tokens; `/metrics` too when `protect_metrics` is
//! set. `/healthz` is always open (it says nothing but "ok").

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::config::{ApiConfig, ExpositionConfig};
use crate::exposition::{self, Scrape};
use crate::ingest::now_ms;
use crate::reach::Reach;
pub use crate::snapshot::Snapshot;
use crate::store::{Store, StoreError};
use crate::telemetry::Telemetry;
use crate::territory::state::Territory;

#[derive(Clone)]
pub struct HttpState {
    /// Where snapshots are taken and rendered, below the reports' priority.
    pub background: crate::background::Background,
    pub store: Arc<Store>,
    pub telemetry: Arc<Telemetry>,
    pub exposition: ExpositionConfig,
    pub territory: Arc<Territory>,
    pub api: Arc<ApiConfig>,
    pub reach: Arc<Reach>,
    pub alerts: Arc<crate::alerts::Alerts>,
}

impl HttpState {
    /// Takes every host's state and evaluates the territory (blocking: run
    /// it on a background reader).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::take(&self.store, &self.territory, now_ms())
    }

    /// Runs `f` over a fresh snapshot on a background reader; a failed task
    /// becomes 500 with the reason.
    pub async fn with_snapshot<T: Send + 'static>(
        &self,
        f: impl FnOnce(&HttpState, Snapshot) -> T + Send + 'static,
    ) -> Result<T, Response> {
        let s = self.clone();
        match self.background.run(move || f(&s, s.snapshot())).await {
            Ok(v) => Ok(v),
            Err(e) => Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("task failed: {e}\n"),
            )
                .into_response()),
        }
    }
}

fn store_error(e: StoreError) -> Response {
    tracing::error!(error = %e, "cannot read the store");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("store error: {e}\n"),
    )
        .into_response()
}

pub fn router(state: HttpState) -> Router {
    let metrics = Router::new().route("/metrics", get(metrics));
    let metrics = if state.api.protect_metrics {
        metrics.layer(middleware::from_fn_with_state(state.clone(), require_token))
    } else {
        metrics
    };
    Router::new()
        .merge(metrics)
        .nest(
            "/api/v1",
            crate::api::routes()
                .layer(middleware::from_fn_with_state(state.clone(), require_token)),
        )
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// Lets the request through only with a configured bearer token.
/// Who made an API request, for handlers that need more than reading.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: String,
    pub role: crate::config::Role,
}

async fn require_token(State(s): State<HttpState>, mut req: Request, next: Next) -> Response {
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
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    // Comparing digests: timing reveals nothing about the token itself.
    match s
        .api
        .tokens
        .iter()
        .find(|t| t.sha256.as_slice() == digest.as_ref())
    {
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

async fn metrics(State(s): State<HttpState>) -> Response {
    let rendered = s
        .with_snapshot(|s, snap| {
            let counters = s.store.probe_counters()?;
            let probes = snap.site_probes(&s.reach.config.targets);
            let parts = exposition::render_parts(
                &Scrape {
                    hosts: &snap.hosts,
                    view: &snap.view,
                    register: &snap.loaded.register,
                    reload: &s.territory.status(),
                    now_ms: snap.now_ms,
                    store_size_bytes: s.store.size_bytes(),
                    probes: &probes,
                    probe_counters: &counters,
                    wan: &s.reach.wan(),
                    alerts: Some(&s.alerts),
                },
                &s.exposition,
                &s.telemetry,
            );
            // The scrape's snapshot serves the probe plan and the alerts
            // too, rather than each reading every host again.
            if s.reach.plan_due(snap.now_ms) {
                s.reach.plan_from(&snap);
            }
            s.alerts.offer(snap, probes);
            Ok::<_, StoreError>(parts)
        })
        .await;
    match rendered {
        Ok(Err(e)) => store_error(e),
        Ok(Ok(parts)) => {
            let len: usize = parts.iter().map(String::len).sum();
            let body = axum::body::Body::from_stream(tokio_stream::iter(
                parts
                    .into_iter()
                    .map(|p| Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(p))),
            ));
            (
                StatusCode::OK,
                [
                    (
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8".to_owned(),
                    ),
                    (header::CONTENT_LENGTH, len.to_string()),
                ],
                body,
            )
                .into_response()
        }
        Err(resp) => resp,
    }
}

async fn healthz(State(s): State<HttpState>) -> impl IntoResponse {
    let ok = tokio::task::spawn_blocking(move || s.store.ping().is_ok())
        .await
        .unwrap_or(false);
    if ok {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n")
    }
}
