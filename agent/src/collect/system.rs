//! Uptime, boot time, process count, failed systemd units.

use campanile_proto::v1::Health;
use sysinfo::System;

use crate::config::CollectConfig;
use crate::platform;

pub fn collect(cfg: &CollectConfig, h: &mut Health) {
    h.uptime_seconds = System::uptime().ok().filter(|u| *u > 0);
    h.boot_time_seconds = System::boot_time()
        .ok()
        .filter(|b| *b > 0)
        .and_then(|b| i64::try_from(b).ok());
    h.process_count = platform::process_count();
    if cfg.systemd_units {
        h.failed_units = platform::failed_units();
    }
}
