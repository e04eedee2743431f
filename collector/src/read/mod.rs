//! The read path: every host's state and the territory evaluated over it
//! at one instant ([`snapshot`]), taken on reader threads that give way to
//! the reports ([`background`]). `/metrics`, the API, the alerts and the
//! probe planner all read snapshots.

pub mod background;
pub mod snapshot;
