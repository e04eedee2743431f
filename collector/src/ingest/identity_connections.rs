//! How many connections one certificate identity holds: an agent needs
//! one, and one more while it reconnects before its old connection is
//! seen dead. Beyond `max`, a new connection replaces the oldest, so a
//! stolen or copied certificate cannot multiply what one host may hold.
//! It also finds the connections of a certificate revoked while they are
//! open, to close them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

pub struct IdentityConnections {
    max: usize,
    replaced: prometheus::IntCounter,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Each identity's connections, oldest first.
    by_identity: HashMap<String, VecDeque<Entry>>,
    next_id: u64,
}

struct Entry {
    id: u64,
    /// Of the certificate the connection came with.
    serial: Option<String>,
    closing: Arc<Closing>,
}

/// Tells a connection to close, and why.
#[derive(Default)]
struct Closing {
    notify: Notify,
    revoked: AtomicBool,
}

/// Why a connection was told to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// A newer connection of the same identity took its place.
    Replaced,
    /// Its certificate was revoked.
    Revoked,
}

/// A connection's place among its identity's; dropped when it closes.
pub struct Registration {
    registry: Arc<IdentityConnections>,
    identity: String,
    id: u64,
    closing: Arc<Closing>,
}

impl IdentityConnections {
    /// `replaced` counts the connections closed for newer ones.
    pub fn new(max: usize, replaced: prometheus::IntCounter) -> Arc<Self> {
        Arc::new(Self {
            max,
            replaced,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding it; a poisoned map is still whole.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection of `identity` (its certificate's
    /// `serial`), telling the oldest ones beyond the bound to close.
    pub fn register(self: &Arc<Self>, identity: &str, serial: Option<&str>) -> Registration {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        let conns = inner.by_identity.entry(identity.to_owned()).or_default();
        while conns.len() >= self.max {
            let Some(oldest) = conns.pop_front() else {
                break;
            };
            // Stored if that connection is not waiting on it yet.
            oldest.closing.notify.notify_one();
            self.replaced.inc();
        }
        let closing = Arc::new(Closing::default());
        conns.push_back(Entry {
            id,
            serial: serial.map(str::to_owned),
            closing: closing.clone(),
        });
        Registration {
            registry: self.clone(),
            identity: identity.to_owned(),
            id,
            closing,
        }
    }

    /// Tells every connection whose certificate's serial is in `revoked`
    /// to close; returns how many.
    pub fn close_revoked(&self, revoked: &HashSet<String>) -> usize {
        let inner = self.lock();
        let mut closed = 0;
        for entry in inner.by_identity.values().flatten() {
            if entry.serial.as_ref().is_some_and(|s| revoked.contains(s))
                && !entry.closing.revoked.swap(true, Ordering::AcqRel)
            {
                entry.closing.notify.notify_one();
                closed += 1;
            }
        }
        closed
    }
}

impl Registration {
    /// Completes when the connection must close: a newer connection of
    /// the same identity replaced it, or its certificate was revoked.
    pub async fn closed(&self) -> Closed {
        self.closing.notify.notified().await;
        if self.closing.revoked.load(Ordering::Acquire) {
            Closed::Revoked
        } else {
            Closed::Replaced
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        if let Some(conns) = inner.by_identity.get_mut(&self.identity) {
            conns.retain(|e| e.id != self.id);
            if conns.is_empty() {
                inner.by_identity.remove(&self.identity);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed_now(r: &Registration) -> Option<Closed> {
        use std::future::Future;
        let fut = std::pin::pin!(r.closed());
        match fut.poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
            std::task::Poll::Ready(why) => Some(why),
            std::task::Poll::Pending => None,
        }
    }

    fn replaced_now(r: &Registration) -> bool {
        closed_now(r) == Some(Closed::Replaced)
    }

    #[test]
    fn a_third_connection_of_one_identity_replaces_the_oldest() {
        let reg = IdentityConnections::new(2, prometheus::IntCounter::new("r", "t").unwrap());
        let first = reg.register("pc-001", None);
        let second = reg.register("pc-001", None);
        let other = reg.register("pc-002", None);
        assert!(!replaced_now(&first));
        let third = reg.register("pc-001", None);
        assert!(replaced_now(&first), "the oldest goes");
        assert!(!replaced_now(&second) && !replaced_now(&third) && !replaced_now(&other));
        assert_eq!(reg.replaced.get(), 1);
        // A closed connection frees its place.
        drop(second);
        let _fourth = reg.register("pc-001", None);
        assert!(!replaced_now(&third));
        drop(first);
        assert_eq!(reg.lock().by_identity["pc-001"].len(), 2);
    }

    #[test]
    fn a_revocation_closes_the_connections_of_that_certificate_only() {
        let reg = IdentityConnections::new(2, prometheus::IntCounter::new("r", "t").unwrap());
        let old = reg.register("pc-001", Some("4a01"));
        let renewed = reg.register("pc-001", Some("4a02"));
        let other = reg.register("pc-002", Some("4b01"));
        let revoked: HashSet<String> = ["4a01".to_owned()].into();
        assert_eq!(reg.close_revoked(&revoked), 1);
        assert_eq!(closed_now(&old), Some(Closed::Revoked));
        assert_eq!(closed_now(&renewed), None, "its new certificate holds");
        assert_eq!(closed_now(&other), None);
        assert_eq!(reg.close_revoked(&revoked), 0, "told once");
        assert_eq!(reg.replaced.get(), 0);
    }
}
