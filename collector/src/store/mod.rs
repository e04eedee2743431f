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

pub mod certificates;
pub mod checkpoint;
pub mod commit;
mod facts;
pub mod integrity;
pub(crate) mod inventory_diff;
mod plausible;
mod probes;
mod read;
pub mod revocations;
pub mod rollover;
mod schema;
mod wal;
mod write;

pub use probes::{ProbeCounter, ProbeCounting};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use campanile_proto::identity::HostIdentity;
use campanile_proto::v1::{AgentStats, Inventory, Report};
use rusqlite::Connection;

use campanile_territory::host::{HostState, PeerFacts};

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
    /// A report no real agent sends, refused before anything is stored.
    #[error("report seq={seq} of host {host}: {reason}")]
    Implausible {
        host: String,
        seq: u64,
        reason: String,
    },
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

/// A host's dedup cursor for one epoch, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub last_seq: u64,
    /// When it last advanced (collector clock, Unix ms).
    pub updated_ms: i64,
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
    /// What the start found.
    integrity: integrity::Integrity,
    /// Stored values found undecodable and set aside since the start.
    damaged_rows: std::sync::atomic::AtomicU64,
    /// Hosts whose stored inventory a read found undecodable, for their
    /// next commit to set aside.
    undecodable_inventories: Mutex<std::collections::BTreeSet<String>>,
}

/// How long a connection waits for a lock before giving up; the alerts'
/// own file waits as long.
pub(crate) const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
        let hosts_last_run = integrity::read_census(path);
        if hosts_last_run.is_some_and(|n| n > 0)
            && std::fs::metadata(path).map_or(true, |m| m.len() == 0)
        {
            tracing::error!(store = %path.display(), hosts_last_run,
                "the store file is empty or missing though the last run held hosts: \
                 starting on an empty territory; restore it from a backup if you have one");
        }
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
        let problems = integrity::quick_check(&writer).map_err(sql)?;
        let mut store = Self {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            checkpointer: Mutex::new(None),
            restart_wanted: AtomicBool::new(false),
            wal_restart_frames: WAL_RESTART_FRAMES,
            current: Mutex::new(BTreeMap::new()),
            integrity: integrity::Integrity::default(),
            damaged_rows: std::sync::atomic::AtomicU64::new(0),
            undecodable_inventories: Mutex::new(Default::default()),
        };
        if !problems.is_empty() {
            tracing::error!(store = %path.display(), problems = ?problems,
                "PRAGMA quick_check found damage in the store; serving what can be read. \
                 Stop the collector and restore a backup, or run `sqlite3 <store> .recover`");
            store.set_aside_undecodable_inventories()?;
        }
        let loaded = store.load_hosts()?;
        let hosts_now = loaded.len() as u64;
        *store.current.lock().unwrap_or_else(|p| p.into_inner()) = loaded;
        store.integrity = integrity::Integrity {
            problems,
            hosts_last_run,
            hosts_now,
        };
        if store.integrity.hosts_lost() {
            tracing::error!(store = %path.display(), hosts_last_run, hosts_now,
                "the store holds far fewer hosts than at the last run: was it replaced, \
                 truncated or restored from an old backup?");
        } else {
            tracing::info!(store = %path.display(), hosts = hosts_now, "store opened");
        }
        store.write_census();
        Ok(store)
    }

    /// What the start found.
    pub fn integrity(&self) -> &integrity::Integrity {
        &self.integrity
    }

    /// Stored values found undecodable and set aside since the start.
    pub fn damaged_rows(&self) -> u64 {
        self.damaged_rows.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records the host count for the next start to compare with.
    pub fn write_census(&self) {
        let hosts = self.current.lock().unwrap_or_else(|p| p.into_inner()).len() as u64;
        if let Err(error) = integrity::write_census(&self.path, hosts) {
            tracing::warn!(%error, store = %self.path.display(), "cannot write the store census");
        }
    }

    /// Sets aside the inventories that do not decode and forgets their
    /// hash, so each host is asked for its full inventory at its next
    /// report.
    fn set_aside_undecodable_inventories(&self) -> Result<(), StoreError> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let damaged = integrity::undecodable_inventories(&tx).map_err(|e| self.err(e))?;
        let now = crate::clock::now_ms();
        for (host, bytes, error) in &damaged {
            self.forget_inventory(&tx, host, bytes, now, error)?;
        }
        tx.commit().map_err(|e| self.err(e))
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

    /// A cheap read that proves the store answers (for `/healthz`).
    pub fn ping(&self) -> Result<(), StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row("SELECT count(*) FROM hosts", [], |r| r.get::<_, i64>(0))
            .map(|_| ())
            .map_err(|e| self.err(e))
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
    use prost::Message;

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
        let (_d, store) = open();
        let a = HostIdentity::new("pc-a", "s").unwrap();
        let b = HostIdentity::new("pc-b", "s").unwrap();
        let mut r = report(1, 1, 10, 0.1);
        r.host_id = "pc-a".into();
        r.inventory = Some(Inventory::default());
        r.inventory_sha256 = vec![1; 32];
        ingest(&store, &a, &[r.clone()]);
        // A seq no agent reaches fails pc-a's request, and pc-a's alone.
        r.seq = u64::MAX;
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
        assert!(matches!(results[0], Err(StoreError::Implausible { .. })));
        assert_eq!(results[1].as_ref().unwrap().accepted, 1);
        // In memory, too, pc-a is as it was and pc-b as committed.
        let states = store.host_states();
        assert_eq!(
            (states[0].last_report_ms, states[1].last_report_ms),
            (1_000, 2_000)
        );
        // pc-a's request was rolled back: seq 2 is not a duplicate.
        let mut r3 = r.clone();
        r3.seq = 2;
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
        let n = 2 * read::HOSTS_PER_LOCK + 7;
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

    #[test]
    fn an_inventory_that_no_longer_decodes_is_set_aside_and_replaced_by_the_next() {
        let (d, store) = open();
        let id = HostIdentity::new("pc-1", "s").unwrap();
        let mut r = report(1, 1, 10, 0.1);
        r.inventory = Some(Inventory {
            hostname: Some("old".into()),
            ..Default::default()
        });
        r.inventory_sha256 = vec![1; 32];
        ingest(&store, &id, &[r.clone()]);
        let damage = || {
            Connection::open(d.path().join("s.db"))
                .unwrap()
                .execute(
                    "UPDATE host_inventories SET inventory = x'ffff' WHERE host_id = 'pc-1'",
                    [],
                )
                .unwrap()
        };
        damage();
        // The next full inventory is taken, not refused for ever.
        r.seq = 2;
        r.inventory = Some(Inventory {
            hostname: Some("new".into()),
            ..Default::default()
        });
        r.inventory_sha256 = vec![2; 32];
        let o = ingest(&store, &id, &[r.clone()]);
        assert_eq!(o.accepted, 1);
        assert_eq!(store.damaged_rows(), 1);
        let inv = store.inventory("pc-1").unwrap().unwrap();
        assert_eq!(inv.inventory.hostname.as_deref(), Some("new"));
        // Found at a start that finds damage: set aside, its hash
        // forgotten, so the next report is asked for the full inventory.
        damage();
        drop(store);
        let conn = Connection::open(d.path().join("s.db")).unwrap();
        let aside: i64 = conn
            .query_row(
                "SELECT count(*) FROM damaged_rows WHERE what = 'inventory'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(aside, 1);
        drop(conn);
        let store = Store::open(&d.path().join("s.db")).unwrap();
        assert!(
            store.integrity().problems.is_empty(),
            "the file itself is sound"
        );
        r.seq = 3;
        r.inventory = None;
        // The file is sound, so the start reads no inventory; the first
        // read that finds this one undecodable has it set aside at the
        // host's next commit, which asks for the full inventory.
        assert!(store.inventory("pc-1").is_err());
        let o = ingest(&store, &id, &[r]);
        assert_eq!(o.accepted, 1);
        assert!(o.need_full_inventory);
        assert!(store.inventory("pc-1").unwrap().is_none());
    }

    #[test]
    fn a_store_truncated_or_overwritten_is_reported_at_start() {
        let (d, store) = open();
        let path = d.path().join("s.db");
        for n in 0..300 {
            let id = HostIdentity::new(&format!("pc-{n:03}"), "s").unwrap();
            let mut r = report(1, 1, 10, 0.1);
            r.host_id = id.host_id.clone();
            r.inventory = Some(Inventory {
                hostname: Some(format!("a-long-enough-hostname-{n:03}").repeat(20)),
                ..Default::default()
            });
            r.inventory_sha256 = vec![1; 32];
            ingest(&store, &id, &[r]);
        }
        store.write_census();
        drop(store);
        let sound = Store::open(&path).unwrap();
        assert!(sound.integrity().problems.is_empty());
        assert!(!sound.integrity().hosts_lost());
        drop(sound);

        // 8 KiB of garbage in the middle of the file.
        let copy = d.path().join("copy.db");
        std::fs::copy(&path, &copy).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.seek(SeekFrom::Start(len / 2)).unwrap();
            f.write_all(&[0xa5; 8192]).unwrap();
        }
        match Store::open(&path) {
            Ok(damaged) => assert!(
                !damaged.integrity().problems.is_empty(),
                "quick_check names the broken pages"
            ),
            // Damage SQLite meets before the check: refused, with its reason.
            Err(e) => assert!(e.to_string().contains("malformed"), "{e}"),
        }

        // Cut to nothing: a new, empty store, announced as a loss.
        std::fs::copy(&copy, &path).unwrap();
        std::fs::File::create(&path).unwrap();
        let empty = Store::open(&path).unwrap();
        assert_eq!(empty.integrity().hosts_now, 0);
        assert_eq!(empty.integrity().hosts_last_run, Some(300));
        assert!(empty.integrity().hosts_lost());
    }
}
