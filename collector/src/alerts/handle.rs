//! What the evaluation thread, the delivery tasks and the HTTP side share:
//! [`Alerts`], with the latest [`View`] and the channel to the evaluation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use crate::alerts::config::AlertsConfig;
use crate::alerts::dispatch::{LogEntry, LogKey};
use crate::alerts::engine::Alert;
use crate::alerts::maintenance::Window;
use crate::alerts::store::{AlertStore, AlertStoreError, OutboxStats};
use crate::reach::aggregate::SiteProbes;
use crate::read::snapshot::Snapshot;

/// The latest evaluation, as the API and `/metrics` read it.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Shared with the engine: publishing copies pointers, not alerts.
    pub alerts: Vec<Arc<Alert>>,
    pub evaluated_ms: Option<i64>,
    pub outbox: OutboxStats,
}

pub(super) enum Msg {
    Evaluate,
    /// A scrape's snapshot, offered to the next evaluation.
    Snapshot(Box<Offered>),
    Stop,
}

/// What a scrape read and summed up, handed on so that an evaluation due
/// soon reads nothing itself.
pub(super) struct Offered {
    pub(super) snapshot: Snapshot,
    pub(super) probes: SiteProbes,
}

/// Shared by the evaluation thread, the delivery tasks and the HTTP side.
pub struct Alerts {
    pub config: AlertsConfig,
    pub(super) db: Arc<AlertStore>,
    pub(super) view: arc_swap::ArcSwap<View>,
    pub(super) poke: Mutex<mpsc::Sender<Msg>>,
    /// From when (Unix ms) the evaluation thread takes a scrape's snapshot
    /// instead of reading its own; `i64::MAX` while it wants none.
    pub(super) wants_snapshot_from_ms: AtomicI64,
}

impl Alerts {
    pub fn view(&self) -> Arc<View> {
        self.view.load_full()
    }

    /// Hands a scrape's snapshot to the next evaluation if one is due
    /// within half an interval; otherwise it is dropped here, so no
    /// snapshot (a few KiB per host) is held between scrapes. Reading every
    /// host and evaluating the territory cost the scrape and the evaluation
    /// the same, twice every 15 s: at 25,000 agents, more CPU than half the
    /// reports took.
    pub fn offer(&self, snapshot: Snapshot, probes: SiteProbes) {
        // One snapshot per evaluation: with two Prometheus servers scraping
        // at once, the second scrape's is dropped here, not queued.
        let wanted = self
            .wants_snapshot_from_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |from| {
                (snapshot.now_ms >= from).then_some(i64::MAX)
            })
            .is_ok();
        if !wanted {
            return;
        }
        let _ = self
            .poke
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Msg::Snapshot(Box::new(Offered { snapshot, probes })));
    }

    /// Evaluate now rather than at the next interval (a window changed).
    pub fn evaluate_now(&self) {
        let _ = self
            .poke
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Msg::Evaluate);
    }

    /// Windows from the config, then those set through the API (blocking).
    pub fn windows(&self) -> Result<Vec<Window>, AlertStoreError> {
        let mut all = self.config.maintenance.clone();
        all.extend(self.db.windows()?);
        Ok(all)
    }

    /// Stores a window set through the API and applies it (blocking).
    pub fn add_window(&self, w: Window) -> Result<Window, AlertStoreError> {
        let w = self.db.add_window(w)?;
        self.evaluate_now();
        Ok(w)
    }

    /// Removes an API window (blocking); false when there is none.
    pub fn delete_window(&self, id: i64) -> Result<bool, AlertStoreError> {
        let found = self.db.delete_window(id)?;
        if found {
            self.evaluate_now();
        }
        Ok(found)
    }
}

/// What [`Alerts::open`] read back, for `alerts::run` to resume from.
pub struct Resume {
    pub(super) stored: Vec<Alert>,
    pub(super) log: HashMap<LogKey, LogEntry>,
    pub(super) rx: mpsc::Receiver<Msg>,
}

impl Alerts {
    /// Opens the alert store and reads back the state (blocking). Nothing is
    /// evaluated or sent until `alerts::run`.
    pub fn open(cfg: AlertsConfig) -> Result<(Arc<Alerts>, Resume), AlertStoreError> {
        let db = Arc::new(AlertStore::open(&cfg.state_path)?);
        let stored = db.load_alerts()?;
        let log = db.load_log()?;
        let (tx, rx) = mpsc::channel();
        let alerts = Arc::new(Alerts {
            config: cfg,
            db,
            view: arc_swap::ArcSwap::from_pointee(View::default()),
            poke: Mutex::new(tx),
            wants_snapshot_from_ms: AtomicI64::new(i64::MAX),
        });
        Ok((alerts, Resume { stored, log, rx }))
    }
}
