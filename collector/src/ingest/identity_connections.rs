//! How many connections one certificate identity holds: an agent needs
//! one, and one more while it reconnects before its old connection is
//! seen dead. Beyond `max`, a new connection replaces the oldest, so a
//! stolen or copied certificate cannot multiply what one host may hold.

use std::collections::{HashMap, VecDeque};
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
    by_identity: HashMap<String, VecDeque<(u64, Arc<Notify>)>>,
    next_id: u64,
}

/// A connection's place among its identity's; dropped when it closes.
pub struct Registration {
    registry: Arc<IdentityConnections>,
    identity: String,
    id: u64,
    replaced: Arc<Notify>,
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

    /// Registers a new connection of `identity`, telling the oldest ones
    /// beyond the bound to close.
    pub fn register(self: &Arc<Self>, identity: &str) -> Registration {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        let conns = inner.by_identity.entry(identity.to_owned()).or_default();
        while conns.len() >= self.max {
            let Some((_, oldest)) = conns.pop_front() else {
                break;
            };
            // Stored if that connection is not waiting on it yet.
            oldest.notify_one();
            self.replaced.inc();
        }
        let replaced = Arc::new(Notify::new());
        conns.push_back((id, replaced.clone()));
        Registration {
            registry: self.clone(),
            identity: identity.to_owned(),
            id,
            replaced,
        }
    }
}

impl Registration {
    /// Completes when a newer connection of the same identity replaced
    /// this one.
    pub async fn replaced(&self) {
        self.replaced.notified().await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        if let Some(conns) = inner.by_identity.get_mut(&self.identity) {
            conns.retain(|(id, _)| *id != self.id);
            if conns.is_empty() {
                inner.by_identity.remove(&self.identity);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replaced_now(r: &Registration) -> bool {
        use std::future::Future;
        let fut = std::pin::pin!(r.replaced());
        fut.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
            .is_ready()
    }

    #[test]
    fn a_third_connection_of_one_identity_replaces_the_oldest() {
        let reg = IdentityConnections::new(2, prometheus::IntCounter::new("r", "t").unwrap());
        let first = reg.register("pc-001");
        let second = reg.register("pc-001");
        let other = reg.register("pc-002");
        assert!(!replaced_now(&first));
        let third = reg.register("pc-001");
        assert!(replaced_now(&first), "the oldest goes");
        assert!(!replaced_now(&second) && !replaced_now(&third) && !replaced_now(&other));
        assert_eq!(reg.replaced.get(), 1);
        // A closed connection frees its place.
        drop(second);
        let _fourth = reg.register("pc-001");
        assert!(!replaced_now(&third));
        drop(first);
        assert_eq!(reg.lock().by_identity["pc-001"].len(), 2);
    }
}
