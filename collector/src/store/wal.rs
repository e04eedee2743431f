//! The WAL's upkeep: checkpoints off the commit path, and restarting the
//! WAL so that it does not grow under steady commits.

use std::sync::atomic::Ordering;

use rusqlite::Connection;

use crate::store::{BUSY_TIMEOUT, Checkpoint, Store, StoreError};

impl Store {
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
}
