//! The task that keeps the probe plan fresh.

use std::sync::Arc;

use campanile_territory::state::Territory;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::now_ms;
use crate::reach::state::Reach;
use crate::read::background::Background;
use crate::read::snapshot::Snapshot;
use crate::store::Store;

/// Recomputes the plan at once and then every `probes.plan_refresh_secs`
/// until shutdown, from a snapshot of its own only when no scrape
/// refreshed it in the last half of that (see [`Reach::plan_due`]):
/// a plan is at most one and a half refresh intervals old.
pub fn spawn(
    reach: Arc<Reach>,
    background: Background,
    store: Arc<Store>,
    territory: Arc<Territory>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(reach.config.plan_refresh);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = ticker.tick() => {}
            }
            if !reach.plan_due(now_ms()) {
                continue;
            }
            let (r, s, t) = (reach.clone(), store.clone(), territory.clone());
            let computed = background
                .run(move || r.plan_from(&Snapshot::take(&s, &t, now_ms())))
                .await;
            if let Err(e) = computed {
                tracing::error!(error = %e, "probe plan task failed");
            }
        }
    })
}
