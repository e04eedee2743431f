//! CPU busy share (two samples) and load averages.
//!
//! The busy share comes from the platform's own counters where it has
//! them (Windows: `GetSystemTimes`), else from sysinfo. On Windows sysinfo
//! reads it through the performance counters (PDH), which are slow to open
//! and which some machines, and Wine, cannot serve.

use campanile_proto::v1::Health;
use sysinfo::System;

use crate::platform;

/// The samples between two cycles.
#[derive(Default)]
pub struct CpuUsage {
    primed: bool,
    /// The platform's (busy, total) counters at the last sample.
    last: Option<(u64, u64)>,
}

impl CpuUsage {
    /// Takes a sample, so the next [`CpuUsage::usage`] has a rate.
    pub fn prime(&mut self, sys: Option<&mut System>) {
        match platform::cpu_times() {
            Some(t) => self.last = Some(t),
            None => {
                if let Some(sys) = sys {
                    sys.refresh_cpu_usage();
                }
            }
        }
        self.primed = true;
    }

    /// The busy share since the last sample; on the first cycle only the
    /// sample is taken.
    pub fn usage(&mut self, sys: Option<&mut System>, h: &mut Health) {
        if !self.primed {
            self.prime(sys);
            return;
        }
        if let Some(now) = platform::cpu_times() {
            if let Some(then) = self.last.replace(now) {
                h.cpu_usage_ratio = busy_share(then, now);
            }
            return;
        }
        if let Some(sys) = sys {
            sys.refresh_cpu_usage();
            let pct = f64::from(sys.global_cpu_usage());
            if pct.is_finite() {
                h.cpu_usage_ratio = Some((pct / 100.0).clamp(0.0, 1.0));
            }
        }
    }
}

/// Busy over total between two (busy, total) samples; `None` when no time
/// passed or the counters went back.
fn busy_share(then: (u64, u64), now: (u64, u64)) -> Option<f64> {
    let busy = now.0.checked_sub(then.0)?;
    let total = now.1.checked_sub(then.1).filter(|t| *t > 0)?;
    Some((busy as f64 / total as f64).clamp(0.0, 1.0))
}

pub fn load(h: &mut Health) {
    // Windows has no load average; sysinfo answers zeros there, which would
    // look real.
    if cfg!(windows) {
        return;
    }
    if let Ok(l) = System::load_average() {
        h.load1 = Some(l.one);
        h.load5 = Some(l.five);
        h.load15 = Some(l.fifteen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_share_is_the_busy_part_of_the_time_between_samples() {
        assert_eq!(busy_share((100, 1000), (400, 2000)), Some(0.3));
        assert_eq!(busy_share((100, 1000), (100, 1000)), None);
        assert_eq!(busy_share((500, 1000), (400, 2000)), None, "counters reset");
    }
}
