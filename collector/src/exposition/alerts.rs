//! The alerts' state in `/metrics`: how many alerts of each name are
//! pending, firing, silenced or inhibited, and how each receiver's outbox
//! is doing. Delivery counters live in the telemetry registry.

use std::collections::BTreeMap;

use crate::alerts::engine::State;
use crate::exposition::family::Family;
use crate::exposition::scrape::Scrape;

pub(super) fn families(scrape: &Scrape<'_>) -> Vec<Family> {
    let Some(alerts) = scrape.alerts else {
        return Vec::new();
    };
    let view = alerts.view();
    let mut counts: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
    for a in &view.alerts {
        let state = match a.state() {
            State::Resolved => continue,
            State::Pending => "pending",
            State::Firing if a.silenced_by.is_some() => "silenced",
            State::Firing if a.inhibited => "inhibited",
            State::Firing => "firing",
        };
        let severity = a.labels.get("severity").map_or("", String::as_str);
        *counts.entry((a.name(), severity, state)).or_default() += 1;
    }
    let mut active = Family::gauge(
        "campanile_alerts",
        "Alerts of the collector's built-in rules by state: pending (condition holds, \
         waiting for its duration), firing (notified), silenced (maintenance window), \
         inhibited (its site is dark or silent).",
    );
    for ((name, severity, state), n) in counts {
        active.push(
            &[
                ("alertname", name),
                ("severity", severity),
                ("state", state),
            ],
            n as f64,
        );
    }
    let mut pending = Family::gauge(
        "campanile_alert_outbox_notifications",
        "Notifications waiting in the outbox for the receiver.",
    );
    let mut oldest = Family::gauge(
        "campanile_alert_outbox_oldest_age_seconds",
        "Age of the oldest notification waiting for the receiver (0 when none waits).",
    );
    for r in &alerts.config.receivers {
        let (n, first) = view.outbox.get(&r.name).copied().unwrap_or((0, None));
        let l = [("receiver", r.name.as_str())];
        pending.push(&l, n as f64);
        oldest.push(
            &l,
            first.map_or(0.0, |t| ((scrape.now_ms - t).max(0) / 1000) as f64),
        );
    }
    let mut evaluated = Family::gauge(
        "campanile_alert_last_evaluation_timestamp_seconds",
        "When the built-in rules were last evaluated.",
    );
    evaluated.push_opt(&[], view.evaluated_ms.map(|t| (t / 1000) as f64));
    [active, pending, oldest, evaluated].into()
}
