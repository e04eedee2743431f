//! `campanile_agent_certificates{ca}`: how many agents hold a valid
//! certificate of each CA (by its SHA-256, `by_hand` for certificates
//! issued by hand), read from the store every [`EVERY`]. During a CA
//! rollover it shows the agents moving; `pki retire-ca` waits for the old
//! CA's count to reach zero.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::now_ms;
use crate::store::Store;

pub const EVERY: Duration = Duration::from_secs(30);

/// Sets `gauge` now and every `every` until `shutdown` turns true.
pub fn spawn(
    store: Arc<Store>,
    gauge: prometheus::IntGaugeVec,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
                _ = tick.tick() => {}
            }
            let s = store.clone();
            let counted = tokio::task::spawn_blocking(move || {
                let now = now_ms();
                Ok::<_, crate::store::StoreError>((
                    s.hosts_by_ca(now)?,
                    s.hosts_with_certificates_by_hand(now)?.count,
                ))
            })
            .await;
            match counted {
                Ok(Ok((by_ca, by_hand))) => {
                    // A retired CA's series goes.
                    gauge.reset();
                    for (ca, n) in by_ca {
                        gauge.with_label_values(&[&ca]).set(n);
                    }
                    gauge.with_label_values(&["by_hand"]).set(by_hand as i64);
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot count agents' certificates by CA"),
                Err(e) => tracing::warn!(error = %e, "counting agents' certificates by CA failed"),
            }
        }
    })
}
