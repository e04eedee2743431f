//! Reachability: is it the PC or the line?
//!
//! - [`plan`]: which site each host counts for, and which agents probe the
//!   site's agentless devices (probe duty, handed out in the ack).
//! - [`wan`]: the centre's own probe of each site's WAN address.
//! - [`aggregate`]: the agents' latest results per site and target, and
//!   per device.
//! - [`classify`]: one state per site from hosts, devices and the WAN probe.
//! - [`state`]: the plan and the WAN state in force ([`Reach`]);
//!   [`planner`] and [`wan_prober`] are the tasks that refresh them.

pub mod aggregate;
pub mod classify;
pub mod config;
pub mod plan;
pub(crate) mod planner;
pub mod state;
pub mod wan;
pub(crate) mod wan_prober;

pub use plan::Plan;
pub use state::Reach;
pub use wan::WanState;
