//! The optional sink to a real Alertmanager: like Prometheus, the collector
//! posts its alerts to `/api/v2/alerts` again and again (every
//! `resend_interval_secs`, and at once when something changed), each firing
//! alert with an end a few resends away, so Alertmanager resolves them by
//! itself if the collector goes silent. Grouping, silences and routing are
//! then Alertmanager's.

use crate::clock::now_ms;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::config::AlertmanagerSink;
use super::engine::{Alert, State};
use super::timefmt::rfc3339;
use super::webhook::{self, Attempt};
use crate::alerts::handle::Alerts;
use crate::telemetry::Telemetry;

/// Alertmanager's `postableAlert`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

/// Firing alerts (not muted by a maintenance window or a dark site) and
/// recently resolved ones.
pub fn postable(
    alerts: &[Arc<Alert>],
    now_ms: i64,
    valid_for: Duration,
    external_url: &str,
) -> Vec<PostableAlert> {
    alerts
        .iter()
        .filter(|a| match a.state() {
            State::Firing => !a.muted(),
            State::Resolved => true,
            State::Pending => false,
        })
        .map(|a| {
            // The webhook's view of the alert, with an end in the future
            // while it fires.
            let w = webhook::payload_alert(a, external_url);
            PostableAlert {
                ends_at: match a.resolved_ms {
                    Some(_) => w.ends_at,
                    None => rfc3339(now_ms + valid_for.as_millis() as i64),
                },
                labels: w.labels,
                annotations: w.annotations,
                starts_at: w.starts_at,
                generator_url: w.generator_url,
            }
        })
        .collect()
}

pub struct Sink {
    pub sink: AlertmanagerSink,
    pub alerts: Arc<Alerts>,
    pub telemetry: Arc<Telemetry>,
    pub wake: Arc<Notify>,
}

impl Sink {
    pub fn spawn(self, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let url = format!("{}/api/v2/alerts", self.sink.url);
            let client = match webhook::client(self.sink.timeout, self.sink.ca_cert_path.as_deref())
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(alertmanager = %url, error = %e, "cannot build the HTTP client; alerts are not pushed");
                    return;
                }
            };
            // Like Prometheus: valid for four resends (or evaluations).
            let valid_for = 4 * self
                .sink
                .resend_interval
                .max(self.alerts.config.evaluation_interval);
            let count = |outcome: &str| {
                self.telemetry
                    .alertmanager_posts
                    .with_label_values(&[&self.sink.url, outcome])
                    .inc();
            };
            loop {
                let view = self.alerts.view();
                let now = now_ms();
                let body = postable(
                    &view.alerts,
                    now,
                    valid_for,
                    &self.alerts.config.external_url,
                );
                if !body.is_empty() {
                    let json = serde_json::to_string(&body).expect("alerts serialize");
                    match webhook::post(&client, &url, &json, None, now).await {
                        Attempt::Delivered => {
                            tracing::debug!(alertmanager = %url, alerts = body.len(), "alerts pushed");
                            count("delivered");
                        }
                        Attempt::Retry { reason, .. } | Attempt::Rejected { reason } => {
                            // The next push carries the whole state again:
                            // nothing to queue.
                            tracing::warn!(alertmanager = %url, %reason, "cannot push alerts; trying again at the next resend");
                            count("failed");
                        }
                    }
                }
                tokio::select! {
                    _ = shutdown.changed() => return,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(self.sink.resend_interval) => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::engine::sample_alert;

    #[test]
    fn pushes_firing_and_resolved_alerts_but_not_pending_or_muted_ones() {
        let firing = sample_alert("A", "Borgo", "pc-1", 1_000, None);
        let resolved = sample_alert("A", "Borgo", "pc-2", 1_000, Some(5_000));
        let mut muted = sample_alert("A", "Borgo", "pc-3", 1_000, None);
        muted.silenced_by = Some(1);
        let mut pending = sample_alert("A", "Borgo", "pc-4", 1_000, None);
        pending.fired_ms = None;
        let now = 1_795_334_400_000;
        let out = postable(
            &[firing, resolved, muted, pending].map(Arc::new),
            now,
            Duration::from_secs(240),
            "http://c:9471",
        );
        let hosts: Vec<&str> = out.iter().map(|p| p.labels["host"].as_str()).collect();
        assert_eq!(hosts, ["pc-1", "pc-2"]);
        assert_eq!(
            out[0].ends_at,
            rfc3339(now + 240_000),
            "valid for four resends"
        );
        assert_eq!(out[1].ends_at, rfc3339(5_000), "ends when it resolved");
        assert!(
            out[0]
                .generator_url
                .starts_with("http://c:9471/api/v1/alerts?fingerprint=")
        );
    }
}
