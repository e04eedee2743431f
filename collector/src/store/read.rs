//! The read side of the store: every host's state loaded at open and kept
//! in memory, a host read back after its commit, the inventory and its
//! history, the dedup cursors and the probe counters.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use campanile_territory::host::{Facts, HostState, PeerFacts};
use prost::Message;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::store::{Cursor, facts, probes};
use crate::store::{
    InventoryChange, InventoryRow, ProbeCounter, Store, StoreError, StoredInventory,
};

/// The `hosts` columns a [`HostState`] is made of, in the order
/// [`host_row`] reads them. A macro, so queries are literals: the committer
/// reads a host back after every request, and a `format!` there would build
/// the same string each time.
macro_rules! host_columns {
    () => {
        "host_id, site, first_seen_ms, last_report_ms, last_collected_ms,
    interval_secs, agent_version, hostname, os_name, os_version, kernel, arch, health,
    agent_stats, os_edition, serial, macs, vendor, model, cpu_model, cpu_cores,
    memory_total_bytes, system_disk_bytes, bios_date, probes, probe_duty_sha256,
    clock_offset_ms, cert_not_after_ms, firmware_read, tpm_present, tpm_version,
    uefi_supported, secure_boot"
    };
}

/// A host's state and its still-encoded health, agent stats and probes.
type HostRow = (HostState, Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);

fn host_row(r: &Row<'_>) -> rusqlite::Result<HostRow> {
    Ok((
        HostState {
            host_id: r.get(0)?,
            site: r.get(1)?,
            first_seen_ms: r.get(2)?,
            last_report_ms: r.get(3)?,
            last_collected_ms: r.get(4)?,
            interval_secs: r.get(5)?,
            agent_version: r.get(6)?,
            hostname: r.get(7)?,
            os_name: r.get(8)?,
            os_version: r.get(9)?,
            kernel: r.get(10)?,
            arch: r.get(11)?,
            facts: Facts {
                os_edition: r.get(14)?,
                serial: r.get(15)?,
                macs: facts::macs_from_column(r.get(16)?),
                vendor: r.get(17)?,
                model: r.get(18)?,
                cpu_model: r.get(19)?,
                cpu_cores: r.get(20)?,
                memory_total_bytes: r.get::<_, Option<i64>>(21)?.map(|b| b as u64),
                system_disk_bytes: r.get::<_, Option<i64>>(22)?.map(|b| b as u64),
                bios_date: r.get(23)?,
                firmware: facts::firmware_from_columns(
                    r.get(28)?,
                    r.get(29)?,
                    r.get(30)?,
                    r.get(31)?,
                    r.get(32)?,
                ),
            },
            health: None,
            agent_stats: None,
            probes: None,
            probe_duty_sha256: r.get::<_, Option<Vec<u8>>>(25)?.unwrap_or_default(),
            peer: PeerFacts {
                clock_offset_ms: r.get(26)?,
                cert_not_after_ms: r.get(27)?,
            },
        },
        r.get(12)?,
        r.get(13)?,
        r.get(24)?,
    ))
}

/// What decoded, or nothing with the error logged.
fn logged<T>(host: &str, what: &str, decoded: Result<Option<T>, StoreError>) -> Option<T> {
    decoded.unwrap_or_else(|e| {
        tracing::error!(host, error = %e, "stored {what} ignored");
        None
    })
}

/// Hosts [`Store::host_states`] takes per hold of the lock the committer
/// also takes: a few microseconds.
pub(super) const HOSTS_PER_LOCK: usize = 512;

impl Store {
    /// Every host's state as stored, decoded.
    pub(super) fn load_hosts(&self) -> Result<BTreeMap<String, Arc<HostState>>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn
            .prepare(concat!("SELECT ", host_columns!(), " FROM hosts"))
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], host_row).map_err(|e| self.err(e))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (mut state, health, stats, probes) = row.map_err(|e| self.err(e))?;
            // One damaged row must not keep the collector from starting: the
            // host is loaded without what does not decode, and its next
            // report replaces it.
            let host = state.host_id.as_str();
            let health = logged(host, "health", self.decode(host, "health", health));
            let stats = logged(host, "agent stats", self.decode(host, "agent stats", stats));
            let probes = logged(host, "probes", self.decode(host, "probes", probes));
            (state.health, state.agent_stats, state.probes) = (health, stats, probes);
            out.insert(state.host_id.clone(), Arc::new(state));
        }
        Ok(out)
    }

    /// One host's state as its connection sees it (inside a transaction:
    /// with what the transaction wrote).
    /// A value that does not decode is set aside ([`Store::set_aside`])
    /// and its column emptied, so the host is read without it and its next
    /// report fills it again: a damaged row must not fail every commit of
    /// its host for ever.
    pub(super) fn read_host(
        &self,
        conn: &Connection,
        host: &str,
        now_ms: i64,
    ) -> Result<Option<HostState>, StoreError> {
        let row = conn
            .prepare_cached(concat!(
                "SELECT ",
                host_columns!(),
                " FROM hosts WHERE host_id = ?1"
            ))
            .and_then(|mut st| st.query_row([host], host_row).optional())
            .map_err(|e| self.err(e))?;
        let Some((mut state, health, stats, probes)) = row else {
            return Ok(None);
        };
        state.health = self.repairing(conn, host, "health", health, now_ms)?;
        state.agent_stats = self.repairing(conn, host, "agent_stats", stats, now_ms)?;
        state.probes = self.repairing(conn, host, "probes", probes, now_ms)?;
        Ok(Some(state))
    }

    fn repairing<M: Message + Default>(
        &self,
        conn: &Connection,
        host: &str,
        column: &'static str,
        bytes: Option<Vec<u8>>,
        now_ms: i64,
    ) -> Result<Option<M>, StoreError> {
        let Some(bytes) = bytes else { return Ok(None) };
        match M::decode(bytes.as_slice()) {
            Ok(m) => Ok(Some(m)),
            Err(error) => {
                self.set_aside(conn, host, column, &bytes, now_ms, &error)?;
                // The column is one of three fixed names, never input.
                conn.execute(
                    &format!("UPDATE hosts SET {column} = NULL WHERE host_id = ?1"),
                    [host],
                )
                .map_err(|e| self.err(e))?;
                Ok(None)
            }
        }
    }

    /// Keeps a stored value that no longer decodes in `damaged_rows`,
    /// logs and counts it.
    pub(super) fn set_aside(
        &self,
        conn: &Connection,
        host: &str,
        what: &str,
        bytes: &[u8],
        now_ms: i64,
        error: &prost::DecodeError,
    ) -> Result<(), StoreError> {
        conn.prepare_cached(
            "INSERT INTO damaged_rows (host_id, what, found_ms, bytes) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut st| st.execute(params![host, what, now_ms, bytes]))
        .map_err(|e| self.err(e))?;
        self.damaged_rows
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(host, what, %error, store = %self.path.display(),
            "stored value does not decode: set aside in damaged_rows; the host's next report replaces it");
        Ok(())
    }

    /// Every host's current state as last committed, ordered by host id:
    /// the states are shared, not copied, so this is cheap at any fleet size.
    ///
    /// Taken a few hundred hosts at a time, the lock released in between:
    /// the callers run at nice +10, and one preempted while holding the
    /// lock for all 50,000 hosts would stall the committer, and every
    /// report waiting for it, until it was scheduled again. Each host's
    /// state is one committed state; hosts taken in different batches may
    /// be a commit apart, as rows read at slightly different instants.
    pub fn host_states(&self) -> Vec<Arc<HostState>> {
        let mut out: Vec<Arc<HostState>> = Vec::new();
        loop {
            let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            out.reserve(current.len().saturating_sub(out.len()));
            let last = out.last().cloned();
            let batch = match &last {
                Some(h) => {
                    current.range::<str, _>((Bound::Excluded(h.host_id.as_str()), Bound::Unbounded))
                }
                None => current.range::<str, _>(..),
            };
            let before = out.len();
            out.extend(batch.take(HOSTS_PER_LOCK).map(|(_, h)| h.clone()));
            if out.len() - before < HOSTS_PER_LOCK {
                return out;
            }
        }
    }

    pub(super) fn decode<M: Message + Default>(
        &self,
        host: &str,
        what: &'static str,
        bytes: Option<Vec<u8>>,
    ) -> Result<Option<M>, StoreError> {
        bytes
            .map(|b| M::decode(b.as_slice()))
            .transpose()
            .map_err(|source| StoreError::Corrupt {
                path: self.path.clone(),
                host: host.to_owned(),
                what,
                source,
            })
    }

    /// A host's current inventory, if one was ever received.
    pub fn inventory(&self, host_id: &str) -> Result<Option<StoredInventory>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let row: Option<InventoryRow> = conn
            .query_row(
                "SELECT i.inventory, h.inventory_sha256, h.inventory_updated_ms
                 FROM hosts h JOIN host_inventories i ON i.host_id = h.host_id
                 WHERE h.host_id = ?1",
                [host_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((Some(bytes), Some(sha256), Some(updated_ms))) = row else {
            return Ok(None);
        };
        let inventory = match self.decode(host_id, "inventory", Some(bytes)) {
            Ok(inv) => inv.unwrap_or_default(),
            Err(e) => {
                // The reader cannot write: the host's next commit sets it
                // aside and asks for the full inventory.
                self.undecodable_inventories
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(host_id.to_owned());
                return Err(e);
            }
        };
        Ok(Some(StoredInventory {
            inventory,
            sha256,
            updated_ms,
        }))
    }

    /// A host's inventory history, oldest first.
    pub fn inventory_changes(&self, host_id: &str) -> Result<Vec<InventoryChange>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn
            .prepare_cached(
                "SELECT changed_ms, field, old_value, new_value FROM inventory_changes
                 WHERE host_id = ?1 ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([host_id], |r| {
                Ok(InventoryChange {
                    changed_ms: r.get(0)?,
                    field: r.get(1)?,
                    old_value: r.get(2)?,
                    new_value: r.get(3)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The highest seq committed for a host's epoch (dedup cursor).
    pub fn delivered_seq(&self, host_id: &str, epoch: u64) -> Result<Option<u64>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        Ok(self.cursor(&conn, host_id, epoch)?.map(|c| c.last_seq))
    }

    /// The host's most recently advanced (epoch, seq) cursor.
    pub fn latest_delivery(&self, host_id: &str) -> Result<Option<(u64, u64)>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row(
            "SELECT epoch, last_seq FROM delivery_cursors WHERE host_id = ?1
             ORDER BY updated_ms DESC, last_seq DESC LIMIT 1",
            [host_id],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )
        .optional()
        .map_err(|e| self.err(e))
    }

    /// Every site's probe counters, by site then target.
    pub fn probe_counters(&self) -> Result<Vec<ProbeCounter>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        probes::counters(&conn).map_err(|e| self.err(e))
    }

    pub(super) fn cursor(
        &self,
        conn: &Connection,
        host: &str,
        epoch: u64,
    ) -> Result<Option<Cursor>, StoreError> {
        conn.prepare_cached(
            "SELECT last_seq, updated_ms FROM delivery_cursors WHERE host_id = ?1 AND epoch = ?2",
        )
        .and_then(|mut st| {
            st.query_row(params![host, epoch as i64], |r| {
                Ok(Cursor {
                    // Stored as SQLite's i64, bit for bit.
                    last_seq: r.get::<_, i64>(0)? as u64,
                    updated_ms: r.get(1)?,
                })
            })
            .optional()
        })
        .map_err(|e| self.err(e))
    }
}
