//! What the store looks like when the collector starts: `PRAGMA
//! quick_check`, values that no longer decode, and whether hosts were lost
//! since the last run.
//!
//! Before, a store with 8 KiB overwritten started without a word though
//! `PRAGMA integrity_check` reported broken pages, and a store truncated
//! to nothing started as a new, empty territory. Now each is said at start,
//! in the log and in metrics Prometheus can alert on. The census, a small
//! file beside the store (`<store>.census`), remembers how many hosts the
//! last run held: the store itself cannot, when it is what was lost.

use std::path::{Path, PathBuf};

use campanile_proto::v1::Inventory;
use prost::Message;
use rusqlite::Connection;

/// What the start found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Integrity {
    /// The first problems `PRAGMA quick_check` listed (empty: ok).
    pub problems: Vec<String>,
    /// Hosts the census says the last run held; `None` without a census.
    pub hosts_last_run: Option<u64>,
    /// Hosts loaded now.
    pub hosts_now: u64,
}

impl Integrity {
    /// Lost most hosts since the last run: at least half, of 10 or more.
    pub fn hosts_lost(&self) -> bool {
        self.hosts_last_run
            .is_some_and(|last| last >= 10 && self.hosts_now < last.div_ceil(2))
    }
}

/// Problems `quick_check` reports at most (it stops there too).
const MAX_PROBLEMS: usize = 20;

/// Runs `PRAGMA quick_check`; the problems it found, none when ok.
pub(super) fn quick_check(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut st = conn.prepare(&format!("PRAGMA quick_check({MAX_PROBLEMS})"))?;
    let rows: Vec<String> = st
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(if rows == ["ok"] { Vec::new() } else { rows })
}

/// Inventories that do not decode, with their bytes: looked for only when
/// `quick_check` found damage, since it reads every inventory.
pub(super) fn undecodable_inventories(
    conn: &Connection,
) -> rusqlite::Result<Vec<(String, Vec<u8>, prost::DecodeError)>> {
    let mut st = conn.prepare("SELECT host_id, inventory FROM host_inventories")?;
    let mut rows = st.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let (host, bytes): (String, Vec<u8>) = (row.get(0)?, row.get(1)?);
        if let Err(e) = Inventory::decode(bytes.as_slice()) {
            out.push((host, bytes, e));
        }
    }
    Ok(out)
}

pub(super) fn census_path(store: &Path) -> PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push(".census");
    PathBuf::from(p)
}

/// The host count the census holds, if there is a readable one.
pub(super) fn read_census(store: &Path) -> Option<u64> {
    std::fs::read_to_string(census_path(store))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("hosts = ")?.trim().parse().ok())
}

/// Records `hosts` in the census (written beside, then renamed over).
pub(super) fn write_census(store: &Path, hosts: u64) -> std::io::Result<()> {
    let path = census_path(store);
    let tmp = path.with_extension("census.tmp");
    std::fs::write(
        &tmp,
        format!(
            "# Hosts the store held when the collector last wrote this; read at start to \
             notice a store that lost them.\nhosts = {hosts}\n"
        ),
    )?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losing_half_the_hosts_of_ten_or_more_is_a_loss() {
        let i = |last, now| Integrity {
            hosts_last_run: last,
            hosts_now: now,
            ..Default::default()
        };
        assert!(i(Some(500), 0).hosts_lost());
        assert!(i(Some(500), 249).hosts_lost());
        assert!(!i(Some(500), 250).hosts_lost());
        assert!(!i(Some(5), 0).hosts_lost(), "too few to tell");
        assert!(!i(None, 0).hosts_lost(), "no census: a first start");
    }

    #[test]
    fn the_census_survives_a_round_trip_and_a_missing_one_is_none() {
        let d = tempfile::tempdir().unwrap();
        let store = d.path().join("s.db");
        assert_eq!(read_census(&store), None);
        write_census(&store, 1234).unwrap();
        assert_eq!(read_census(&store), Some(1234));
    }
}
