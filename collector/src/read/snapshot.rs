//! The hosts and the territory evaluated over them, at one instant: what
//! `/metrics`, the API and the probe planner all read.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::reach::aggregate::{self, SiteProbes};
use crate::store::Store;
use campanile_territory::evaluate::View;
use campanile_territory::host::HostState;
use campanile_territory::state::{Loaded, Territory};

pub struct Snapshot {
    pub hosts: Vec<Arc<HostState>>,
    pub view: View,
    pub loaded: Arc<Loaded>,
    pub now_ms: i64,
}

impl Snapshot {
    /// Takes every host's current state and evaluates the territory over
    /// it (blocking: at 50,000 hosts half a second to a second of one core,
    /// less when most hosts have not reported since the last evaluation).
    pub fn take(store: &Store, territory: &Territory, now_ms: i64) -> Self {
        let hosts = store.host_states();
        let (loaded, view) = territory.evaluate(&hosts, now_ms);
        Self {
            hosts,
            view,
            loaded,
            now_ms,
        }
    }

    /// The agents' latest probes summed up per site, target and device.
    pub fn site_probes(&self, targets: &BTreeSet<String>) -> SiteProbes {
        aggregate::aggregate(
            &self.view,
            &self.hosts,
            &self.loaded.register,
            targets,
            self.now_ms,
        )
    }
}
