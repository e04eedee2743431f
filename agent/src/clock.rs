//! What every report is stamped with: the agent's clock and its version.

/// The version every report and inventory carries.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Now, in milliseconds since the Unix epoch (0 before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
