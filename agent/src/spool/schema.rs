//! What the spool file holds: its tables and their keys.

use redb::TableDefinition;

/// seq → encoded `Report`.
pub(super) const REPORTS: TableDefinition<u64, &[u8]> = TableDefinition::new("reports");
/// Numbering, size and counters, committed with the reports they describe.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub(super) const EPOCH: &str = "epoch";
pub(super) const NEXT_SEQ: &str = "next_seq";
pub(super) const BYTES: &str = "bytes";

/// redb's page cache. The spool is read front to back a batch at a time,
/// so a small cache costs little and keeps the agent's RSS flat however
/// large the backlog (the default cache may grow to 1 GiB).
pub(super) const CACHE_BYTES: usize = 2 * 1024 * 1024;
