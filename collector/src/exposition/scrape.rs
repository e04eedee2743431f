//! Everything one scrape renders, gathered by the HTTP side.

use std::sync::Arc;

use campanile_territory::evaluate::View;
use campanile_territory::host::HostState;
use campanile_territory::register::Register;
use campanile_territory::state::ReloadStatus;

use crate::alerts::Alerts;
use crate::reach::WanState;
use crate::reach::aggregate::SiteProbes;
use crate::store::ProbeCounter;

/// Everything one scrape renders.
/// What the store's start found, and damage found since.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreHealth {
    /// Problems `PRAGMA quick_check` listed at start (0: none).
    pub integrity_problems: usize,
    /// Hosts the last run held, if the census says.
    pub hosts_last_run: Option<u64>,
    /// The store lost most of its hosts since the last run.
    pub hosts_lost: bool,
    /// Stored values set aside as undecodable since the start.
    pub damaged_rows: u64,
}

pub struct Scrape<'a> {
    pub hosts: &'a [Arc<HostState>],
    /// The territory evaluated over `hosts` (one host view per host, in order).
    pub view: &'a View,
    pub register: &'a Register,
    pub reload: &'a ReloadStatus,
    pub now_ms: i64,
    pub store_size_bytes: u64,
    pub store_health: StoreHealth,
    /// The agents' latest probes, per site and target and per device.
    pub probes: &'a SiteProbes,
    pub probe_counters: &'a [ProbeCounter],
    pub wan: &'a WanState,
    /// `None` where alerts do not run (benchmarks of the rest).
    pub alerts: Option<&'a Alerts>,
}
