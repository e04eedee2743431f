//! Per-interface traffic counters; virtual interfaces skipped unless asked.

use campanile_proto::v1::{Health, NetInterface};
use sysinfo::Networks;

use crate::config::CollectConfig;
use crate::platform;

pub fn collect(cfg: &CollectConfig, h: &mut Health) {
    let mut all =
        platform::interfaces(cfg.include_virtual_interfaces).unwrap_or_else(|| from_sysinfo(cfg));
    if all.len() > cfg.max_interfaces {
        all.truncate(cfg.max_interfaces);
        h.truncated = true;
    }
    h.interfaces = all;
}

/// Portable fallback: sysinfo has no drop counters, so those stay absent.
fn from_sysinfo(cfg: &CollectConfig) -> Vec<NetInterface> {
    let Ok(nets) = Networks::new_with_refreshed_list() else {
        return Vec::new();
    };
    let mut out: Vec<NetInterface> = nets
        .iter()
        .filter(|(name, _)| {
            cfg.include_virtual_interfaces
                || !platform::is_virtual_interface(&name.to_string_lossy())
        })
        .map(|(name, d)| NetInterface {
            name: name.to_string_lossy().into_owned(),
            rx_bytes: d.total_received(),
            tx_bytes: d.total_transmitted(),
            rx_errors: Some(d.total_errors_on_received()),
            tx_errors: Some(d.total_errors_on_transmitted()),
            rx_dropped: None,
            tx_dropped: None,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
