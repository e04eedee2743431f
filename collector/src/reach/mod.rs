//! Reachability: is it the PC or the line?
//!
//! - [`plan`]: which site each host counts for, and which agents probe the
//!   site's agentless devices (probe duty, handed out in the ack).
//! - [`wan`]: the centre's own probe of each site's WAN address.
//! - [`aggregate`]: the agents' latest results per site and target, and
//!   per device.
//! - [`classify`]: one state per site from hosts, devices and the WAN probe.

pub mod aggregate;
pub mod classify;
pub mod plan;
pub mod wan;

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::ProbesConfig;

pub use plan::Plan;
pub use wan::WanState;

/// The reachability state shared by ingest (plan), the WAN prober and the
/// HTTP side. Readers take an `Arc` snapshot and never hold the lock.
pub struct Reach {
    pub config: ProbesConfig,
    // Swapped whole, never locked: every report reads the plan, and a
    // reader must never wait behind the writer freeing the old one.
    plan: ArcSwap<Plan>,
    wan: ArcSwap<WanState>,
}

impl Reach {
    pub fn new(config: ProbesConfig) -> Self {
        Self {
            config,
            plan: ArcSwap::from_pointee(Plan::default()),
            wan: ArcSwap::from_pointee(WanState::default()),
        }
    }

    pub fn plan(&self) -> Arc<Plan> {
        self.plan.load_full()
    }

    pub fn set_plan(&self, plan: Plan) {
        self.plan.store(Arc::new(plan));
    }

    pub fn wan(&self) -> Arc<WanState> {
        self.wan.load_full()
    }

    pub fn set_wan(&self, wan: WanState) {
        self.wan.store(Arc::new(wan));
    }
}
