//! Alerts: built-in rules evaluated over the territory, grouped and
//! delivered as Alertmanager-shaped webhooks through a durable outbox, or
//! pushed to a real Alertmanager.
//!
//! - [`rules`]: snapshot → conditions that hold now;
//! - [`engine`]: pending / firing / resolved, silences and inhibition;
//! - [`dispatch`]: grouping, the notification log, the daily digest;
//! - [`store`]: the alerts' own SQLite file (state, log, outbox, windows);
//! - [`deliver`]: one task per receiver draining the outbox;
//! - [`alertmanager`]: the push to Alertmanager's API;
//! - [`webhook`]: the payload, signing and one POST.
//!
//! Evaluation runs on its own thread and reads the store through its
//! reader connection, and alert writes go to their own file, so neither
//! evaluation nor delivery ever holds up ingest.

pub(crate) mod alertmanager;
pub mod config;
pub(crate) mod deliver;
pub mod dispatch;
pub mod engine;
pub mod handle;
pub mod maintenance;
pub(crate) mod rules;
pub mod store;
pub(crate) mod timefmt;
pub mod webhook;

use crate::clock::now_ms;
use std::collections::{HashMap, hash_map::DefaultHasher};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::reach::Reach;
use crate::read::snapshot::Snapshot;
use crate::store::Store;
use crate::telemetry::Telemetry;
use campanile_territory::state::Territory;

pub use config::AlertsConfig;
use dispatch::{Dispatcher, LogEntry, LogKey};
use engine::Engine;
pub use handle::{Alerts, Resume, View};
use handle::{Msg, Offered};
pub use store::{AlertStore, AlertStoreError, OutboxStats};

/// The evaluation thread and the delivery tasks.
pub struct AlertsRunning {
    thread: std::thread::JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl AlertsRunning {
    /// Stops evaluating; delivery tasks stop on the shutdown signal. Whatever
    /// is still in the outbox goes after the next start.
    pub async fn stop(self, alerts: &Alerts) {
        let _ = alerts
            .poke
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Msg::Stop);
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Where evaluation reads from.
pub struct Sources {
    pub store: Arc<Store>,
    pub territory: Arc<Territory>,
    pub reach: Arc<Reach>,
    pub telemetry: Arc<Telemetry>,
}

/// Starts evaluation (its own thread) and delivery (tasks of the current
/// runtime).
pub fn run(
    alerts: Arc<Alerts>,
    resume: Resume,
    src: Sources,
    shutdown: watch::Receiver<bool>,
) -> AlertsRunning {
    let cfg = alerts.config.clone();
    let db = alerts.db.clone();
    for r in &cfg.receivers {
        for outcome in ["delivered", "retried", "rejected", "expired"] {
            src.telemetry
                .alert_notifications
                .with_label_values(&[&r.name, outcome]);
        }
    }
    let timing = deliver::Timing {
        max_age: cfg.outbox_max_age,
        retry_initial: cfg.retry_initial,
        retry_max: cfg.retry_max,
    };
    let mut tasks = Vec::new();
    let mut receiver_wakes = HashMap::new();
    for r in &cfg.receivers {
        let wake = Arc::new(Notify::new());
        receiver_wakes.insert(r.name.clone(), wake.clone());
        tasks.push(
            deliver::Worker {
                db: db.clone(),
                receiver: r.clone(),
                timing,
                telemetry: src.telemetry.clone(),
                wake,
            }
            .spawn(shutdown.clone()),
        );
    }
    let mut sink_wakes = Vec::new();
    for s in &cfg.alertmanagers {
        for outcome in ["delivered", "failed"] {
            src.telemetry
                .alertmanager_posts
                .with_label_values(&[&s.url, outcome]);
        }
        let wake = Arc::new(Notify::new());
        sink_wakes.push(wake.clone());
        tasks.push(
            alertmanager::Sink {
                sink: s.clone(),
                alerts: alerts.clone(),
                telemetry: src.telemetry.clone(),
                wake,
            }
            .spawn(shutdown.clone()),
        );
    }
    let rx = resume.rx;
    let looper = Loop {
        alerts,
        src,
        engine: Engine::new(resume.stored),
        dispatcher: Dispatcher::new(&cfg),
        log: resume.log,
        receiver_wakes,
        sink_wakes,
        last_signature: 0,
        last_eval_ms: None,
        last_prune_ms: i64::MIN / 2,
    };
    let thread = std::thread::Builder::new()
        .name("campanile-alerts".into())
        .spawn(move || {
            // Evaluation reads every host, as a scrape does: it waits for
            // the reports, not the other way round (see background.rs).
            crate::read::background::lower_this_threads_priority();
            looper.run(&rx)
        })
        .expect("spawn the alerts thread");
    AlertsRunning { thread, tasks }
}

struct Loop {
    alerts: Arc<Alerts>,
    src: Sources,
    engine: Engine,
    dispatcher: Dispatcher,
    log: HashMap<LogKey, LogEntry>,
    receiver_wakes: HashMap<String, Arc<Notify>>,
    sink_wakes: Vec<Arc<Notify>>,
    /// What the sinks last saw, to push at once when it changes.
    last_signature: u64,
    last_eval_ms: Option<i64>,
    last_prune_ms: i64,
}

/// Grouping granularity: group_wait and group_interval are honoured to
/// within this.
const TICK: Duration = Duration::from_secs(1);

/// Whether a scrape's snapshot taken at `taken_ms` may stand for one the
/// evaluation due at `now_ms` would take: within half an interval, the
/// bound [`Alerts::offer`] lets through.
fn fresh_for_evaluation(taken_ms: i64, now_ms: i64, eval_ms: i64) -> bool {
    now_ms - taken_ms <= eval_ms / 2
}

impl Loop {
    fn run(mut self, rx: &mpsc::Receiver<Msg>) {
        let cfg = self.alerts.config.clone();
        let eval_ms = cfg.evaluation_interval.as_millis() as i64;
        // Resolved alerts stay until their groups have told every receiver.
        let keep_resolved_ms = (15 * 60_000_i64)
            .max((cfg.group_wait + 2 * cfg.group_interval).as_millis() as i64 + 2 * eval_ms);
        let mut next_eval = i64::MIN;
        let mut force = false;
        let mut offered: Option<Box<Offered>> = None;
        loop {
            let now = now_ms();
            let mut changed = false;
            // A scrape's snapshot is taken if it is fresh, and brings the
            // evaluation forward by up to half an interval: evaluations fall
            // in step with the scrapes, and read nothing of their own.
            // Fresh is taken within half an interval, the bound `offer`
            // lets through: a scrape of 50,000 hosts hands its snapshot
            // over only after rendering it, 1 to 3 s after taking it, and a
            // bound of 2 s had every evaluation read its own (0.4 s of a
            // core more each, the scrape's work done twice).
            let offered_now = offered
                .take()
                .filter(|o| fresh_for_evaluation(o.snapshot.now_ms, now, eval_ms));
            if cfg.enabled && (force || now >= next_eval || offered_now.is_some()) {
                next_eval = now + eval_ms;
                // Re-armed only here: the one snapshot an offer let through
                // brings this about, and no other is let through before.
                self.alerts
                    .wants_snapshot_from_ms
                    .store(next_eval - eval_ms / 2, Ordering::Relaxed);
                self.evaluate(now, keep_resolved_ms, offered_now);
                self.dispatcher.regroup(self.engine.alerts(), now);
                changed = true;
            }
            force = false;
            if cfg.enabled {
                // Every tick: groups fall due between evaluations.
                changed |= self.dispatch(now);
            }
            if changed {
                self.publish();
            }
            match rx.recv_timeout(TICK) {
                Ok(Msg::Evaluate) => force = true,
                Ok(Msg::Snapshot(o)) => offered = Some(o),
                Ok(Msg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn evaluate(&mut self, now: i64, keep_resolved_ms: i64, offered: Option<Box<Offered>>) {
        let started = Instant::now();
        self.last_eval_ms = Some(now);
        let telemetry = &self.src.telemetry;
        let windows = match self.alerts.windows() {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot read maintenance windows; using the config's only");
                self.alerts.config.maintenance.clone()
            }
        };
        let source = if offered.is_some() { "scrape" } else { "own" };
        let (snap, probes) = match offered {
            Some(o) => (o.snapshot, o.probes),
            None => {
                let s = Snapshot::take(&self.src.store, &self.src.territory, now);
                let probes = s.site_probes(&self.src.reach.config.targets);
                (s, probes)
            }
        };
        let wan = self.src.reach.wan();
        let candidates = rules::evaluate(
            &rules::Inputs {
                snapshot: &snap,
                probes: &probes,
                wan: &wan,
            },
            &self.alerts.config.rules,
            &self.alerts.config.external_url,
        );
        let changes = self
            .engine
            .step(candidates, &windows, now, keep_resolved_ms);
        for a in &changes.upserts {
            tracing::info!(alert = a.name(), state = a.state().as_str(), labels = ?a.labels, "alert changed");
        }
        if let Err(e) = self.alerts.db.save(&changes) {
            // Kept in memory; stored with the next change.
            telemetry.alert_evaluation_failures.inc();
            tracing::error!(error = %e, "cannot store alert state");
        }
        // Windows that ended a week ago are history; looking once an hour
        // is enough.
        if now - self.last_prune_ms >= 3_600_000 {
            self.last_prune_ms = now;
            if let Err(e) = self.alerts.db.prune_windows(now - 7 * 86_400_000) {
                tracing::warn!(error = %e, "cannot prune old maintenance windows");
            }
        }
        telemetry
            .alert_evaluation_duration
            .observe(started.elapsed().as_secs_f64());
        telemetry
            .alert_evaluations
            .with_label_values(&[source])
            .inc();
        let mut h = DefaultHasher::new();
        for a in self.engine.alerts().values() {
            (a.fingerprint, a.state(), a.muted()).hash(&mut h);
        }
        let signature = h.finish();
        if signature != self.last_signature {
            self.last_signature = signature;
            for w in &self.sink_wakes {
                w.notify_one();
            }
        }
    }

    /// Groups due now go to the outbox; true when anything was stored.
    fn dispatch(&mut self, now: i64) -> bool {
        let alerts = self.engine.alerts();
        let mut flushes = self.dispatcher.due(alerts, &self.log, now);
        flushes.extend(self.dispatcher.digest(alerts, &self.log, now));
        if flushes.is_empty() {
            return false;
        }
        if let Err(e) = self.alerts.db.commit_flushes(&flushes, now) {
            // The groups try again at their next interval.
            tracing::error!(error = %e, "cannot enqueue notifications");
            return false;
        }
        for f in &flushes {
            self.log
                .insert((f.receiver.clone(), f.group_key.clone()), f.entry.clone());
            self.dispatcher.flushed(f);
            if f.payload.is_some() {
                tracing::info!(receiver = %f.receiver, group = %f.group_key, firing = f.entry.firing.len(), resolved = f.entry.resolved.len(), "notification enqueued");
                if let Some(w) = self.receiver_wakes.get(&f.receiver) {
                    w.notify_one();
                }
            }
        }
        true
    }

    fn publish(&self) {
        let outbox = self.alerts.db.outbox_stats().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the outbox");
            OutboxStats::default()
        });
        let view = View {
            alerts: self.engine.alerts().values().cloned().collect(),
            evaluated_ms: self.last_eval_ms,
            outbox,
        };
        self.alerts.view.store(Arc::new(view));
    }
}

#[cfg(test)]
mod tests {
    use super::fresh_for_evaluation;

    #[test]
    fn a_scrapes_snapshot_rendered_for_seconds_still_stands_for_the_evaluation() {
        let (now, eval) = (1_790_000_000_000, 15_000);
        // A scrape of 50,000 hosts offers its snapshot 1 to 3 s after taking it.
        assert!(fresh_for_evaluation(now - 3_000, now, eval));
        assert!(fresh_for_evaluation(now - 7_500, now, eval));
        assert!(!fresh_for_evaluation(now - 7_501, now, eval));
    }
}
