//! CPU busy share (sysinfo, needs two samples) and load averages.

use campanile_proto::v1::Health;
use sysinfo::System;

pub fn prime(sys: &mut System) {
    sys.refresh_cpu_usage();
}

pub fn usage(sys: &mut System, h: &mut Health) {
    sys.refresh_cpu_usage();
    let pct = f64::from(sys.global_cpu_usage());
    if pct.is_finite() {
        h.cpu_usage_ratio = Some((pct / 100.0).clamp(0.0, 1.0));
    }
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
