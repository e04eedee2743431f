//! The durable outbox. Every report is committed to an on-disk database
//! (redb: copy-on-write B-trees with checksummed commits) before it is sent,
//! and removed only once the collector's ack covers its sequence number.
//!
//! The spool owns the report numbering: the epoch is drawn once when the
//! file is created and the next sequence number is committed with each
//! report, so sequence numbers stay monotonic across restarts and the
//! collector's dedup by (host, epoch, seq) holds.
//!
//! Crash safety comes from redb: a commit interrupted by `kill -9` or a
//! power cut is rolled back at the next open (its checksum does not match),
//! and the spool holds exactly what the last completed commit held. A file
//! too damaged to open is set aside (renamed, counted) and a new spool is
//! started: damage never stops the agent. A stored report that no longer
//! decodes is skipped, removed and counted.
//!
//! Bounds: by bytes (the encoded reports) and by age (collection time).
//! When a new report does not fit, the oldest are dropped and counted.

use std::path::{Path, PathBuf};

use campanile_proto::v1::{AgentStats, Report};
use prost::Message;
use redb::{
    Database, DatabaseError, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    StorageError, TableDefinition, WriteTransaction,
};

/// seq → encoded `Report`.
const REPORTS: TableDefinition<u64, &[u8]> = TableDefinition::new("reports");
/// Numbering, size and counters, committed with the reports they describe.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const EPOCH: &str = "epoch";
const NEXT_SEQ: &str = "next_seq";
const BYTES: &str = "bytes";
const DROPPED_FULL: &str = "dropped_spool_full";
const DROPPED_EXPIRED: &str = "dropped_expired";
const DROPPED_INVALID: &str = "dropped_invalid";
const DROPPED_CORRUPT: &str = "dropped_corrupt";
const SEND_FAILURES: &str = "send_failures";
const RESETS: &str = "resets";

/// redb's page cache. The spool is read front to back a batch at a time,
/// so a small cache costs little and keeps the agent's RSS flat however
/// large the backlog (the default cache may grow to 1 GiB).
const CACHE_BYTES: usize = 2 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub path: PathBuf,
    /// Sum of encoded report sizes kept at most.
    pub max_bytes: u64,
    /// Reports collected longer ago than this are dropped.
    pub max_age_secs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: already open by another process (two agents with one spool?)")]
    InUse { path: PathBuf },
    #[error("spool {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("spool {path}: {message}")]
    Storage { path: PathBuf, message: String },
}

/// Counters that only grow, kept in the spool so they survive restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub dropped_spool_full: u64,
    pub dropped_expired: u64,
    pub dropped_invalid: u64,
    pub dropped_corrupt: u64,
    pub send_failures: u64,
    pub resets: u64,
}

impl Counters {
    pub fn dropped_total(&self) -> u64 {
        self.dropped_spool_full + self.dropped_expired + self.dropped_invalid + self.dropped_corrupt
    }

    const KEYS: [&'static str; 6] = [
        DROPPED_FULL,
        DROPPED_EXPIRED,
        DROPPED_INVALID,
        DROPPED_CORRUPT,
        SEND_FAILURES,
        RESETS,
    ];

    fn values(&self) -> [u64; 6] {
        [
            self.dropped_spool_full,
            self.dropped_expired,
            self.dropped_invalid,
            self.dropped_corrupt,
            self.send_failures,
            self.resets,
        ]
    }

    fn from_values(v: [u64; 6]) -> Self {
        Self {
            dropped_spool_full: v[0],
            dropped_expired: v[1],
            dropped_invalid: v[2],
            dropped_corrupt: v[3],
            send_failures: v[4],
            resets: v[5],
        }
    }
}

/// What an append did besides storing the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// Oldest reports dropped to make room or because they expired.
    pub dropped: u64,
    /// One of them carried the full inventory: the next report must carry
    /// it again, or the collector may never receive it.
    pub dropped_full_inventory: bool,
}

pub struct Spool {
    db: Database,
    path: PathBuf,
    max_bytes: u64,
    max_age_ms: i64,
    epoch: u64,
    next_seq: u64,
    len: u64,
    bytes: u64,
    oldest_collected_ms: Option<i64>,
    counters: Counters,
}

impl Spool {
    /// Opens the spool, creating it if needed. A file redb cannot open as a
    /// database is renamed to `<path>.damaged` (replacing an older one) and
    /// a new spool is started; only "in use" and I/O errors are returned.
    pub fn open(cfg: &SpoolConfig) -> Result<Self, SpoolError> {
        let path = cfg.path.clone();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|error| SpoolError::Io {
                path: dir.to_owned(),
                error,
            })?;
        }
        let mut resets = 0;
        let (db, state) = match Self::open_db(&path) {
            Ok(ok) => ok,
            Err(Opened::Fatal(e)) => return Err(e),
            Err(Opened::Damaged(message)) => {
                let aside = set_aside(&path)?;
                tracing::error!(spool = %path.display(), moved_to = %aside.display(), %message,
                    "spool file damaged beyond repair: set aside, starting a new spool; its unsent reports are lost");
                resets = 1;
                match Self::open_db(&path) {
                    Ok(ok) => ok,
                    Err(Opened::Fatal(e)) => return Err(e),
                    Err(Opened::Damaged(message)) => {
                        return Err(SpoolError::Storage { path, message });
                    }
                }
            }
        };
        let mut spool = Self {
            db,
            path,
            max_bytes: cfg.max_bytes.max(1),
            max_age_ms: i64::try_from(cfg.max_age_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            epoch: state.epoch,
            next_seq: state.next_seq,
            len: state.len,
            bytes: state.bytes,
            oldest_collected_ms: None,
            counters: state.counters,
        };
        if resets > 0 || state.fresh {
            spool.counters.resets += resets;
            // Commit the epoch now so it never changes while the file lives.
            spool.write(|_, _| Ok(()))?;
        }
        spool.oldest_collected_ms = spool.read_front()?;
        tracing::info!(spool = %spool.path.display(), reports = spool.len, bytes = spool.bytes,
            epoch = spool.epoch, next_seq = spool.next_seq, "spool opened");
        Ok(spool)
    }

    fn open_db(path: &Path) -> Result<(Database, Loaded), Opened> {
        // redb asserts on some damage it finds while opening (a file cut
        // short by a full disk, say) instead of returning an error. That
        // must not stop the agent: a panic while opening means "damaged".
        // Unwinding is sound here: nothing outlives the closure but what it
        // returns, and the file handle and lock are released on unwind
        // (the release profile must keep panic = "unwind").
        // A new file goes through redb's recovery path too: only an
        // existing one is worth a warning.
        let existed = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
        let repaired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let flag = repaired.clone();
            let mut db = Database::builder()
                .set_cache_size(CACHE_BYTES)
                // Called (repeatedly, with progress) when the last shutdown
                // was not clean: redb verifies checksums and rolls back an
                // interrupted commit.
                .set_repair_callback(move |_| {
                    flag.store(true, std::sync::atomic::Ordering::Relaxed)
                })
                .create(path)
                .map_err(|e| classify_open(path, e))?;
            if existed && repaired.load(std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(spool = %path.display(),
                    "spool was not closed cleanly (agent killed or power cut): verified, interrupted commit rolled back");
            }
            // The file may also have been damaged after a clean shutdown
            // (bad sector, another program): verify every checksum once
            // per start, so damage is found here and not mid-run.
            match db.check_integrity() {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(spool = %path.display(), "spool damage found and repaired")
                }
                Err(e) => return Err(classify_open(path, e)),
            }
            let loaded = Loaded::read(&db).map_err(Opened::Damaged)?;
            Ok((db, loaded))
        }));
        opened.unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "redb panicked".into());
            Err(Opened::Damaged(message))
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The seq the next report will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn oldest_collected_ms(&self) -> Option<i64> {
        self.oldest_collected_ms
    }

    /// The agent's self-metrics as of `now_ms`.
    pub fn stats(&self, now_ms: i64) -> AgentStats {
        let c = self.counters;
        AgentStats {
            queue_depth: self.len,
            dropped_reports_total: c.dropped_total(),
            send_failures_total: c.send_failures,
            oldest_unsent_age_seconds: self
                .oldest_collected_ms
                .map_or(0, |t| u64::try_from((now_ms - t) / 1000).unwrap_or(0)),
            spool_bytes: self.bytes,
            dropped_spool_full_total: c.dropped_spool_full,
            dropped_expired_total: c.dropped_expired,
            dropped_invalid_total: c.dropped_invalid,
            dropped_corrupt_total: c.dropped_corrupt,
            spool_resets_total: c.resets,
        }
    }

    /// Numbers the report (this spool's epoch, the next seq) and commits it
    /// durably, first dropping expired reports and, while it does not fit,
    /// the oldest ones. The new report itself is always kept.
    pub fn append(&mut self, mut report: Report, now_ms: i64) -> Result<Appended, SpoolError> {
        report.epoch = self.epoch;
        report.seq = self.next_seq;
        let encoded = report.encode_to_vec();
        let size = encoded.len() as u64;
        let max_bytes = self.max_bytes;
        let cutoff = now_ms.saturating_sub(self.max_age_ms);
        let mut appended = Appended {
            seq: report.seq,
            ..Default::default()
        };
        // The common case, nothing to drop, is known from memory: no need to
        // read and decode the oldest report on every append.
        let must_evict = self.bytes + size > max_bytes
            || self.oldest_collected_ms.is_some_and(|t| t < cutoff)
            || (self.oldest_collected_ms.is_none() && self.len > 0);
        self.write(|tx, s| {
            let mut table = tx.open_table(REPORTS).map_err(storage)?;
            loop {
                if !must_evict {
                    break;
                }
                let (seq, value) = match table.first().map_err(storage)? {
                    Some((k, v)) => (k.value(), v.value().to_vec()),
                    None => break,
                };
                let old = Report::decode(value.as_slice()).ok();
                let expired = old.as_ref().is_some_and(|r| r.collected_at_ms < cutoff);
                let full = s.bytes + size > max_bytes;
                if !(expired || full || old.is_none()) {
                    break;
                }
                table.remove(seq).map_err(storage)?;
                s.len -= 1;
                s.bytes = s.bytes.saturating_sub(value.len() as u64);
                match old {
                    None => s.counters.dropped_corrupt += 1,
                    Some(old) => {
                        appended.dropped += 1;
                        appended.dropped_full_inventory |= old.inventory.is_some();
                        if expired {
                            s.counters.dropped_expired += 1;
                        } else {
                            s.counters.dropped_spool_full += 1;
                        }
                    }
                }
            }
            table
                .insert(report.seq, encoded.as_slice())
                .map_err(storage)?;
            s.len += 1;
            s.bytes += size;
            s.next_seq += 1;
            Ok(())
        })?;
        if appended.dropped > 0 {
            tracing::warn!(spool = %self.path.display(), dropped = appended.dropped,
                dropped_total = self.counters.dropped_total(), max_bytes = self.max_bytes,
                "spool full or reports expired: oldest reports dropped");
        }
        Ok(appended)
    }

    /// Appends many reports in one commit, numbered in order, for tools
    /// that generate reports in bulk (benchmarks, the fleet simulator). No
    /// bounds are applied: the next [`Spool::append`] enforces them.
    pub fn append_many(&mut self, reports: Vec<Report>) -> Result<u64, SpoolError> {
        let epoch = self.epoch;
        self.write(|tx, s| {
            let mut table = tx.open_table(REPORTS).map_err(storage)?;
            for mut report in reports {
                report.epoch = epoch;
                report.seq = s.next_seq;
                let encoded = report.encode_to_vec();
                table
                    .insert(report.seq, encoded.as_slice())
                    .map_err(storage)?;
                s.len += 1;
                s.bytes += encoded.len() as u64;
                s.next_seq += 1;
            }
            Ok(())
        })?;
        Ok(self.next_seq - 1)
    }

    /// The oldest reports, in order: at most `max_reports`, and at most
    /// `max_bytes` of them unless the first alone is larger (it is still
    /// sent, alone). Reports that no longer decode are removed and counted.
    pub fn batch(&mut self, max_reports: usize, max_bytes: u64) -> Result<Vec<Report>, SpoolError> {
        let mut out = Vec::new();
        let mut corrupt = Vec::new();
        {
            let tx = self.db.begin_read().map_err(|e| self.storage(e))?;
            let table = tx.open_table(REPORTS).map_err(|e| self.storage(e))?;
            let mut total = 0u64;
            for entry in table.iter().map_err(|e| self.storage(e))? {
                let (k, v) = entry.map_err(|e| self.storage(e))?;
                let bytes = v.value();
                match Report::decode(bytes) {
                    Ok(r) => {
                        let size = bytes.len() as u64;
                        if !out.is_empty() && total + size > max_bytes {
                            break;
                        }
                        total += size;
                        out.push(r);
                        if out.len() >= max_reports {
                            break;
                        }
                    }
                    Err(e) => corrupt.push((k.value(), bytes.len() as u64, e)),
                }
            }
        }
        if !corrupt.is_empty() {
            for (seq, _, error) in &corrupt {
                tracing::error!(spool = %self.path.display(), seq, %error, "spooled report does not decode: dropped");
            }
            self.write(|tx, s| {
                let mut table = tx.open_table(REPORTS).map_err(storage)?;
                for (seq, size, _) in &corrupt {
                    if table.remove(*seq).map_err(storage)?.is_some() {
                        s.len -= 1;
                        s.bytes = s.bytes.saturating_sub(*size);
                        s.counters.dropped_corrupt += 1;
                    }
                }
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// Removes every report of `epoch` up to `seq`: the collector committed
    /// them. Returns how many were removed.
    pub fn ack(&mut self, epoch: u64, seq: u64) -> Result<u64, SpoolError> {
        if epoch != self.epoch {
            return Ok(0);
        }
        let mut removed = 0;
        self.write_with(Durability::None, |tx, s| {
            let mut table = tx.open_table(REPORTS).map_err(storage)?;
            for entry in table
                .extract_from_if(..=seq, |_, _| true)
                .map_err(storage)?
            {
                let (_, v) = entry.map_err(storage)?;
                s.len -= 1;
                s.bytes = s.bytes.saturating_sub(v.value().len() as u64);
                removed += 1;
            }
            Ok(())
        })?;
        Ok(removed)
    }

    /// Removes one report the collector refused as invalid, counting it.
    /// Returns the report if it was there.
    pub fn drop_invalid(&mut self, seq: u64) -> Result<Option<Report>, SpoolError> {
        let mut dropped = None;
        self.write_with(Durability::None, |tx, s| {
            let mut table = tx.open_table(REPORTS).map_err(storage)?;
            let value = table
                .remove(seq)
                .map_err(storage)?
                .map(|v| v.value().to_vec());
            if let Some(value) = value {
                s.len -= 1;
                s.bytes = s.bytes.saturating_sub(value.len() as u64);
                s.counters.dropped_invalid += 1;
                dropped = Some(Report::decode(value.as_slice()).unwrap_or_default());
            }
            Ok(())
        })?;
        Ok(dropped)
    }

    /// Counts a failed Deliver call. Kept in memory and committed with the
    /// next write: a failure is not worth an fsync of its own.
    pub fn note_send_failure(&mut self) {
        self.counters.send_failures += 1;
    }

    /// Counts a report that could not be written at all (disk full, I/O
    /// error) as dropped for lack of room; committed with the next write.
    pub fn note_unspooled(&mut self) {
        self.counters.dropped_spool_full += 1;
    }

    fn storage(&self, e: impl std::fmt::Display) -> SpoolError {
        SpoolError::Storage {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    fn write(
        &mut self,
        f: impl FnOnce(&WriteTransaction, &mut State) -> Result<(), String>,
    ) -> Result<(), SpoolError> {
        self.write_with(Durability::Immediate, f)
    }

    /// One write transaction over a copy of the in-memory state; the copy
    /// replaces it only once the commit succeeded, so a failed write (disk
    /// full) leaves memory and file in agreement.
    fn write_with(
        &mut self,
        durability: Durability,
        f: impl FnOnce(&WriteTransaction, &mut State) -> Result<(), String>,
    ) -> Result<(), SpoolError> {
        let mut state = State {
            next_seq: self.next_seq,
            len: self.len,
            bytes: self.bytes,
            counters: self.counters,
        };
        let mut tx = self.db.begin_write().map_err(|e| self.storage(e))?;
        // An ack lost to a crash only makes the collector see a duplicate,
        // which it drops: no need to pay an fsync for it. The next durable
        // commit persists it.
        tx.set_durability(durability).map_err(|e| self.storage(e))?;
        f(&tx, &mut state).map_err(|message| SpoolError::Storage {
            path: self.path.clone(),
            message,
        })?;
        {
            let mut meta = tx.open_table(META).map_err(|e| self.storage(e))?;
            let mut put = |k: &str, v: u64| meta.insert(k, v).map(|_| ());
            put(EPOCH, self.epoch).map_err(|e| self.storage(e))?;
            put(NEXT_SEQ, state.next_seq).map_err(|e| self.storage(e))?;
            put(BYTES, state.bytes).map_err(|e| self.storage(e))?;
            for (k, v) in Counters::KEYS.iter().zip(state.counters.values()) {
                put(k, v).map_err(|e| self.storage(e))?;
            }
        }
        tx.commit().map_err(|e| self.storage(e))?;
        self.next_seq = state.next_seq;
        self.len = state.len;
        self.bytes = state.bytes;
        self.counters = state.counters;
        self.oldest_collected_ms = self.read_front()?;
        Ok(())
    }

    fn read_front(&self) -> Result<Option<i64>, SpoolError> {
        let tx = self.db.begin_read().map_err(|e| self.storage(e))?;
        let table = tx.open_table(REPORTS).map_err(|e| self.storage(e))?;
        let first = table.first().map_err(|e| self.storage(e))?;
        // A front report that does not decode is dealt with by the next
        // batch; meanwhile the age is unknown.
        Ok(first.and_then(|(_, v)| Report::decode(v.value()).ok().map(|r| r.collected_at_ms)))
    }
}

/// The part of the spool's state a write transaction changes.
struct State {
    next_seq: u64,
    len: u64,
    bytes: u64,
    counters: Counters,
}

fn storage(e: impl std::fmt::Display) -> String {
    e.to_string()
}

struct Loaded {
    fresh: bool,
    epoch: u64,
    next_seq: u64,
    len: u64,
    bytes: u64,
    counters: Counters,
}

impl Loaded {
    /// Reads the numbering and counters; a spool whose tables do not read
    /// back is damaged.
    fn read(db: &Database) -> Result<Self, String> {
        let tx = db.begin_write().map_err(storage)?;
        let loaded = {
            let meta = tx.open_table(META).map_err(storage)?;
            let reports = tx.open_table(REPORTS).map_err(storage)?;
            let get = |k: &str| -> Result<Option<u64>, String> {
                Ok(meta.get(k).map_err(storage)?.map(|v| v.value()))
            };
            let len = reports.len().map_err(storage)?;
            let last = reports.last().map_err(storage)?.map(|(k, _)| k.value());
            let epoch = get(EPOCH)?;
            if epoch.is_none() && len > 0 {
                return Err("reports without an epoch".into());
            }
            let mut counters = [0u64; 6];
            for (slot, k) in counters.iter_mut().zip(Counters::KEYS) {
                *slot = get(k)?.unwrap_or(0);
            }
            Self {
                fresh: epoch.is_none(),
                // Zero means "none" on the wire: never draw it.
                epoch: epoch.unwrap_or_else(|| fastrand::u64(1..)),
                // Never reuse a number, even if the meta row lagged behind.
                next_seq: get(NEXT_SEQ)?.unwrap_or(1).max(last.map_or(1, |l| l + 1)),
                len,
                bytes: get(BYTES)?.unwrap_or(0),
                counters: Counters::from_values(counters),
            }
        };
        // Creates the tables on a new file, so readers always find them.
        tx.commit().map_err(storage)?;
        Ok(loaded)
    }
}

enum Opened {
    Fatal(SpoolError),
    Damaged(String),
}

fn classify_open(path: &Path, e: DatabaseError) -> Opened {
    match e {
        DatabaseError::DatabaseAlreadyOpen => Opened::Fatal(SpoolError::InUse {
            path: path.to_owned(),
        }),
        DatabaseError::Storage(StorageError::Io(error))
            if !matches!(
                error.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
            ) =>
        {
            Opened::Fatal(SpoolError::Io {
                path: path.to_owned(),
                error,
            })
        }
        other => Opened::Damaged(other.to_string()),
    }
}

/// Renames a damaged spool to `<path>.damaged`, replacing an older one so
/// repeated damage cannot fill the disk.
fn set_aside(path: &Path) -> Result<PathBuf, SpoolError> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".damaged");
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside).map_err(|error| SpoolError::Io {
        path: path.to_owned(),
        error,
    })?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path, max_bytes: u64) -> SpoolConfig {
        SpoolConfig {
            path: dir.join("spool.redb"),
            max_bytes,
            max_age_secs: 3600,
        }
    }

    /// Every test report has the same encoded size (fixed-width times,
    /// seqs below 128), so byte bounds count reports exactly.
    fn report(t: i64) -> Report {
        Report {
            host_id: "pc-1".into(),
            collected_at_ms: 1_000_000 + t,
            agent_version: "x".repeat(100),
            ..Default::default()
        }
    }

    fn seqs(s: &mut Spool) -> Vec<u64> {
        s.batch(usize::MAX, u64::MAX)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect()
    }

    #[test]
    fn numbers_reports_and_keeps_numbering_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
        let epoch = s.epoch();
        assert_ne!(epoch, 0);
        for t in 0..3 {
            s.append(report(t), 0).unwrap();
        }
        s.ack(epoch, 2).unwrap();
        drop(s);
        let mut s = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
        assert_eq!(s.epoch(), epoch);
        assert_eq!(seqs(&mut s), [3]);
        // Even with everything acknowledged, numbering goes on.
        s.ack(epoch, 3).unwrap();
        drop(s);
        let mut s = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
        assert_eq!(s.append(report(9), 0).unwrap().seq, 4);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn drops_exactly_the_oldest_when_full_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
        let size = {
            let mut r = report(0);
            r.epoch = s.epoch();
            r.seq = 10;
            r.encoded_len() as u64
        };
        drop(s);
        let mut s = Spool::open(&cfg(dir.path(), size * 3)).unwrap();
        let mut dropped = 0;
        for t in 0..10 {
            dropped += s.append(report(t), 0).unwrap().dropped;
        }
        assert_eq!(seqs(&mut s), [8, 9, 10]);
        assert_eq!(dropped, 7);
        assert_eq!(s.counters().dropped_spool_full, 7);
        assert!(s.bytes() <= size * 3);
        drop(s);
        let s = Spool::open(&cfg(dir.path(), size * 3)).unwrap();
        assert_eq!(
            s.counters().dropped_spool_full,
            7,
            "counters survive restarts"
        );
    }

    #[test]
    fn drops_reports_older_than_the_age_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
        let at = |t: i64| 1_000_000 + t;
        s.append(report(1_000), at(1_000)).unwrap();
        s.append(report(2_000_000), at(2_000_000)).unwrap();
        let a = s.append(report(3_700_000), at(3_700_000)).unwrap();
        assert_eq!(a.dropped, 1);
        assert_eq!(s.counters().dropped_expired, 1);
        assert_eq!(s.oldest_collected_ms(), Some(at(2_000_000)));
        assert_eq!(s.stats(at(3_700_000)).oldest_unsent_age_seconds, 1700);
    }

    #[test]
    fn batches_are_bounded_by_count_and_bytes_but_never_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
        for t in 0..10 {
            s.append(report(t), 0).unwrap();
        }
        assert_eq!(s.batch(4, u64::MAX).unwrap().len(), 4);
        let one = s.batch(10, 1).unwrap();
        assert_eq!(
            one.len(),
            1,
            "a report larger than the byte bound goes alone"
        );
        let size = one[0].encoded_len() as u64;
        assert_eq!(s.batch(10, size * 3 + 1).unwrap().len(), 3);
    }

    #[test]
    fn dropping_an_invalid_report_counts_it_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
        for t in 0..3 {
            s.append(report(t), 0).unwrap();
        }
        assert!(s.drop_invalid(2).unwrap().is_some());
        assert!(s.drop_invalid(2).unwrap().is_none());
        assert_eq!(seqs(&mut s), [1, 3]);
        assert_eq!(s.counters().dropped_invalid, 1);
        assert_eq!(s.stats(0).dropped_reports_total, 1);
    }

    #[test]
    fn skips_and_counts_a_stored_report_that_does_not_decode() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), 1 << 20);
        let mut s = Spool::open(&c).unwrap();
        for t in 0..3 {
            s.append(report(t), 0).unwrap();
        }
        drop(s);
        {
            let db = Database::create(&c.path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(REPORTS)
                .unwrap()
                .insert(2, &[0xff, 0xff, 0xff][..])
                .unwrap();
            tx.commit().unwrap();
        }
        let mut s = Spool::open(&c).unwrap();
        assert_eq!(seqs(&mut s), [1, 3]);
        assert_eq!(s.counters().dropped_corrupt, 1);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn sets_a_damaged_file_aside_and_starts_a_new_spool() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), 1 << 20);
        std::fs::write(&c.path, vec![0x5a; 64 * 1024]).unwrap();
        let mut s = Spool::open(&c).unwrap();
        assert_eq!(s.counters().resets, 1);
        assert!(dir.path().join("spool.redb.damaged").exists());
        assert_eq!(s.append(report(1), 0).unwrap().seq, 1);
    }

    #[test]
    fn survives_any_truncation_or_overwrite_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), 1 << 20);
        let mut s = Spool::open(&c).unwrap();
        for t in 0..50 {
            s.append(report(t), 0).unwrap();
        }
        drop(s);
        let good = std::fs::read(&c.path).unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..40 {
            let mut bytes = good.clone();
            if round % 2 == 0 {
                bytes.truncate(rng.usize(0..good.len()));
            } else {
                let at = rng.usize(0..good.len() - 512);
                for b in &mut bytes[at..at + 512] {
                    *b = rng.u8(..);
                }
            }
            std::fs::write(&c.path, &bytes).unwrap();
            let mut s = Spool::open(&c).unwrap_or_else(|e| panic!("round {round}: {e}"));
            let got = seqs(&mut s);
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "round {round}: {got:?}"
            );
            let next = s.append(report(99), 0).unwrap().seq;
            assert!(got.last().is_none_or(|&l| next > l), "round {round}");
        }
    }
}
