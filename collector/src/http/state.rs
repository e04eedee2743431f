//! What every HTTP handler reads: the collector's parts, and snapshots
//! taken on a background reader.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use campanile_territory::state::Territory;

use crate::alerts::Alerts;
use crate::clock::now_ms;
use crate::exposition::config::ExpositionConfig;
use crate::http::config::ApiConfig;
use crate::reach::Reach;
use crate::read::background::Background;
use crate::read::snapshot::Snapshot;
use crate::store::Store;
use crate::telemetry::Telemetry;

#[derive(Clone)]
pub struct HttpState {
    /// Where snapshots are taken and rendered, below the reports' priority.
    pub background: Background,
    pub store: Arc<Store>,
    pub telemetry: Arc<Telemetry>,
    pub exposition: ExpositionConfig,
    pub territory: Arc<Territory>,
    pub api: Arc<ApiConfig>,
    pub reach: Arc<Reach>,
    pub alerts: Arc<Alerts>,
    /// What making enrollment tokens needs; `None` when enrollment is off.
    pub enrollment: Option<Arc<crate::enroll::admin::Issuing>>,
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
