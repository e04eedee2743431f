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
//!
//! Faults heal without a restart. After any failed operation the file is
//! closed (redb refuses everything after an I/O error until it is reopened)
//! and reopened by the next one. A report that cannot be written (a full
//! disk) makes room: the oldest are dropped in steps until it fits, and if
//! nothing fits it is dropped itself, its seq still used and the drop
//! counted, so the collector sees a counted gap. Acknowledgements and
//! refusals that cannot be written are held in memory, hidden from
//! [`Spool::batch`], and written with the next write that succeeds.

mod counters;
mod error;
mod open;
mod reserve;
mod schema;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use campanile_proto::v1::{AgentStats, Report};
use prost::Message;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, WriteTransaction};

pub use counters::Counters;
pub use error::SpoolError;
use schema::{BYTES, EPOCH, META, NEXT_SEQ, REPORTS};

/// Reports removed per commit when applying acknowledgements or making
/// room: few after a failed write, since on a full file even a removal
/// needs new pages (copy-on-write) and a small one is likelier to find
/// them; doubling back with each commit that succeeds.
const MIN_REMOVE_CHUNK: usize = 4;
const MAX_REMOVE_CHUNK: usize = 256;

#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub path: PathBuf,
    /// Sum of encoded report sizes kept at most.
    pub max_bytes: u64,
    /// Reports collected longer ago than this are dropped.
    pub max_age_secs: u64,
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

/// A report the spool could not write even after dropping every older
/// one: it is dropped too, its seq used and the drop counted.
#[derive(Debug, thiserror::Error)]
#[error("report {seq} not spooled (dropped and counted): {error}")]
pub struct Unspooled {
    pub seq: u64,
    #[source]
    pub error: SpoolError,
    /// What making room dropped before giving up.
    pub made_room: Appended,
}

/// Decisions taken but not yet written: the writes failed. They are
/// applied, in the same transaction, by the next write that succeeds.
#[derive(Debug, Default)]
struct Pending {
    /// Reports of the current epoch up to here were acknowledged.
    acked_through: u64,
    /// ... and their removal is not written yet.
    ack_unwritten: bool,
    /// Reports the collector refused as invalid.
    invalid: BTreeSet<u64>,
}

impl Pending {
    fn hides(&self, seq: u64) -> bool {
        seq <= self.acked_through || self.invalid.contains(&seq)
    }
}

pub struct Spool {
    /// `None` after a failed operation: the next one reopens the file.
    db: Option<Database>,
    path: PathBuf,
    max_bytes: u64,
    max_age_ms: i64,
    epoch: u64,
    next_seq: u64,
    len: u64,
    bytes: u64,
    oldest_collected_ms: Option<i64>,
    counters: Counters,
    pending: Pending,
    remove_chunk: usize,
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
        let mut spool = Self {
            db: None,
            path,
            max_bytes: cfg.max_bytes.max(1),
            max_age_ms: i64::try_from(cfg.max_age_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            epoch: 0,
            next_seq: 1,
            len: 0,
            bytes: 0,
            oldest_collected_ms: None,
            counters: Counters::default(),
            pending: Pending::default(),
            remove_chunk: MAX_REMOVE_CHUNK,
        };
        spool.connect()?;
        tracing::info!(spool = %spool.path.display(), reports = spool.len, bytes = spool.bytes,
            epoch = spool.epoch, next_seq = spool.next_seq, "spool opened");
        Ok(spool)
    }

    /// Opens the file if it is not open (at start, or after a failed
    /// operation closed it) and merges what it holds with what memory
    /// holds: numbering and counters never go back.
    fn connect(&mut self) -> Result<(), SpoolError> {
        if self.db.is_some() {
            return Ok(());
        }
        let reopening = self.epoch != 0;
        let (db, loaded) = open::load(&self.path)?;
        if loaded.epoch == self.epoch {
            self.next_seq = self.next_seq.max(loaded.next_seq);
        } else {
            // A new file (first open, or the old one set aside): its
            // numbering starts over and no earlier decision applies to it.
            if reopening {
                tracing::warn!(spool = %self.path.display(), old_epoch = self.epoch,
                    new_epoch = loaded.epoch, "spool reopened as a new file: numbering starts a new epoch");
            }
            self.epoch = loaded.epoch;
            self.next_seq = loaded.next_seq;
            self.pending = Pending::default();
        }
        self.len = loaded.len;
        self.bytes = loaded.bytes;
        self.counters = self.counters.max(loaded.counters);
        if loaded.reset {
            self.counters.resets += 1;
        }
        self.db = Some(db);
        self.oldest_collected_ms = self.read_front();
        if reopening {
            tracing::info!(spool = %self.path.display(), reports = self.len, "spool reopened after an error");
        }
        if loaded.fresh || loaded.reset {
            // Commit the epoch now so it never changes while the file lives.
            self.write(|_, _| Ok(()))?;
        }
        Ok(())
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

    /// Reports in the file, including acknowledged ones whose removal
    /// could not be written yet.
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
    /// the oldest ones. The new report itself is kept, unless the disk
    /// cannot take even it alone: see [`Unspooled`].
    pub fn append(&mut self, report: Report, now_ms: i64) -> Result<Appended, Unspooled> {
        let error = match self.insert(&report, now_ms, self.max_bytes) {
            Ok(appended) => return Ok(self.warn_dropped(appended)),
            Err(e) => e,
        };
        // The write failed: most likely the disk is full. Make room in
        // steps, each in a commit of its own so the next insert can reuse
        // the pages it freed, and keep as much of the backlog as fits.
        let held = self.bytes;
        tracing::warn!(spool = %self.path.display(), %error, bytes = held,
            "cannot write the report to the spool: dropping the oldest to make room");
        let mut made_room = Appended::default();
        for budget in [held / 8 * 7, held / 4 * 3, held / 2, 0] {
            if let Err(e) = self.evict_to(budget, &mut made_room) {
                tracing::debug!(error = %e, budget, "making room failed");
            }
            // Twice: a failed write closes the file, and reopening it
            // frees every page no commit refers to.
            for _ in 0..2 {
                if let Ok(mut appended) = self.insert(&report, now_ms, self.max_bytes) {
                    appended.dropped += made_room.dropped;
                    appended.dropped_full_inventory |= made_room.dropped_full_inventory;
                    return Ok(self.warn_dropped(appended));
                }
            }
        }
        // Nothing fits. The seq is used all the same, so the collector sees
        // a gap, and the drop is counted; both reach the file with the next
        // write that succeeds.
        let seq = self.next_seq;
        self.next_seq += 1;
        self.counters.dropped_spool_full += 1;
        Err(Unspooled {
            seq,
            error,
            made_room,
        })
    }

    fn warn_dropped(&self, appended: Appended) -> Appended {
        if appended.dropped > 0 {
            tracing::warn!(spool = %self.path.display(), dropped = appended.dropped,
                dropped_total = self.counters.dropped_total(), max_bytes = self.max_bytes,
                "spool full or reports expired: oldest reports dropped");
        }
        appended
    }

    /// One try at storing `report`, dropping expired reports and the
    /// oldest while the spool would hold more than `max_bytes`.
    fn insert(
        &mut self,
        report: &Report,
        now_ms: i64,
        max_bytes: u64,
    ) -> Result<Appended, SpoolError> {
        self.connect()?;
        let mut report = report.clone();
        report.epoch = self.epoch;
        report.seq = self.next_seq;
        let encoded = report.encode_to_vec();
        let size = encoded.len() as u64;
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
            if must_evict {
                drop_oldest(&mut table, s, &mut appended, cutoff, |old, s| match old {
                    None => true,
                    Some(old) => old.collected_at_ms < cutoff || s.bytes + size > max_bytes,
                })?;
            }
            table
                .insert(report.seq, encoded.as_slice())
                .map_err(storage)?;
            s.len += 1;
            s.bytes += size;
            s.next_seq += 1;
            Ok(())
        })?;
        Ok(appended)
    }

    /// Drops the oldest reports until the spool holds at most `budget`
    /// bytes, counting them as dropped for lack of room.
    fn evict_to(&mut self, budget: u64, made_room: &mut Appended) -> Result<(), SpoolError> {
        self.connect()?;
        while self.bytes > budget && self.len > 0 {
            let mut dropped = Appended::default();
            let chunk = self.remove_chunk;
            self.write(|tx, s| {
                let mut table = tx.open_table(REPORTS).map_err(storage)?;
                let mut n = 0;
                drop_oldest(&mut table, s, &mut dropped, i64::MIN, |old, s| {
                    n += 1;
                    n <= chunk && (old.is_none() || s.bytes > budget)
                })
            })?;
            made_room.dropped += dropped.dropped;
            made_room.dropped_full_inventory |= dropped.dropped_full_inventory;
            if dropped.dropped == 0 {
                break;
            }
        }
        // redb reuses the pages a commit freed only after the commit that
        // follows it (the one before must stay whole for recovery), so
        // one more, writing almost nothing, makes them free for the insert.
        self.write(|_, _| Ok(()))
    }

    /// Appends many reports in one commit, numbered in order, for tools
    /// that generate reports in bulk (benchmarks, the fleet simulator). No
    /// bounds are applied: the next [`Spool::append`] enforces them.
    pub fn append_many(&mut self, reports: Vec<Report>) -> Result<u64, SpoolError> {
        self.connect()?;
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
    /// sent, alone). Reports that no longer decode are removed and counted;
    /// reports acknowledged or refused but not yet removed are left out.
    pub fn batch(&mut self, max_reports: usize, max_bytes: u64) -> Result<Vec<Report>, SpoolError> {
        self.connect()?;
        let read = self.read_batch(max_reports, max_bytes);
        let (out, corrupt) = read.map_err(|message| self.failed(message))?;
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

    #[allow(clippy::type_complexity)]
    fn read_batch(
        &self,
        max_reports: usize,
        max_bytes: u64,
    ) -> Result<(Vec<Report>, Vec<(u64, u64, prost::DecodeError)>), String> {
        let mut out = Vec::new();
        let mut corrupt = Vec::new();
        let db = self.db.as_ref().ok_or("spool is closed")?;
        let tx = db.begin_read().map_err(storage)?;
        let table = tx.open_table(REPORTS).map_err(storage)?;
        let mut total = 0u64;
        let from = self.pending.acked_through.saturating_add(1);
        for entry in table.range(from..).map_err(storage)? {
            let (k, v) = entry.map_err(storage)?;
            if self.pending.hides(k.value()) {
                continue;
            }
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
        Ok((out, corrupt))
    }

    /// Removes every report of `epoch` up to `seq`: the collector committed
    /// them. Returns how many were removed. If the removal cannot be
    /// written it is held in memory (those reports are not sent again) and
    /// the error returned: a crash before the next write that succeeds only
    /// makes the collector see duplicates, which it drops.
    pub fn ack(&mut self, epoch: u64, seq: u64) -> Result<u64, SpoolError> {
        if epoch != self.epoch {
            return Ok(0);
        }
        if seq > self.pending.acked_through {
            self.pending.acked_through = seq;
            self.pending.ack_unwritten = true;
        }
        self.connect()?;
        let before = self.len;
        // An ack lost to a crash only makes the collector see duplicates,
        // which it drops: no need to pay an fsync for it, and the next
        // durable commit persists it. After a failed write, though, it is
        // made durable: redb reuses freed pages only through durable
        // commits, and on a full disk those are the only pages there are.
        let durability = self.removal_durability();
        // Each commit removes a chunk of the acknowledged reports.
        while self.pending.ack_unwritten {
            self.write_with(durability, |_, _| Ok(()))?;
        }
        Ok(before.saturating_sub(self.len))
    }

    /// Removes one report the collector refused as invalid, counting it.
    /// Returns the report if it was there. If the removal cannot be
    /// written it is held in memory like an ack, and the error returned.
    pub fn drop_invalid(&mut self, seq: u64) -> Result<Option<Report>, SpoolError> {
        if self.pending.hides(seq) {
            return Ok(None);
        }
        self.connect()?;
        let found = self.read_one(seq).map_err(|m| self.failed(m))?;
        if found.is_none() {
            return Ok(None);
        }
        self.pending.invalid.insert(seq);
        self.write_with(self.removal_durability(), |_, _| Ok(()))?;
        Ok(found.map(|bytes| Report::decode(bytes.as_slice()).unwrap_or_default()))
    }

    /// Removals are not worth an fsync, except after a failed write: see
    /// [`Spool::ack`].
    fn removal_durability(&self) -> Durability {
        if self.remove_chunk < MAX_REMOVE_CHUNK {
            Durability::Immediate
        } else {
            Durability::None
        }
    }

    fn read_one(&self, seq: u64) -> Result<Option<Vec<u8>>, String> {
        let db = self.db.as_ref().ok_or("spool is closed")?;
        let tx = db.begin_read().map_err(storage)?;
        let table = tx.open_table(REPORTS).map_err(storage)?;
        let value = table.get(seq).map_err(storage)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Counts a failed Deliver call. Kept in memory and committed with the
    /// next write: a failure is not worth an fsync of its own.
    pub fn note_send_failure(&mut self) {
        self.counters.send_failures += 1;
    }

    /// Closes the file after a failed operation (redb refuses everything
    /// after an I/O error until reopened); the next operation reopens it.
    fn failed(&mut self, message: String) -> SpoolError {
        self.remove_chunk = MIN_REMOVE_CHUNK;
        if self.db.take().is_some() {
            tracing::warn!(spool = %self.path.display(), %message, "spool operation failed: closing the file, the next operation reopens it");
        }
        SpoolError::Storage {
            path: self.path.clone(),
            message,
        }
    }

    fn write(
        &mut self,
        f: impl FnOnce(&WriteTransaction, &mut State) -> Result<(), String>,
    ) -> Result<(), SpoolError> {
        self.write_with(Durability::Immediate, f)
    }

    /// One write transaction over a copy of the in-memory state, applying
    /// pending decisions first; the copy replaces memory only once the
    /// commit succeeded, so a failed write (disk full) leaves memory and
    /// file in agreement. The caller has connected.
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
            ack_applied: false,
        };
        let written = self.transact(durability, &mut state, f);
        written.map_err(|message| self.failed(message))?;
        self.next_seq = state.next_seq;
        self.len = state.len;
        self.bytes = state.bytes;
        self.counters = state.counters;
        // The watermark stays: `batch` starts after it.
        if state.ack_applied {
            self.pending.ack_unwritten = false;
        }
        self.pending.invalid.clear();
        self.remove_chunk = (self.remove_chunk * 2).min(MAX_REMOVE_CHUNK);
        self.oldest_collected_ms = self.read_front();
        Ok(())
    }

    fn transact(
        &self,
        durability: Durability,
        state: &mut State,
        f: impl FnOnce(&WriteTransaction, &mut State) -> Result<(), String>,
    ) -> Result<(), String> {
        let db = self.db.as_ref().ok_or("spool is closed")?;
        let mut tx = db.begin_write().map_err(storage)?;
        tx.set_durability(durability).map_err(storage)?;
        self.apply_pending(&tx, state)?;
        f(&tx, state)?;
        {
            let mut meta = tx.open_table(META).map_err(storage)?;
            let mut put = |k: &str, v: u64| meta.insert(k, v).map(|_| ()).map_err(storage);
            put(EPOCH, self.epoch)?;
            put(NEXT_SEQ, state.next_seq)?;
            put(BYTES, state.bytes)?;
            for (k, v) in Counters::KEYS.iter().zip(state.counters.values()) {
                put(k, v)?;
            }
        }
        tx.commit().map_err(storage)
    }

    /// Removes what was acknowledged or refused but not yet written.
    fn apply_pending(&self, tx: &WriteTransaction, s: &mut State) -> Result<(), String> {
        let Pending {
            acked_through,
            ack_unwritten,
            invalid,
        } = &self.pending;
        if !ack_unwritten && invalid.is_empty() {
            return Ok(());
        }
        let mut table = tx.open_table(REPORTS).map_err(storage)?;
        if *ack_unwritten {
            s.ack_applied = true;
            for removed in 0..=self.remove_chunk {
                let Some((seq, size)) = table
                    .first()
                    .map_err(storage)?
                    .map(|(k, v)| (k.value(), v.value().len() as u64))
                    .filter(|(seq, _)| seq <= acked_through)
                else {
                    break;
                };
                if removed == self.remove_chunk {
                    // More to remove: the next commit goes on.
                    s.ack_applied = false;
                    break;
                }
                table.remove(seq).map_err(storage)?;
                s.len -= 1;
                s.bytes = s.bytes.saturating_sub(size);
            }
        }
        for seq in invalid {
            if let Some(v) = table.remove(*seq).map_err(storage)? {
                s.len -= 1;
                s.bytes = s.bytes.saturating_sub(v.value().len() as u64);
                s.counters.dropped_invalid += 1;
            }
        }
        Ok(())
    }

    /// When the oldest report was collected; `None` if unknown (a front
    /// report that does not decode is dealt with by the next batch, and a
    /// failed read by the next operation).
    fn read_front(&self) -> Option<i64> {
        let db = self.db.as_ref()?;
        let tx = db.begin_read().ok()?;
        let table = tx.open_table(REPORTS).ok()?;
        let first = table.first().ok()??;
        Report::decode(first.1.value())
            .ok()
            .map(|r| r.collected_at_ms)
    }
}

/// Drops reports from the front while `drop(report, state)` says so (the
/// report is `None` when it does not decode, counted as corrupt); those
/// collected before `cutoff` count as expired, the others as dropped for
/// lack of room.
fn drop_oldest(
    table: &mut redb::Table<u64, &[u8]>,
    s: &mut State,
    appended: &mut Appended,
    cutoff: i64,
    mut drop: impl FnMut(Option<&Report>, &State) -> bool,
) -> Result<(), String> {
    loop {
        let (seq, value) = match table.first().map_err(storage)? {
            Some((k, v)) => (k.value(), v.value().to_vec()),
            None => return Ok(()),
        };
        let old = Report::decode(value.as_slice()).ok();
        if !drop(old.as_ref(), s) {
            return Ok(());
        }
        table.remove(seq).map_err(storage)?;
        s.len -= 1;
        s.bytes = s.bytes.saturating_sub(value.len() as u64);
        match old {
            None => s.counters.dropped_corrupt += 1,
            Some(old) => {
                appended.dropped += 1;
                appended.dropped_full_inventory |= old.inventory.is_some();
                if old.collected_at_ms < cutoff {
                    s.counters.dropped_expired += 1;
                } else {
                    s.counters.dropped_spool_full += 1;
                }
            }
        }
    }
}

/// The part of the spool's state a write transaction changes.
struct State {
    next_seq: u64,
    len: u64,
    bytes: u64,
    counters: Counters,
    /// Every acknowledged report is now removed.
    ack_applied: bool,
}

fn storage(e: impl std::fmt::Display) -> String {
    e.to_string()
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
