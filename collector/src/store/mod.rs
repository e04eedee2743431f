//! The collector's state in one SQLite file (WAL): hosts, their latest
//! health, current inventory and its change history. Prometheus keeps the
//! time series; this keeps current state.
//!
//! One writer connection and one reader connection, each behind a mutex, so
//! an API read never waits for an ingest commit (WAL readers do not block
//! the writer). Callers run these blocking calls on
//! `tokio::task::spawn_blocking`.
//!
//! Every host's current state is also kept in memory ([`Store::host_states`]),
//! because a scrape, an alert evaluation and the probe planner each need all
//! of it: read from SQLite and decoded for every scrape, it was a quarter of
//! a scrape at 50,000 hosts and the largest share of the collector's reading
//! that a report could be slowed by. SQLite stays the authority: the copy is
//! loaded from it at open, and after each commit the committed rows of the
//! hosts in it are read back and replace theirs, so the copy never holds what
//! was not committed nor differs from what a restart would load.

mod facts;
mod probes;
mod schema;

pub use probes::{ProbeCounter, ProbeCounting};

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use campanile_proto::identity::HostIdentity;
use campanile_proto::v1::{AgentStats, Inventory, Report};
use prost::Message;
use rusqlite::{Connection, OptionalExtension, Row, params};

use campanile_territory::host::{Facts, HostState, PeerFacts};

use crate::inventory_diff::{self, Change};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("store {path}: schema migration failed: {source}")]
    Migration {
        path: PathBuf,
        source: rusqlite_migration::Error,
    },
    /// A failed group commit, as told to each request that was in it.
    #[error("{message}")]
    Shared { message: String },
    #[error("store {path}: stored {what} for host {host} does not decode: {source}")]
    Corrupt {
        path: PathBuf,
        host: String,
        what: &'static str,
        source: prost::DecodeError,
    },
}

impl StoreError {
    /// A copy for each caller of a failed group commit (the underlying
    /// errors cannot be cloned).
    pub fn clone_for_caller(&self) -> Self {
        Self::Shared {
            message: self.to_string(),
        }
    }
}

/// What one ingest transaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Highest sequence number committed for the epoch of the last report.
    pub committed_seq: u64,
    pub accepted: usize,
    pub duplicates: usize,
    /// The collector does not hold the inventory whose hash the agent sent.
    pub need_full_inventory: bool,
    /// Probe results naming a target the collector does not count.
    pub ignored_probe_results: usize,
    /// Accepted reports older than the host's current state: counted, not
    /// made current.
    pub backfilled: usize,
}

/// One Deliver request, validated, for [`Store::ingest_group`].
#[derive(Debug, Clone, Copy)]
pub struct IngestJob<'a> {
    pub identity: &'a HostIdentity,
    pub reports: &'a [Report],
    /// The agent's self-metrics sent with the request (fresher than the
    /// copies inside its reports).
    pub agent_stats: Option<&'a AgentStats>,
    pub received_ms: i64,
    pub counting: ProbeCounting<'a>,
    pub peer: PeerFacts,
}

/// Epochs per host whose dedup cursor is kept.
const EPOCHS_KEPT: i64 = 4;

/// One line of a host's inventory history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryChange {
    pub changed_ms: i64,
    pub field: String,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
}

/// A host's current inventory as last received.
#[derive(Debug, Clone)]
pub struct StoredInventory {
    pub inventory: Inventory,
    pub sha256: Vec<u8>,
    pub updated_ms: i64,
}

/// (inventory, sha256, updated_ms) columns of one host.
type InventoryRow = (Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>);

pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    /// Opened on the first [`Store::checkpoint`].
    checkpointer: Mutex<Option<Connection>>,
    /// Set by a checkpoint that found the WAL past `wal_restart_frames`;
    /// taken by [`Store::restart_wal_if_wanted`].
    restart_wanted: AtomicBool,
    wal_restart_frames: i64,
    /// Every host's committed current state, by host id; see the module
    /// documentation. Replaced only by the writer, after its commit.
    current: Mutex<BTreeMap<String, Arc<HostState>>>,
}

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
    clock_offset_ms, cert_not_after_ms"
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
const HOSTS_PER_LOCK: usize = 512;

/// How long a connection waits for a lock before giving up.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// WAL frames (pages) past which the writer restarts the WAL from its
/// beginning: 16 MiB of 4 KiB pages, a few seconds of commits at 50,000
/// agents.
const WAL_RESTART_FRAMES: i64 = 4096;

/// What a restarted WAL file is cut back to, should it have grown past
/// it (while a long read kept it from restarting).
const WAL_SIZE_LIMIT_BYTES: i64 = 64 << 20;

/// What a passive checkpoint did, in pages.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoint {
    /// Pages in the WAL.
    pub wal_pages: i64,
    /// Of those, pages now in the database file.
    pub copied_pages: i64,
}

impl Store {
    /// Opens (creating if needed) the store and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let sql = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let mut writer = Connection::open(path).map_err(sql)?;
        // FULL: an ack promises the report survives a power cut, and group
        // commit (many reports per transaction) pays the fsync once.
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                 PRAGMA foreign_keys = ON;",
            )
            .map_err(sql)?;
        writer.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        writer
            .pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)
            .map_err(sql)?;
        schema::migrations()
            .to_latest(&mut writer)
            .map_err(|source| StoreError::Migration {
                path: path.to_owned(),
                source,
            })?;
        let reader = Connection::open(path).map_err(sql)?;
        reader.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        reader
            .execute_batch("PRAGMA query_only = ON;")
            .map_err(sql)?;
        let store = Self {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            checkpointer: Mutex::new(None),
            restart_wanted: AtomicBool::new(false),
            wal_restart_frames: WAL_RESTART_FRAMES,
            current: Mutex::new(BTreeMap::new()),
        };
        let loaded = store.load_hosts()?;
        *store.current.lock().unwrap_or_else(|p| p.into_inner()) = loaded;
        Ok(store)
    }

    /// Every host's state as stored, decoded.
    fn load_hosts(&self) -> Result<BTreeMap<String, Arc<HostState>>, StoreError> {
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
    fn read_host(&self, conn: &Connection, host: &str) -> Result<Option<HostState>, StoreError> {
        let row = conn
            .prepare_cached(concat!(
                "SELECT ",
                host_columns!(),
                " FROM hosts WHERE host_id = ?1"
            ))
            .and_then(|mut st| st.query_row([host], host_row).optional())
            .map_err(|e| self.err(e))?;
        row.map(|row| self.decode_host(row)).transpose()
    }

    fn decode_host(&self, row: HostRow) -> Result<HostState, StoreError> {
        let (mut state, health, stats, probes) = row;
        state.health = self.decode(&state.host_id, "health", health)?;
        state.agent_stats = self.decode(&state.host_id, "agent stats", stats)?;
        state.probes = self.decode(&state.host_id, "probes", probes)?;
        Ok(state)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Commits one request (already-validated reports of one host) in its
    /// own transaction. See [`Store::ingest_group`].
    pub fn ingest(
        &self,
        identity: &HostIdentity,
        reports: &[Report],
        received_ms: i64,
        counting: &ProbeCounting<'_>,
    ) -> Result<IngestOutcome, StoreError> {
        let job = IngestJob {
            identity,
            reports,
            agent_stats: None,
            received_ms,
            counting: *counting,
            peer: PeerFacts::default(),
        };
        self.ingest_group(std::slice::from_ref(&job))?
            .pop()
            .expect("one result per job")
    }

    /// Group commit: several requests in one transaction, so one fsync
    /// covers them all. Each request runs in its own savepoint: one that
    /// fails (a damaged stored inventory, say) is rolled back alone and
    /// gets its error while the others commit. The outer error means the
    /// commit itself failed and nothing was stored.
    ///
    /// Per report: a (host, epoch, seq) already stored is a duplicate,
    /// counted and skipped. A report collected before the host's current
    /// state (an old epoch delivered late) is backfilled: it advances the
    /// dedup cursor, counts its probe figures and proves the host alive,
    /// but leaves the current health, inventory and probes as they are.
    pub fn ingest_group(
        &self,
        jobs: &[IngestJob<'_>],
    ) -> Result<Vec<Result<IngestOutcome, StoreError>>, StoreError> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut tx = conn.transaction().map_err(|e| self.err(e))?;
        let mut results = Vec::with_capacity(jobs.len());
        let mut committed = Vec::with_capacity(jobs.len());
        for job in jobs {
            let sp = tx.savepoint().map_err(|e| self.err(e))?;
            // Read back inside the savepoint: a row that cannot be read
            // fails its request alone, like any other of its writes.
            let applied = self
                .apply(&sp, job)
                .and_then(|outcome| Ok((outcome, self.read_host(&sp, &job.identity.host_id)?)));
            match applied {
                Ok((outcome, state)) => {
                    sp.commit().map_err(|e| self.err(e))?;
                    results.push(Ok(outcome));
                    committed.extend(state);
                }
                // Dropping the savepoint rolls this request back.
                Err(e) => results.push(Err(e)),
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        // Still holding the writer: the copy changes in commit order.
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        for state in committed {
            current.insert(state.host_id.clone(), Arc::new(state));
        }
        Ok(results)
    }

    fn apply(&self, conn: &Connection, job: &IngestJob<'_>) -> Result<IngestOutcome, StoreError> {
        let host = job.identity.host_id.as_str();
        let received_ms = job.received_ms;
        let mut out = IngestOutcome::default();
        let current: Option<(i64, Option<Vec<u8>>)> = conn
            .prepare_cached(
                "SELECT last_collected_ms, inventory_sha256 FROM hosts WHERE host_id = ?1",
            )
            .and_then(|mut st| {
                st.query_row([host], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(|e| self.err(e))?;
        let (mut last_collected, mut stored_hash) = match current {
            Some((t, h)) => (Some(t), h),
            None => (None, None),
        };
        // epoch -> (stored cursor, cursor after this request): read once
        // per epoch, written once per epoch after the loop.
        let mut cursors: HashMap<u64, (Option<u64>, Option<u64>)> = HashMap::new();
        let mut current_hash_sent: Option<&[u8]> = None;
        for report in job.reports {
            let cursor = match cursors.get(&report.epoch) {
                Some(&(_, now)) => now,
                None => {
                    let c = self.cursor(conn, host, report.epoch)?;
                    cursors.insert(report.epoch, (c, c));
                    c
                }
            };
            if cursor.is_some_and(|last| report.seq <= last) {
                out.duplicates += 1;
                continue;
            }
            if let Some(c) = cursors.get_mut(&report.epoch) {
                c.1 = Some(report.seq);
            }
            let backfill = last_collected.is_some_and(|t| report.collected_at_ms < t);
            if backfill {
                conn.prepare_cached("UPDATE hosts SET last_report_ms = ?2 WHERE host_id = ?1")
                    .and_then(|mut st| st.execute(params![host, received_ms]))
                    .map_err(|e| self.err(e))?;
                out.backfilled += 1;
            } else {
                self.store_current(conn, job.identity, report, received_ms)?;
                if let Some(inv) = &report.inventory {
                    self.store_inventory(conn, host, inv, &report.inventory_sha256, received_ms)?;
                    stored_hash = Some(report.inventory_sha256.clone());
                }
                current_hash_sent = Some(&report.inventory_sha256);
                last_collected = Some(report.collected_at_ms);
            }
            if let Some(p) = &report.probes {
                out.ignored_probe_results +=
                    probes::count(conn, &job.counting, p).map_err(|e| self.err(e))?;
            }
            out.accepted += 1;
        }
        for (&epoch, &(stored, now)) in &cursors {
            if let Some(seq) = now.filter(|_| now != stored) {
                self.advance_cursor(conn, host, epoch, seq, received_ms, stored.is_none())?;
            }
        }
        if job.agent_stats.is_some() || job.peer != PeerFacts::default() {
            conn.prepare_cached(
                "UPDATE hosts SET agent_stats = COALESCE(?2, agent_stats),
                        clock_offset_ms = COALESCE(?3, clock_offset_ms),
                        cert_not_after_ms = COALESCE(?4, cert_not_after_ms)
                 WHERE host_id = ?1",
            )
            .and_then(|mut st| {
                st.execute(params![
                    host,
                    job.agent_stats.map(Message::encode_to_vec),
                    job.peer.clock_offset_ms,
                    job.peer.cert_not_after_ms
                ])
            })
            .map_err(|e| self.err(e))?;
        }
        if let Some(last) = job.reports.last() {
            out.committed_seq = cursors
                .get(&last.epoch)
                .and_then(|&(_, now)| now)
                .unwrap_or(0);
            out.need_full_inventory = match (current_hash_sent, &stored_hash) {
                (Some(sent), Some(have)) => sent != have.as_slice(),
                (Some(_), None) => true,
                // Only duplicates or backfill: ask only if we never had one.
                (None, have) => have.is_none(),
            };
        }
        Ok(out)
    }

    fn cursor(&self, conn: &Connection, host: &str, epoch: u64) -> Result<Option<u64>, StoreError> {
        conn.prepare_cached(
            "SELECT last_seq FROM delivery_cursors WHERE host_id = ?1 AND epoch = ?2",
        )
        .and_then(|mut st| {
            st.query_row(params![host, epoch as i64], |r| r.get::<_, i64>(0))
                .optional()
        })
        .map(|seq| seq.map(|s| s as u64))
        .map_err(|e| self.err(e))
    }

    /// Records (epoch, seq) as committed. A new epoch also forgets all but
    /// the host's most recent epochs, so the table stays small.
    fn advance_cursor(
        &self,
        conn: &Connection,
        host: &str,
        epoch: u64,
        seq: u64,
        received_ms: i64,
        new_epoch: bool,
    ) -> Result<(), StoreError> {
        conn.prepare_cached(
            "INSERT INTO delivery_cursors (host_id, epoch, last_seq, updated_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(host_id, epoch) DO UPDATE SET
                last_seq = excluded.last_seq, updated_ms = excluded.updated_ms",
        )
        .and_then(|mut st| st.execute(params![host, epoch as i64, seq as i64, received_ms]))
        .map_err(|e| self.err(e))?;
        if new_epoch {
            conn.prepare_cached(
                "DELETE FROM delivery_cursors WHERE host_id = ?1 AND epoch NOT IN
                    (SELECT epoch FROM delivery_cursors WHERE host_id = ?1
                     ORDER BY updated_ms DESC LIMIT ?2)",
            )
            .and_then(|mut st| st.execute(params![host, EPOCHS_KEPT]))
            .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// The report becomes the host's current state.
    fn store_current(
        &self,
        conn: &Connection,
        identity: &HostIdentity,
        report: &Report,
        received_ms: i64,
    ) -> Result<(), StoreError> {
        let health = report.health.as_ref().map(Message::encode_to_vec);
        let stats = report.agent_stats.as_ref().map(Message::encode_to_vec);
        let probes = report.probes.as_ref().map(Message::encode_to_vec);
        conn.prepare_cached(
            "INSERT INTO hosts (host_id, site, first_seen_ms, last_report_ms, last_collected_ms,
                                interval_secs, epoch, last_seq, agent_version, health, agent_stats,
                                probes, probe_duty_sha256)
             VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT(host_id) DO UPDATE SET
                site = excluded.site, last_report_ms = excluded.last_report_ms,
                last_collected_ms = excluded.last_collected_ms,
                interval_secs = excluded.interval_secs, epoch = excluded.epoch,
                last_seq = excluded.last_seq, agent_version = excluded.agent_version,
                health = excluded.health, agent_stats = excluded.agent_stats,
                probes = excluded.probes, probe_duty_sha256 = excluded.probe_duty_sha256",
        )
        .and_then(|mut st| {
            st.execute(params![
                identity.host_id,
                identity.site,
                received_ms,
                report.collected_at_ms,
                report.interval_secs,
                report.epoch as i64,
                report.seq as i64,
                report.agent_version,
                health,
                stats,
                probes,
                report.probe_duty_sha256,
            ])
        })
        .map(|_| ())
        .map_err(|e| self.err(e))
    }

    fn store_inventory(
        &self,
        tx: &Connection,
        host_id: &str,
        inv: &Inventory,
        sha256: &[u8],
        received_ms: i64,
    ) -> Result<(), StoreError> {
        let old: Option<Vec<u8>> = tx
            .query_row(
                "SELECT inventory FROM host_inventories WHERE host_id = ?1",
                [host_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let old =
            match old {
                Some(bytes) => Some(Inventory::decode(bytes.as_slice()).map_err(|source| {
                    StoreError::Corrupt {
                        path: self.path.clone(),
                        host: host_id.to_owned(),
                        what: "inventory",
                        source,
                    }
                })?),
                None => None,
            };
        let changes: Vec<Change> = match &old {
            Some(old) => inventory_diff::diff(old, inv),
            None => vec![Change {
                field: "inventory".into(),
                old: None,
                new: Some("first inventory received".into()),
            }],
        };
        let mut ins = tx
            .prepare_cached(
                "INSERT INTO inventory_changes (host_id, changed_ms, field, old_value, new_value)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(|e| self.err(e))?;
        for c in &changes {
            ins.execute(params![host_id, received_ms, c.field, c.old, c.new])
                .map_err(|e| self.err(e))?;
        }
        tx.prepare_cached(
            "INSERT INTO host_inventories (host_id, inventory) VALUES (?1, ?2)
             ON CONFLICT(host_id) DO UPDATE SET inventory = excluded.inventory",
        )
        .and_then(|mut st| st.execute(params![host_id, inv.encode_to_vec()]))
        .map_err(|e| self.err(e))?;
        tx.execute(
            "UPDATE hosts SET inventory_sha256 = ?2, inventory_updated_ms = ?3,
                hostname = ?4, os_name = ?5, os_version = ?6, kernel = ?7, arch = ?8
             WHERE host_id = ?1",
            params![
                host_id,
                sha256,
                received_ms,
                inv.hostname,
                inv.os_name,
                inv.os_version,
                inv.kernel_version,
                inv.arch,
            ],
        )
        .map_err(|e| self.err(e))?;
        facts::write(&Facts::from_inventory(inv), tx, host_id).map_err(|e| self.err(e))?;
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

    fn decode<M: Message + Default>(
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
        let inventory = self
            .decode(host_id, "inventory", Some(bytes))?
            .unwrap_or_default();
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
        self.cursor(&conn, host_id, epoch)
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

    /// A cheap read that proves the store answers (for `/healthz`).
    pub fn ping(&self) -> Result<(), StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row("SELECT count(*) FROM hosts", [], |r| r.get::<_, i64>(0))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Stops commits from copying the WAL back into the database themselves
    /// (SQLite's automatic checkpoint, run inside the commit that crosses
    /// 1000 pages): from now on [`Store::checkpoint`] must be called, from
    /// a thread of its own, so that no acknowledgement waits for it.
    pub fn hand_checkpoints_over(&self) -> Result<(), StoreError> {
        let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(|e| self.err(e))
    }

    /// Copies what it can of the WAL back into the database without
    /// blocking the writer or readers (a passive checkpoint), on its own
    /// connection.
    pub fn checkpoint(&self) -> Result<Checkpoint, StoreError> {
        let mut guard = self.checkpointer.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let conn = Connection::open(&self.path).map_err(|e| self.err(e))?;
            conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| self.err(e))?;
            *guard = Some(conn);
        }
        let conn = guard.as_ref().expect("opened above");
        let done = conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok(Checkpoint {
                    wal_pages: r.get(1)?,
                    copied_pages: r.get(2)?,
                })
            })
            .map_err(|e| self.err(e))?;
        if done.wal_pages >= self.wal_restart_frames {
            self.restart_wanted.store(true, Ordering::Relaxed);
        }
        Ok(done)
    }

    /// Lets the next commit write the WAL from its beginning again, once a
    /// checkpoint has asked for it: called by the committer between two
    /// groups, never inside one. Returns whether the WAL was restarted
    /// (`None`: nothing asked for).
    ///
    /// SQLite restarts the WAL only when a write transaction begins with
    /// every frame already copied into the database. Under a steady stream
    /// of commits that never happens on its own: each commit lands while
    /// the passive checkpoint is copying, so the WAL only grew (1 GiB in
    /// three minutes at 25,000 agents). Here the writer copies the few
    /// frames written since that checkpoint itself, between its own
    /// transactions, which is short. It does not wait: if a reader is still
    /// using the WAL, this is tried again after the next checkpoint.
    pub fn restart_wal_if_wanted(&self) -> Result<Option<bool>, StoreError> {
        if !self.restart_wanted.swap(false, Ordering::Relaxed) {
            return Ok(None);
        }
        let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        conn.busy_timeout(std::time::Duration::ZERO)
            .map_err(|e| self.err(e))?;
        let outcome = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0));
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| self.err(e))?;
        match outcome {
            Ok(busy) => Ok(Some(busy == 0)),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                Ok(Some(false))
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// Bytes on disk: the database file plus its WAL.
    pub fn size_bytes(&self) -> u64 {
        let wal = PathBuf::from(format!("{}-wal", self.path.display()));
        [self.path.as_path(), wal.as_path()]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use campanile_proto::v1::{AgentStats, Health, Inventory};

    use super::*;

    fn report(epoch: u64, seq: u64, collected_at_ms: i64, load: f64) -> Report {
        Report {
            host_id: "pc-1".into(),
            epoch,
            seq,
            collected_at_ms,
            interval_secs: 60,
            health: Some(Health {
                load1: Some(load),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        (dir, store)
    }

    fn ingest(store: &Store, id: &HostIdentity, reports: &[Report]) -> IngestOutcome {
        let targets = BTreeSet::new();
        let counting = ProbeCounting {
            site: "s",
            targets: &targets,
        };
        store.ingest(id, reports, 1_000, &counting).unwrap()
    }

    fn load1(store: &Store) -> Option<f64> {
        store.host_states()[0].health.as_ref().and_then(|h| h.load1)
    }

    /// One transaction per host, each its own commit.
    fn write_round(store: &Store, hosts: usize, round: u64) {
        for n in 0..hosts {
            let id = HostIdentity::new(&format!("pc-{n}"), "s").unwrap();
            let mut r = report(1, round, round as i64 * 1_000, round as f64);
            r.host_id = id.host_id.clone();
            ingest(store, &id, &[r]);
        }
    }

    /// The writer's transaction spans the checkpoint, as commits do under
    /// load: the checkpoint copies what was committed before it, and the
    /// transaction's frames land after, so the WAL is never all copied
    /// when the next transaction begins.
    fn checkpoint_during_a_commit(store: &Store) -> Checkpoint {
        let conn = store.writer.lock().unwrap();
        conn.execute_batch("BEGIN; UPDATE hosts SET last_report_ms = last_report_ms + 1;")
            .unwrap();
        let done = store.checkpoint().unwrap();
        conn.execute_batch("COMMIT").unwrap();
        done
    }

    #[test]
    fn the_wal_starts_over_though_every_checkpoint_overlaps_a_commit() {
        let (_d, mut store) = open();
        store.wal_restart_frames = 8;
        store.hand_checkpoints_over().unwrap();
        write_round(&store, 40, 1);
        let first = checkpoint_during_a_commit(&store);
        assert!(first.wal_pages >= 40, "{first:?}");
        // The committer, between two groups.
        assert_eq!(store.restart_wal_if_wanted().unwrap(), Some(true));
        assert_eq!(store.restart_wal_if_wanted().unwrap(), None);
        write_round(&store, 40, 2);
        let second = checkpoint_during_a_commit(&store);
        assert!(
            second.wal_pages <= first.wal_pages,
            "the WAL went on growing: {first:?} then {second:?}"
        );
        assert_eq!(store.host_states().len(), 40);
    }

    #[test]
    fn a_reader_in_the_wal_defers_the_restart_without_stalling_the_writer() {
        let (d, mut store) = open();
        store.wal_restart_frames = 1;
        store.hand_checkpoints_over().unwrap();
        write_round(&store, 5, 1);
        let reader = Connection::open(d.path().join("s.db")).unwrap();
        reader
            .execute_batch("BEGIN; SELECT count(*) FROM hosts;")
            .unwrap();
        write_round(&store, 5, 2);
        store.checkpoint().unwrap();
        // Returns at once (no busy wait), the reader's snapshot intact.
        assert_eq!(store.restart_wal_if_wanted().unwrap(), Some(false));
        let seen: i64 = reader
            .query_row("SELECT max(last_collected_ms) FROM hosts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(seen, 1_000);
        reader.execute_batch("COMMIT").unwrap();
        store.checkpoint().unwrap();
        assert_eq!(store.restart_wal_if_wanted().unwrap(), Some(true));
        write_round(&store, 5, 3);
        assert_eq!(load1(&store), Some(3.0));
    }

    #[test]
    fn drops_duplicates_of_every_recent_epoch() {
        let (_d, store) = open();
        let id = HostIdentity::new("pc-1", "s").unwrap();
        let o = ingest(&store, &id, &[report(1, 1, 10, 0.1), report(1, 2, 20, 0.2)]);
        assert_eq!((o.accepted, o.committed_seq), (2, 2));
        // A new epoch (spool set aside), then the old one again.
        let o = ingest(&store, &id, &[report(2, 1, 30, 0.3)]);
        assert_eq!((o.accepted, o.committed_seq), (1, 1));
        let o = ingest(&store, &id, &[report(1, 1, 10, 0.1), report(1, 2, 20, 0.2)]);
        assert_eq!((o.accepted, o.duplicates, o.committed_seq), (0, 2, 2));
        let o = ingest(&store, &id, &[report(2, 1, 30, 0.3), report(2, 2, 40, 0.4)]);
        assert_eq!((o.accepted, o.duplicates, o.committed_seq), (1, 1, 2));
        assert_eq!(load1(&store), Some(0.4));
    }

    #[test]
    fn a_backfilled_report_does_not_replace_the_current_state() {
        let (_d, store) = open();
        let id = HostIdentity::new("pc-1", "s").unwrap();
        ingest(&store, &id, &[report(2, 5, 50_000, 0.5)]);
        // An older epoch's backlog arrives late: accepted, not current.
        let o = ingest(&store, &id, &[report(1, 7, 10_000, 0.9)]);
        assert_eq!((o.accepted, o.backfilled, o.committed_seq), (1, 1, 7));
        assert_eq!(load1(&store), Some(0.5));
        assert_eq!(store.host_states()[0].last_collected_ms, 50_000);
    }

    #[test]
    fn a_failing_request_is_rolled_back_alone_in_its_group() {
        let (d, store) = open();
        let a = HostIdentity::new("pc-a", "s").unwrap();
        let b = HostIdentity::new("pc-b", "s").unwrap();
        let mut r = report(1, 1, 10, 0.1);
        r.host_id = "pc-a".into();
        r.inventory = Some(Inventory::default());
        r.inventory_sha256 = vec![1; 32];
        ingest(&store, &a, &[r.clone()]);
        // Damage pc-a's stored inventory: its next full inventory cannot be
        // diffed against it.
        rusqlite::Connection::open(d.path().join("s.db"))
            .unwrap()
            .execute(
                "UPDATE host_inventories SET inventory = x'ffff' WHERE host_id = 'pc-a'",
                [],
            )
            .unwrap();
        r.seq = 2;
        let mut rb = report(1, 1, 10, 0.7);
        rb.host_id = "pc-b".into();
        let targets = BTreeSet::new();
        let counting = ProbeCounting {
            site: "s",
            targets: &targets,
        };
        let job = |identity, reports| IngestJob {
            identity,
            reports,
            agent_stats: None,
            received_ms: 2_000,
            counting,
            peer: PeerFacts::default(),
        };
        let results = store
            .ingest_group(&[
                job(&a, std::slice::from_ref(&r)),
                job(&b, std::slice::from_ref(&rb)),
            ])
            .unwrap();
        assert!(matches!(results[0], Err(StoreError::Corrupt { .. })));
        assert_eq!(results[1].as_ref().unwrap().accepted, 1);
        // In memory, too, pc-a is as it was and pc-b as committed.
        let states = store.host_states();
        assert_eq!(
            (states[0].last_report_ms, states[1].last_report_ms),
            (1_000, 2_000)
        );
        // pc-a's seq 2 was rolled back: it is not a duplicate next time.
        let mut r3 = r.clone();
        r3.inventory = None;
        let o = ingest(&store, &a, &[r3]);
        assert_eq!((o.accepted, o.duplicates), (1, 0));
    }

    #[test]
    fn the_hosts_in_memory_are_what_a_reopened_store_loads() {
        let (d, store) = open();
        assert!(store.host_states().is_empty());
        let a = HostIdentity::new("pc-a", "s").unwrap();
        let b = HostIdentity::new("pc-b", "t").unwrap();
        let mut first = report(1, 1, 10_000, 0.1);
        first.host_id = "pc-a".into();
        first.inventory = Some(Inventory {
            hostname: Some("PC-A".into()),
            os_name: Some("Debian GNU/Linux".into()),
            ..Default::default()
        });
        first.inventory_sha256 = vec![7; 32];
        ingest(&store, &a, &[first]);
        let mut rb = report(1, 1, 10_000, 0.7);
        rb.host_id = "pc-b".into();
        ingest(&store, &b, &[rb]);
        // A later request of pc-a: new health, agent stats and peer facts
        // merged into its row, and an old epoch's report backfilled.
        let mut later = report(2, 1, 20_000, 0.2);
        later.host_id = "pc-a".into();
        later.inventory_sha256 = vec![7; 32];
        let mut old = report(1, 2, 15_000, 0.9);
        old.host_id = "pc-a".into();
        let targets = BTreeSet::new();
        let job = IngestJob {
            identity: &a,
            reports: &[later, old],
            agent_stats: Some(&AgentStats {
                queue_depth: 3,
                ..Default::default()
            }),
            received_ms: 5_000,
            counting: ProbeCounting {
                site: "s",
                targets: &targets,
            },
            peer: PeerFacts {
                clock_offset_ms: Some(-40),
                cert_not_after_ms: Some(9_000_000),
            },
        };
        store.ingest_group(&[job]).unwrap().pop().unwrap().unwrap();

        let in_memory = store.host_states();
        let ids: Vec<&str> = in_memory.iter().map(|h| h.host_id.as_str()).collect();
        assert_eq!(ids, ["pc-a", "pc-b"]);
        let pc_a = &in_memory[0];
        assert_eq!(pc_a.hostname.as_deref(), Some("PC-A"));
        assert_eq!(
            pc_a.last_collected_ms, 20_000,
            "the backfill is not current"
        );
        assert_eq!(pc_a.last_report_ms, 5_000);
        assert_eq!(pc_a.health.as_ref().and_then(|h| h.load1), Some(0.2));
        assert_eq!(pc_a.agent_stats.as_ref().map(|s| s.queue_depth), Some(3));
        assert_eq!(pc_a.peer.clock_offset_ms, Some(-40));
        drop(store);
        let reopened = Store::open(&d.path().join("s.db")).unwrap();
        assert_eq!(reopened.host_states(), in_memory);
    }

    #[test]
    fn an_inventory_kept_in_the_hosts_row_moves_to_a_table_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let inventory = Inventory {
            hostname: Some("PC-OLD".into()),
            ..Default::default()
        };
        {
            let mut conn = Connection::open(&path).unwrap();
            schema::migrations().to_version(&mut conn, 5).unwrap();
            conn.execute(
                "INSERT INTO hosts (host_id, site, first_seen_ms, last_report_ms,
                    last_collected_ms, interval_secs, epoch, last_seq, agent_version,
                    inventory, inventory_sha256, inventory_updated_ms, hostname)
                 VALUES ('pc-1', 's', 1, 2, 2, 60, 1, 1, 'old', ?1, x'07', 2, 'PC-OLD')",
                [inventory.encode_to_vec()],
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let stored = store.inventory("pc-1").unwrap().expect("moved");
        assert_eq!((stored.inventory, stored.sha256), (inventory, vec![7]));
        assert_eq!(store.host_states()[0].hostname.as_deref(), Some("PC-OLD"));
        let columns: Vec<String> = store
            .reader
            .lock()
            .unwrap()
            .prepare("SELECT name FROM pragma_table_info('hosts')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(!columns.iter().any(|c| c == "inventory"), "{columns:?}");
    }

    #[test]
    fn every_host_is_taken_once_in_order_across_the_batches() {
        let (_d, store) = open();
        let n = 2 * HOSTS_PER_LOCK + 7;
        let ids: Vec<HostIdentity> = (0..n)
            .map(|i| HostIdentity::new(&format!("pc-{i:05}"), "s").unwrap())
            .collect();
        let reports: Vec<Report> = ids
            .iter()
            .map(|id| Report {
                host_id: id.host_id.clone(),
                ..report(1, 1, 10, 0.1)
            })
            .collect();
        let targets = BTreeSet::new();
        let jobs: Vec<IngestJob<'_>> = ids
            .iter()
            .zip(&reports)
            .map(|(identity, r)| IngestJob {
                identity,
                reports: std::slice::from_ref(r),
                agent_stats: None,
                received_ms: 1_000,
                counting: ProbeCounting {
                    site: "s",
                    targets: &targets,
                },
                peer: PeerFacts::default(),
            })
            .collect();
        store.ingest_group(&jobs).unwrap();
        let taken: Vec<String> = store
            .host_states()
            .iter()
            .map(|h| h.host_id.clone())
            .collect();
        let expected: Vec<String> = ids.iter().map(|id| id.host_id.clone()).collect();
        assert_eq!(taken, expected);
    }

    #[test]
    fn a_host_whose_stored_health_does_not_decode_is_loaded_without_it() {
        let (d, store) = open();
        let id = HostIdentity::new("pc-1", "s").unwrap();
        ingest(&store, &id, &[report(1, 1, 10, 0.1)]);
        drop(store);
        Connection::open(d.path().join("s.db"))
            .unwrap()
            .execute(
                "UPDATE hosts SET health = x'ffff' WHERE host_id = 'pc-1'",
                [],
            )
            .unwrap();
        let store = Store::open(&d.path().join("s.db")).unwrap();
        let states = store.host_states();
        assert_eq!(states.len(), 1);
        assert!(states[0].health.is_none());
        // Its next report replaces the damaged health.
        ingest(&store, &id, &[report(1, 2, 20, 0.2)]);
        assert_eq!(load1(&store), Some(0.2));
    }
}
