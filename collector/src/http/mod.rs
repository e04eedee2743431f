//! The HTTP side: `/metrics` for Prometheus, `/healthz` for probes and the
//! JSON/CSV API under `/api/v1` (see [`api`]).
//!
//! API requests need `Authorization: Bearer <token>`, matched by SHA-256
//! against the configured tokens ([`auth`]); `/metrics` too when
//! `protect_metrics` is set. `/healthz` is always open (it says nothing but
//! "ok").

pub mod api;
pub(crate) mod auth;
pub mod config;
pub(crate) mod reply;
pub mod state;
pub mod token;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::exposition::{self, Scrape};
use crate::store::StoreError;
use auth::require_token;
use state::HttpState;

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
            api::routes().layer(middleware::from_fn_with_state(state.clone(), require_token)),
        )
        .route("/healthz", get(healthz))
        .with_state(state)
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
                    store_health: {
                        let i = s.store.integrity();
                        exposition::scrape::StoreHealth {
                            integrity_problems: i.problems.len(),
                            hosts_last_run: i.hosts_last_run,
                            hosts_lost: i.hosts_lost(),
                            damaged_rows: s.store.damaged_rows(),
                        }
                    },
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
        Ok(Err(e)) => reply::store_error(e),
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
