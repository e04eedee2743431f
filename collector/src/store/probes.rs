//! Probe results in the store: the latest results of each host (for the
//! site aggregates and the host API) and per-site, per-target counters.
//!
//! The counters are keyed by the site a host belonged to when its report
//! arrived, and only ever grow: a host that moves to another site leaves
//! its past packets where they were counted, so Prometheus never sees a
//! counter go down.

use std::collections::BTreeSet;

use campanile_proto::v1::Probes;
use rusqlite::{Connection, params};

/// Where the probe figures of one ingest go.
#[derive(Debug, Clone, Copy)]
pub struct ProbeCounting<'a> {
    /// The host's site now (the register's, else its certificate's).
    pub site: &'a str,
    /// Target names counted; results for others are ignored.
    pub targets: &'a BTreeSet<String>,
}

/// One row of `probe_counters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeCounter {
    pub site: String,
    pub target: String,
    /// ICMP echo requests sent and lost.
    pub packets_sent: u64,
    pub packets_lost: u64,
    /// TCP connects and DNS queries made, and those that failed.
    pub checks: u64,
    pub check_failures: u64,
}

/// Adds one report's figures. Returns how many results named a target that
/// is not in `counting.targets`.
pub(super) fn count(
    tx: &Connection,
    counting: &ProbeCounting<'_>,
    probes: &Probes,
) -> rusqlite::Result<usize> {
    let mut add = tx.prepare_cached(
        "INSERT INTO probe_counters (site, target, packets_sent, packets_lost, checks, check_failures)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(site, target) DO UPDATE SET
            packets_sent = packets_sent + excluded.packets_sent,
            packets_lost = packets_lost + excluded.packets_lost,
            checks = checks + excluded.checks,
            check_failures = check_failures + excluded.check_failures",
    )?;
    let mut ignored = 0;
    let rows = probes
        .icmp
        .iter()
        .map(|r| (&r.target, i64::from(r.sent), i64::from(r.lost), 0, 0))
        .chain(
            probes
                .tcp
                .iter()
                .map(|r| (&r.target, 0, 0, 1, i64::from(!r.success))),
        )
        .chain(
            probes
                .dns
                .iter()
                .map(|r| (&r.target, 0, 0, 1, i64::from(!r.success))),
        );
    for (target, sent, lost, checks, failures) in rows {
        // Duty results carry a device, not a target: they are per device.
        if target.is_empty() {
            continue;
        }
        if !counting.targets.contains(target.as_str()) {
            ignored += 1;
            continue;
        }
        add.execute(params![counting.site, target, sent, lost, checks, failures])?;
    }
    Ok(ignored)
}

pub(super) fn counters(conn: &rusqlite::Connection) -> rusqlite::Result<Vec<ProbeCounter>> {
    let mut stmt = conn.prepare_cached(
        "SELECT site, target, packets_sent, packets_lost, checks, check_failures
         FROM probe_counters ORDER BY site, target",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ProbeCounter {
            site: r.get(0)?,
            target: r.get(1)?,
            packets_sent: r.get::<_, i64>(2)? as u64,
            packets_lost: r.get::<_, i64>(3)? as u64,
            checks: r.get::<_, i64>(4)? as u64,
            check_failures: r.get::<_, i64>(5)? as u64,
        })
    })?;
    rows.collect()
}
