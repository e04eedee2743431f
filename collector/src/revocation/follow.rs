//! Follows the store's revocations: a cheap look at the table every
//! second, the serials read again only when it changed. The command line
//! writes a revocation into the store; within a second the running
//! collector refuses the certificate and closes its connections.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Revoked;
use crate::clock::now_ms;
use crate::store::revocations::RevocationsMark;
use crate::store::{Store, StoreError};

/// How often the store is looked at.
pub const EVERY: Duration = Duration::from_secs(1);

/// The revocations in force now, and the mark they were read at.
pub fn load(store: &Store) -> Result<(RevocationsMark, HashSet<String>), StoreError> {
    // The mark first: a revocation committed in between is then read
    // again at the next look, never missed.
    let mark = store.revocations_mark()?;
    let serials = store
        .revocations_in_force(now_ms())?
        .into_iter()
        .map(|r| r.serial)
        .collect();
    Ok((mark, serials))
}

/// Looks every `every` until `shutdown` turns true; `gauge` shows how many
/// serials are in force.
pub fn spawn(
    store: Arc<Store>,
    revoked: Arc<Revoked>,
    mut mark: RevocationsMark,
    gauge: prometheus::IntGauge,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    gauge.set(revoked.len() as i64);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                () = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
                _ = tick.tick() => {}
            }
            let s = store.clone();
            let looked = tokio::task::spawn_blocking(move || {
                let now = s.revocations_mark()?;
                if now == mark {
                    return Ok(None);
                }
                load(&s).map(Some)
            })
            .await;
            match looked {
                Ok(Ok(None)) => {}
                Ok(Ok(Some((new_mark, serials)))) => {
                    mark = new_mark;
                    let added = revoked.replace(serials);
                    gauge.set(revoked.len() as i64);
                    if added > 0 {
                        tracing::info!(added, in_force = revoked.len(), "certificates revoked");
                    }
                }
                Ok(Err(e)) => {
                    // The serials in force stay; a revocation is late, not
                    // lost: it is read once the store answers again.
                    if !failing {
                        tracing::warn!(error = %e, "cannot read revocations from the store; keeping those in force");
                    }
                    failing = true;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading revocations failed");
                    continue;
                }
            }
            if failing {
                tracing::info!("revocations readable again");
                failing = false;
            }
        }
    })
}
