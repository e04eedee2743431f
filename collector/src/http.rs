//! The HTTP side: `/metrics` for Prometheus and `/healthz` for probes.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::config::ExpositionConfig;
use crate::exposition::{self, CollectorFacts};
use crate::ingest::now_ms;
use crate::store::Store;
use crate::telemetry::Telemetry;

#[derive(Clone)]
pub struct HttpState {
    pub store: Arc<Store>,
    pub telemetry: Arc<Telemetry>,
    pub exposition: ExpositionConfig,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    let rendered = tokio::task::spawn_blocking(move || {
        let hosts = s.store.host_states()?;
        let facts = CollectorFacts {
            now_ms: now_ms(),
            store_size_bytes: s.store.size_bytes(),
        };
        Ok::<_, crate::store::StoreError>(exposition::render(
            &hosts,
            &facts,
            &s.exposition,
            &s.telemetry,
        ))
    })
    .await;
    match rendered {
        Ok(Ok(body)) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read state for /metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("store error: {e}\n"),
            )
                .into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("render task failed: {e}\n"),
        )
            .into_response(),
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
