//! Refused enrollment attempts per source, so a token cannot be guessed
//! by trying: past the bound, a source's attempts are refused unread
//! until its window has passed.
//!
//! A fixed window per source, opened by its first refusal. The map is
//! bounded: when full, sources whose window has passed are dropped, then
//! the oldest window, so a flood of sources cannot grow it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ingest::tls::source::SourceKey;

/// Sources tracked at most (a few dozen bytes each).
const MAX_SOURCES: usize = 65_536;

pub struct FailedAttempts {
    max: u32,
    window: Duration,
    by_source: Mutex<HashMap<SourceKey, Window>>,
}

#[derive(Clone, Copy)]
struct Window {
    opened: Instant,
    failures: u32,
}

impl FailedAttempts {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            by_source: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `source` has used up its refusals for now.
    pub fn blocked(&self, source: SourceKey, now: Instant) -> bool {
        let map = self.by_source.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&source)
            .is_some_and(|w| now.duration_since(w.opened) < self.window && w.failures >= self.max)
    }

    /// Counts one refusal of `source`.
    pub fn failed(&self, source: SourceKey, now: Instant) {
        let mut map = self.by_source.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_SOURCES && !map.contains_key(&source) {
            map.retain(|_, w| now.duration_since(w.opened) < self.window);
            if map.len() >= MAX_SOURCES
                && let Some(oldest) = map.iter().min_by_key(|(_, w)| w.opened).map(|(k, _)| *k)
            {
                map.remove(&oldest);
            }
        }
        let w = map.entry(source).or_insert(Window {
            opened: now,
            failures: 0,
        });
        if now.duration_since(w.opened) >= self.window {
            *w = Window {
                opened: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_blocked_after_its_refusals_until_the_window_passes() {
        let a = FailedAttempts::new(3, Duration::from_secs(60));
        let (one, other) = (
            SourceKey::of("192.0.2.1".parse().unwrap()),
            SourceKey::of("192.0.2.2".parse().unwrap()),
        );
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(!a.blocked(one, t0), "blocked after {i}");
            a.failed(one, t0);
        }
        assert!(a.blocked(one, t0 + Duration::from_secs(59)));
        assert!(!a.blocked(other, t0), "another source pays for the first");
        assert!(!a.blocked(one, t0 + Duration::from_secs(60)));
        a.failed(one, t0 + Duration::from_secs(61));
        assert!(
            !a.blocked(one, t0 + Duration::from_secs(61)),
            "a new window"
        );
    }
}
