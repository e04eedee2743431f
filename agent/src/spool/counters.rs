//! The spool's counters: they only grow, and are committed with the
//! reports they describe so they survive restarts.

pub(super) const DROPPED_FULL: &str = "dropped_spool_full";
pub(super) const DROPPED_EXPIRED: &str = "dropped_expired";
pub(super) const DROPPED_INVALID: &str = "dropped_invalid";
pub(super) const DROPPED_CORRUPT: &str = "dropped_corrupt";
pub(super) const SEND_FAILURES: &str = "send_failures";
pub(super) const RESETS: &str = "resets";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub dropped_spool_full: u64,
    pub dropped_expired: u64,
    pub dropped_invalid: u64,
    pub dropped_corrupt: u64,
    pub send_failures: u64,
    pub resets: u64,
}

impl Counters {
    pub fn dropped_total(&self) -> u64 {
        self.dropped_spool_full + self.dropped_expired + self.dropped_invalid + self.dropped_corrupt
    }

    pub(super) const KEYS: [&'static str; 6] = [
        DROPPED_FULL,
        DROPPED_EXPIRED,
        DROPPED_INVALID,
        DROPPED_CORRUPT,
        SEND_FAILURES,
        RESETS,
    ];

    pub(super) fn values(&self) -> [u64; 6] {
        [
            self.dropped_spool_full,
            self.dropped_expired,
            self.dropped_invalid,
            self.dropped_corrupt,
            self.send_failures,
            self.resets,
        ]
    }

    pub(super) fn from_values(v: [u64; 6]) -> Self {
        Self {
            dropped_spool_full: v[0],
            dropped_expired: v[1],
            dropped_invalid: v[2],
            dropped_corrupt: v[3],
            send_failures: v[4],
            resets: v[5],
        }
    }

    /// Each counter at the larger of the two: memory holds what the file
    /// holds plus what no write has committed yet, so after reopening a
    /// file the larger figure is the true one.
    pub(super) fn max(self, other: Self) -> Self {
        let (a, b) = (self.values(), other.values());
        Self::from_values(std::array::from_fn(|i| a[i].max(b[i])))
    }
}
