//! Error answers shared by the handlers.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// 404 with `{"error": what}`.
pub fn not_found(what: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": what })),
    )
        .into_response()
}

/// 500 for a store that cannot be read, logged.
pub fn store_error(e: StoreError) -> Response {
    tracing::error!(error = %e, "cannot read the store");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("store error: {e}\n"),
    )
        .into_response()
}
