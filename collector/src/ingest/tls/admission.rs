//! Which connections may wait for their TLS handshake: a bound per source
//! and in all, shared fairly between sources, and the sources that
//! recently presented a verified certificate.
//!
//! A connection holds a [`Ticket`] from `accept` until its handshake ends.
//! Anyone who can reach the port can open connections and send nothing;
//! without a bound, a few hundred such connections filled every handshake
//! slot for the whole handshake timeout, and after a restart the
//! territory's agents were kept out. Now a source holds at most
//! `max_per_source` connections before authentication, and when all
//! `max_total` are taken a newcomer from a source holding less than its
//! fair share (the total over the sources present) takes the place of the
//! oldest connection of the source holding the most.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::ingest::tls::source::SourceKey;

/// Bounds on connections before authentication.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    pub max_per_source: usize,
    pub max_total: usize,
    /// How long a source that presented a verified certificate goes first
    /// for a handshake slot; `None`: no source goes first.
    pub known_source_ttl: Option<Duration>,
}

/// Why a connection was closed before its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its source holds `max_per_source` connections already.
    SourceLimit,
    /// All `max_total` are taken and its source holds its fair share.
    TotalLimit,
}

/// Gauges the admission keeps current.
#[derive(Clone)]
pub struct AdmissionGauges {
    pub unauthenticated: prometheus::IntGauge,
    pub sources: prometheus::IntGauge,
    pub known_sources: prometheus::IntGauge,
}

pub struct Admission {
    limits: AdmissionLimits,
    gauges: AdmissionGauges,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Each source's connections, oldest first.
    sources: HashMap<SourceKey, VecDeque<Entry>>,
    total: usize,
    next_id: u64,
    /// When each source last presented a verified certificate.
    known: HashMap<SourceKey, Instant>,
}

struct Entry {
    id: u64,
    evict: Arc<Notify>,
}

/// Sources remembered as known at most; beyond, those past the TTL are
/// forgotten, and if that is not enough, all (a flood of verified
/// certificates from that many addresses is no attack this defends).
const MAX_KNOWN_SOURCES: usize = 1 << 18;

impl Admission {
    pub fn new(limits: AdmissionLimits, gauges: AdmissionGauges) -> Arc<Self> {
        Arc::new(Self {
            limits,
            gauges,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding it; a poisoned map is still whole.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection from `key`, or says why not. When the
    /// total is full this may evict an older connection of another source.
    pub fn enter(self: &Arc<Self>, key: SourceKey) -> Result<Ticket, Refused> {
        let mut inner = self.lock();
        let held = inner.sources.get(&key).map_or(0, VecDeque::len);
        if held >= self.limits.max_per_source {
            return Err(Refused::SourceLimit);
        }
        if inner.total >= self.limits.max_total {
            let present = inner.sources.len() + usize::from(held == 0);
            let fair_share = (self.limits.max_total / present).max(1);
            if held >= fair_share {
                return Err(Refused::TotalLimit);
            }
            inner.evict_from_largest();
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let evict = Arc::new(Notify::new());
        inner.sources.entry(key).or_default().push_back(Entry {
            id,
            evict: evict.clone(),
        });
        inner.total += 1;
        self.update_gauges(&inner);
        Ok(Ticket {
            admission: self.clone(),
            key,
            id,
            evict,
        })
    }

    /// Records that `key` presented a verified certificate just now.
    pub fn verified(&self, key: SourceKey) {
        let Some(ttl) = self.limits.known_source_ttl else {
            return;
        };
        let mut inner = self.lock();
        let now = Instant::now();
        inner.known.insert(key, now);
        if inner.known.len() > MAX_KNOWN_SOURCES {
            inner.known.retain(|_, at| now.duration_since(*at) < ttl);
            if inner.known.len() > MAX_KNOWN_SOURCES {
                inner.known.clear();
            }
        }
        self.gauges.known_sources.set(inner.known.len() as i64);
    }

    /// Whether `key` presented a verified certificate within the TTL.
    pub fn is_known(&self, key: SourceKey) -> bool {
        let Some(ttl) = self.limits.known_source_ttl else {
            return false;
        };
        self.lock()
            .known
            .get(&key)
            .is_some_and(|at| at.elapsed() < ttl)
    }

    fn leave(&self, key: SourceKey, id: u64) {
        let mut inner = self.lock();
        if let Some(conns) = inner.sources.get_mut(&key)
            && let Some(at) = conns.iter().position(|e| e.id == id)
        {
            conns.remove(at);
            if conns.is_empty() {
                inner.sources.remove(&key);
            }
            inner.total -= 1;
        }
        self.update_gauges(&inner);
    }

    fn update_gauges(&self, inner: &Inner) {
        self.gauges.unauthenticated.set(inner.total as i64);
        self.gauges.sources.set(inner.sources.len() as i64);
    }
}

impl Inner {
    /// Closes the oldest connection of the source holding the most.
    fn evict_from_largest(&mut self) {
        let Some(key) = self
            .sources
            .iter()
            .max_by_key(|(_, conns)| conns.len())
            .map(|(k, _)| *k)
        else {
            return;
        };
        let conns = self.sources.get_mut(&key).expect("just found");
        if let Some(oldest) = conns.pop_front() {
            // Stored if the connection is not waiting on it yet.
            oldest.evict.notify_one();
            self.total -= 1;
        }
        if conns.is_empty() {
            self.sources.remove(&key);
        }
    }
}

/// A connection's place until its handshake ends (dropped then).
pub struct Ticket {
    admission: Arc<Admission>,
    key: SourceKey,
    id: u64,
    evict: Arc<Notify>,
}

impl Ticket {
    pub fn source(&self) -> SourceKey {
        self.key
    }

    /// Completes when a newcomer of a smaller source took this place.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.leave(self.key, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges() -> AdmissionGauges {
        let g = |n: &str| prometheus::IntGauge::new(n, "test").unwrap();
        AdmissionGauges {
            unauthenticated: g("u"),
            sources: g("s"),
            known_sources: g("k"),
        }
    }

    fn admission(max_per_source: usize, max_total: usize) -> Arc<Admission> {
        Admission::new(
            AdmissionLimits {
                max_per_source,
                max_total,
                known_source_ttl: Some(Duration::from_secs(3600)),
            },
            gauges(),
        )
    }

    fn key(n: u8) -> SourceKey {
        SourceKey::of(std::net::IpAddr::from([192, 0, 2, n]))
    }

    fn evicted_now(t: &Ticket) -> bool {
        use std::future::Future;
        let fut = std::pin::pin!(t.evicted());
        let waker = std::task::Waker::noop();
        fut.poll(&mut std::task::Context::from_waker(waker))
            .is_ready()
    }

    #[test]
    fn a_source_holds_at_most_its_limit_and_gets_a_place_back_when_one_ends() {
        let a = admission(2, 100);
        let first = a.enter(key(1)).unwrap();
        let _second = a.enter(key(1)).unwrap();
        assert_eq!(a.enter(key(1)).err(), Some(Refused::SourceLimit));
        assert!(a.enter(key(2)).is_ok(), "another source is not affected");
        drop(first);
        assert!(a.enter(key(1)).is_ok());
    }

    #[test]
    fn when_all_places_are_taken_a_small_source_displaces_the_largest() {
        let a = admission(100, 4);
        let flood: Vec<Ticket> = (0..4).map(|_| a.enter(key(1)).unwrap()).collect();
        // The flooding source is at its fair share and more: refused.
        assert_eq!(a.enter(key(1)).err(), Some(Refused::TotalLimit));
        // A newcomer takes the flood's oldest place.
        let agent = a.enter(key(2)).unwrap();
        assert!(evicted_now(&flood[0]), "the oldest of the largest source");
        assert!(!flood[1..].iter().any(evicted_now));
        assert!(!evicted_now(&agent));
        // Two sources now: a fair share of 2 each.
        let _second = a.enter(key(2)).unwrap();
        assert!(evicted_now(&flood[1]));
        assert_eq!(a.enter(key(2)).err(), Some(Refused::TotalLimit));
        assert_eq!(a.gauges.unauthenticated.get(), 4);
        drop(flood);
        assert_eq!(a.gauges.unauthenticated.get(), 2);
        assert_eq!(a.gauges.sources.get(), 1);
    }

    #[test]
    fn a_source_is_known_once_it_presented_a_verified_certificate() {
        let a = admission(10, 10);
        assert!(!a.is_known(key(1)));
        a.verified(key(1));
        assert!(a.is_known(key(1)));
        assert!(!a.is_known(key(2)));
        let off = Admission::new(
            AdmissionLimits {
                max_per_source: 10,
                max_total: 10,
                known_source_ttl: None,
            },
            gauges(),
        );
        off.verified(key(1));
        assert!(!off.is_known(key(1)), "priority switched off");
    }
}
