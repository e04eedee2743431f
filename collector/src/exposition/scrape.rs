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
pub struct Scrape<'a> {
    pub hosts: &'a [Arc<HostState>],
    /// The territory evaluated over `hosts` (one host view per host, in order).
    pub view: &'a View,
    pub register: &'a Register,
    pub reload: &'a ReloadStatus,
    pub now_ms: i64,
    pub store_size_bytes: u64,
    /// The agents' latest probes, per site and target and per device.
    pub probes: &'a SiteProbes,
    pub probe_counters: &'a [ProbeCounter],
    pub wan: &'a WanState,
    /// `None` where alerts do not run (benchmarks of the rest).
    pub alerts: Option<&'a Alerts>,
}
