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

use std::collections::{HashMap, VecDeque};
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

#[derive(Default)]
struct Inner {
    running: usize,
    per_source: HashMap<SourceKey, usize>,
    waiting: VecDeque<Waiter>,
}

struct Waiter {
    key: SourceKey,
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
        if let Some(n) = inner.per_source.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                inner.per_source.remove(&self.key);
            }
        }
        self.slots.dispatch(&mut inner);
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
        {
            let mut inner = self.lock();
            inner.waiting.push_back(Waiter {
                key,
                known,
                granted,
            });
            self.dispatch(&mut inner);
        }
        let got = tokio::select! {
            r = &mut rx => r.is_ok(),
            () = tokio::time::sleep(wait) => {
                // A slot granted at the last moment is still ours: take it
                // rather than lose it.
                rx.close();
                rx.try_recv().is_ok()
            }
        };
        got.then(|| Slot {
            slots: self.clone(),
            key,
        })
    }

    /// Grants free slots to the waiting connections that come first.
    fn dispatch(&self, inner: &mut Inner) {
        inner.waiting.retain(|w| !w.granted.is_closed());
        while inner.running < self.max_total {
            let Some(at) = self.next(inner) else { break };
            let w = inner.waiting.remove(at).expect("index from next");
            let ahead_unknown = inner.waiting.iter().take(at).any(|o| !o.known);
            if w.granted.send(()).is_err() {
                // Gave up in the meantime; the slot stays free.
                continue;
            }
            if w.known && ahead_unknown {
                self.prioritized.inc();
            }
            inner.running += 1;
            *inner.per_source.entry(w.key).or_default() += 1;
        }
        self.queued.set(inner.waiting.len() as i64);
    }

    /// The index of the waiting connection that comes first, of those
    /// whose source is below its own bound.
    fn next(&self, inner: &Inner) -> Option<usize> {
        let running_of = |k: &SourceKey| inner.per_source.get(k).copied().unwrap_or(0);
        inner
            .waiting
            .iter()
            .enumerate()
            .filter(|(_, w)| running_of(&w.key) < self.max_per_source)
            // min_by_key keeps the first of equals: the longest waiting.
            .min_by_key(|(_, w)| (!w.known, running_of(&w.key)))
            .map(|(i, _)| i)
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
