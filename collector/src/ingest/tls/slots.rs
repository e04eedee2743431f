//! Handshake slots, handed out fairly: a bound on the TLS handshakes run
//! at once, in all and per source, and an order for the connections
//! waiting that a flood cannot jump.
//!
//! Handshakes are what an overloaded collector spends its CPU on (see
//! [`super::acceptor::incoming`]), so at most `max_total` run at once.
//! When a slot frees, it goes to the connection waiting that comes first
//! in this order:
//! 1. from a source that recently presented a verified certificate
//!    (when that option is on): an agent that was here before;
//! 2. from the source running the fewest handshakes now, so a flood from
//!    one source or a few waits behind everyone else;
//! 3. the longest waiting.
//!
//! A source runs at most `max_per_source` handshakes at once; its other
//! connections wait even when slots are free.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::ingest::tls::source::SourceKey;

pub struct Slots {
    max_total: usize,
    max_per_source: usize,
    queued: prometheus::IntGauge,
    prioritized: prometheus::IntCounter,
    inner: Mutex<Inner>,
}

/// The waiting connections, kept so that the next one to serve is found,
/// and a slot handed out, in O(log n) of the sources waiting: under load
/// thousands wait and hundreds of slots free each second. (A scan of
/// every waiter per slot, as this once was, made the collector spend its
/// CPU on the scan while the queue grew: at 50,000 simulated agents it
/// acknowledged nothing for minutes.)
#[derive(Default)]
struct Inner {
    running: usize,
    sources: HashMap<SourceKey, Source>,
    /// The sources that may start a handshake now (something waiting,
    /// below their own bound), first to serve first.
    ready: BTreeSet<Rank>,
    /// Arrival numbers of the waiting connections from unknown sources,
    /// to tell when a known one goes ahead of them.
    unknown_waiting: BTreeSet<u64>,
    waiting: usize,
    next_seq: u64,
}

/// A ready source's place: known sources first, then the source running
/// the fewest handshakes, then the longest waiting (its oldest
/// connection's arrival), then the address, to make it unique.
type Rank = (bool, usize, u64, SourceKey);

#[derive(Default)]
struct Source {
    running: usize,
    /// Oldest first.
    waiting: VecDeque<Waiter>,
    /// Its entry in `ready`, when it has one.
    rank: Option<Rank>,
}

struct Waiter {
    seq: u64,
    known: bool,
    granted: oneshot::Sender<()>,
}

/// A running handshake's slot, given back when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    key: SourceKey,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.slots.lock();
        inner.running -= 1;
        if let Some(src) = inner.sources.get_mut(&self.key) {
            src.running -= 1;
        }
        self.slots.settle(&mut inner, self.key);
        self.slots.dispatch(&mut inner);
    }
}

/// A connection's place in the queue while it waits; leaves the queue
/// when dropped (given up, timed out, or its connection closed).
struct Queued<'a> {
    slots: &'a Slots,
    key: SourceKey,
    seq: u64,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        let mut inner = self.slots.lock();
        let Some(src) = inner.sources.get_mut(&self.key) else {
            return;
        };
        // At most a source's admission bound of entries: a short scan.
        let Some(at) = src.waiting.iter().position(|w| w.seq == self.seq) else {
            return; // granted already
        };
        let w = src.waiting.remove(at).expect("index from position");
        if !w.known {
            inner.unknown_waiting.remove(&w.seq);
        }
        inner.waiting -= 1;
        self.slots.settle(&mut inner, self.key);
        self.slots.queued.set(inner.waiting as i64);
    }
}

impl Slots {
    /// `queued` counts the connections waiting; `prioritized` the slots a
    /// known source got ahead of an unknown one that waited longer.
    pub fn new(
        max_total: usize,
        max_per_source: usize,
        queued: prometheus::IntGauge,
        prioritized: prometheus::IntCounter,
    ) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_source,
            queued,
            prioritized,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding it; a poisoned queue is still whole.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits at most `wait` for a slot for a connection from `key`;
    /// `known`: the source recently presented a verified certificate.
    pub async fn acquire(
        self: &Arc<Self>,
        key: SourceKey,
        known: bool,
        wait: Duration,
    ) -> Option<Slot> {
        let (granted, mut rx) = oneshot::channel();
        let queued = {
            let mut inner = self.lock();
            let seq = inner.next_seq;
            inner.next_seq += 1;
            inner.waiting += 1;
            if !known {
                inner.unknown_waiting.insert(seq);
            }
            inner
                .sources
                .entry(key)
                .or_default()
                .waiting
                .push_back(Waiter {
                    seq,
                    known,
                    granted,
                });
            self.settle(&mut inner, key);
            self.dispatch(&mut inner);
            Queued {
                slots: self,
                key,
                seq,
            }
        };
        let got = tokio::select! {
            r = &mut rx => r.is_ok(),
            () = tokio::time::sleep(wait) => {
                // Out of the queue first, so no slot can be granted now.
                drop(queued);
                // A slot granted at the last moment is still ours: take it
                // rather than lose it.
                rx.close();
                return rx.try_recv().is_ok().then(|| Slot {
                    slots: self.clone(),
                    key,
                });
            }
        };
        drop(queued);
        got.then(|| Slot {
            slots: self.clone(),
            key,
        })
    }

    /// Puts `key` where it now belongs in `ready` (or out of it), and
    /// forgets a source with nothing running and nothing waiting.
    fn settle(&self, inner: &mut Inner, key: SourceKey) {
        let Some(src) = inner.sources.get_mut(&key) else {
            return;
        };
        let rank = src
            .waiting
            .front()
            .filter(|_| src.running < self.max_per_source)
            .map(|w| (!w.known, src.running, w.seq, key));
        if src.rank != rank {
            if let Some(old) = src.rank.take() {
                inner.ready.remove(&old);
            }
            if let Some(new) = rank {
                inner.ready.insert(new);
            }
            src.rank = rank;
        }
        if src.running == 0 && src.waiting.is_empty() {
            inner.sources.remove(&key);
        }
    }

    /// Grants free slots to the waiting connections that come first.
    fn dispatch(&self, inner: &mut Inner) {
        while inner.running < self.max_total {
            let Some(&(_, _, _, key)) = inner.ready.first() else {
                break;
            };
            let src = inner
                .sources
                .get_mut(&key)
                .expect("a ready source is known");
            let w = src
                .waiting
                .pop_front()
                .expect("a ready source has a connection waiting");
            inner.waiting -= 1;
            if !w.known {
                inner.unknown_waiting.remove(&w.seq);
            }
            // Whether a connection from an unknown source waited longer.
            let ahead_unknown = inner.unknown_waiting.first().is_some_and(|&s| s < w.seq);
            if w.granted.send(()).is_ok() {
                if w.known && ahead_unknown {
                    self.prioritized.inc();
                }
                inner.running += 1;
                if let Some(src) = inner.sources.get_mut(&key) {
                    src.running += 1;
                }
            }
            // Otherwise it gave up in the meantime; the slot stays free.
            self.settle(inner, key);
        }
        self.queued.set(inner.waiting as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max_total: usize, max_per_source: usize) -> Arc<Slots> {
        Slots::new(
            max_total,
            max_per_source,
            prometheus::IntGauge::new("q", "test").unwrap(),
            prometheus::IntCounter::new("p", "test").unwrap(),
        )
    }

    fn key(n: u8) -> SourceKey {
        SourceKey::of(std::net::IpAddr::from([192, 0, 2, n]))
    }

    const LONG: Duration = Duration::from_secs(60);

    /// Starts waiting for a slot; returns the task once it is queued.
    async fn queue(
        s: &Arc<Slots>,
        key: SourceKey,
        known: bool,
    ) -> tokio::task::JoinHandle<Option<Slot>> {
        let before = s.queued.get();
        let s2 = s.clone();
        let task = tokio::spawn(async move { s2.acquire(key, known, LONG).await });
        while s.queued.get() == before {
            tokio::task::yield_now().await;
        }
        task
    }

    #[tokio::test(start_paused = true)]
    async fn a_freed_slot_goes_to_a_known_source_then_to_the_smallest_source() {
        let s = slots(2, 10);
        let a = s.acquire(key(1), false, LONG).await.unwrap();
        let b = s.acquire(key(1), false, LONG).await.unwrap();
        // Waiting, in this order: the flood, a new source, a known source.
        let flood = queue(&s, key(1), false).await;
        let newcomer = queue(&s, key(2), false).await;
        let known = queue(&s, key(3), true).await;
        drop(a);
        let known = known.await.unwrap().expect("the known source goes first");
        assert_eq!(s.prioritized.get(), 1);
        // The flood still runs one handshake, the newcomer's source none.
        drop(known);
        let newcomer = newcomer
            .await
            .unwrap()
            .expect("then the source running fewest handshakes");
        assert!(!flood.is_finished());
        drop(b);
        assert!(flood.await.unwrap().is_some(), "then the flood");
        drop(newcomer);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_gives_up_leaves_the_queue_and_the_rest_are_served_in_order() {
        let s = slots(1, 1);
        let held = s.acquire(key(1), false, LONG).await.unwrap();
        // Many sources waiting, one of which goes away.
        let mut waiting = Vec::new();
        for n in 2..=60 {
            waiting.push(queue(&s, key(n), false).await);
        }
        assert_eq!(s.queued.get(), 59);
        let gone = waiting.remove(10);
        gone.abort();
        let _ = gone.await;
        assert_eq!(s.queued.get(), 58, "a cancelled wait is out of the queue");
        drop(held);
        // Each is served in arrival order as the one before it finishes.
        for task in waiting {
            let slot = task.await.unwrap().expect("served");
            drop(slot);
        }
        assert_eq!(s.queued.get(), 0);
        let inner = s.lock();
        assert!(inner.sources.is_empty() && inner.ready.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_runs_at_most_its_share_even_when_slots_are_free() {
        let s = slots(10, 1);
        let first = s.acquire(key(1), false, LONG).await.unwrap();
        assert!(
            s.acquire(key(1), false, Duration::from_secs(1))
                .await
                .is_none(),
            "a second handshake of the same source waits, and gives up"
        );
        assert!(s.acquire(key(2), false, LONG).await.is_some());
        let second = queue(&s, key(1), false).await;
        drop(first);
        assert!(second.await.unwrap().is_some());
        assert_eq!(s.queued.get(), 0);
    }
}
