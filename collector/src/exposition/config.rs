//! `[exposition]`: what one host may add to `/metrics`.

use serde::Deserialize;

/// Bounds on what one host contributes to `/metrics` (low cardinality: long
/// lists live in the inventory API, not in labels).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpositionConfig {
    pub max_filesystems_per_host: usize,
    pub max_interfaces_per_host: usize,
}

impl Default for ExpositionConfig {
    fn default() -> Self {
        Self {
            max_filesystems_per_host: 6,
            max_interfaces_per_host: 2,
        }
    }
}
