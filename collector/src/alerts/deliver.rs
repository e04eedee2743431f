//! One delivery task per receiver drains its part of the outbox, oldest
//! first: a notification leaves the outbox only when the receiver took it
//! (2xx), refused it for good (another 4xx: logged and counted, never
//! retried) or it outlived `outbox_max_age`. 5xx, 429, timeouts and
//! connection errors are retried with exponential backoff and jitter,
//! honouring `Retry-After`. A receiver that is down holds up only itself.

use crate::clock::now_ms;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::config::Receiver;
use super::store::{AlertStore, AlertStoreError, Pending};
use super::webhook::{self, Attempt};
use crate::telemetry::Telemetry;

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub max_age: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

/// Backoff after `attempts` failures: doubling from `retry_initial` up to
/// `retry_max`, with full jitter over its upper half so receivers coming
/// back are not hit by every collector queue at once.
pub fn backoff(t: &Timing, attempts: u32, retry_after: Option<Duration>) -> Duration {
    let exp = t
        .retry_initial
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(t.retry_max);
    let jittered = exp.mul_f64(0.5 + fastrand::f64() * 0.5);
    jittered.max(retry_after.unwrap_or_default().min(t.retry_max))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AlertStoreError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("task failed: {e}")),
    }
}

pub struct Worker {
    pub db: Arc<AlertStore>,
    pub receiver: Receiver,
    pub timing: Timing,
    pub telemetry: Arc<Telemetry>,
    pub wake: Arc<Notify>,
}

impl Worker {
    pub fn spawn(self, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let client = match webhook::client(
                self.receiver.timeout,
                self.receiver.ca_cert_path.as_deref(),
            ) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(receiver = %self.receiver.name, error = %e, "cannot build the HTTP client; notifications stay in the outbox");
                    return;
                }
            };
            loop {
                if *shutdown.borrow() {
                    return;
                }
                let wait = self.once(&client).await;
                let Some(wait) = wait else { continue };
                tokio::select! {
                    _ = shutdown.changed() => {}
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
        })
    }

    fn count(&self, outcome: &str) {
        self.telemetry
            .alert_notifications
            .with_label_values(&[&self.receiver.name, outcome])
            .inc();
    }

    /// One step; `Some(wait)` when there is nothing to do before `wait`.
    async fn once(&self, client: &reqwest::Client) -> Option<Duration> {
        let db = self.db.clone();
        let name = self.receiver.name.clone();
        let head = match blocking(move || db.head(&name)).await {
            Ok(Some(p)) => p,
            // Woken when something is enqueued; the long sleep is a
            // safety net only.
            Ok(None) => return Some(Duration::from_secs(60)),
            Err(e) => {
                tracing::error!(receiver = %self.receiver.name, error = %e, "cannot read the outbox");
                return Some(Duration::from_secs(5));
            }
        };
        let now = now_ms();
        let max_age_ms = i64::try_from(self.timing.max_age.as_millis()).unwrap_or(i64::MAX);
        if now - head.created_ms > max_age_ms {
            tracing::warn!(receiver = %self.receiver.name, id = head.id, attempts = head.attempts, "notification dropped: older than alerts.outbox_max_age_secs");
            self.count("expired");
            return self.remove(&head).await;
        }
        if head.next_attempt_ms > now {
            return Some(Duration::from_millis((head.next_attempt_ms - now) as u64));
        }
        let secret = self.receiver.signing_secret.as_deref();
        match webhook::post(client, &self.receiver.url, &head.payload, secret, now).await {
            Attempt::Delivered => {
                tracing::info!(receiver = %self.receiver.name, id = head.id, attempts = head.attempts + 1, "notification delivered");
                self.count("delivered");
                self.remove(&head).await
            }
            Attempt::Rejected { reason } => {
                tracing::warn!(receiver = %self.receiver.name, id = head.id, %reason, "receiver refused the notification; not retried");
                self.count("rejected");
                self.remove(&head).await
            }
            Attempt::Retry {
                reason,
                retry_after,
            } => {
                let attempts = head.attempts + 1;
                let delay = backoff(&self.timing, attempts, retry_after);
                tracing::warn!(receiver = %self.receiver.name, id = head.id, attempts, %reason, retry_in_ms = delay.as_millis() as u64, "notification not delivered; will retry");
                self.count("retried");
                let db = self.db.clone();
                let next = now_ms() + delay.as_millis() as i64;
                let id = head.id;
                if let Err(e) = blocking(move || db.retry_later(id, attempts, next, &reason)).await
                {
                    tracing::error!(receiver = %self.receiver.name, error = %e, "cannot record the retry");
                }
                Some(delay)
            }
        }
    }

    async fn remove(&self, head: &Pending) -> Option<Duration> {
        let db = self.db.clone();
        let id = head.id;
        match blocking(move || db.remove(id)).await {
            Ok(()) => None,
            Err(e) => {
                // Delivered but still queued: it would go again, which
                // receivers must tolerate anyway (at-least-once).
                tracing::error!(receiver = %self.receiver.name, error = %e, "cannot remove a notification from the outbox");
                Some(Duration::from_secs(5))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_limit_and_honours_retry_after() {
        let t = Timing {
            max_age: Duration::from_secs(3600),
            retry_initial: Duration::from_secs(2),
            retry_max: Duration::from_secs(60),
        };
        for _ in 0..50 {
            let b1 = backoff(&t, 1, None);
            assert!(
                b1 >= Duration::from_secs(1) && b1 <= Duration::from_secs(2),
                "{b1:?}"
            );
            let b3 = backoff(&t, 3, None);
            assert!(
                b3 >= Duration::from_secs(4) && b3 <= Duration::from_secs(8),
                "{b3:?}"
            );
            let b30 = backoff(&t, 30, None);
            assert!(b30 >= Duration::from_secs(30) && b30 <= Duration::from_secs(60));
            let ra = backoff(&t, 1, Some(Duration::from_secs(20)));
            assert!(ra >= Duration::from_secs(20), "{ra:?}");
            let capped = backoff(&t, 1, Some(Duration::from_secs(999)));
            assert!(capped <= Duration::from_secs(60), "{capped:?}");
        }
    }
}
