//! The alerts' own SQLite file, apart from the store of reports so that
//! alert writes never take the lock ingest commits wait on: alert state,
//! the notification log, the outbox and maintenance windows set through
//! the API.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use rusqlite_migration::{M, Migrations};

use super::dispatch::{Flush, LogEntry, LogKey};
use super::engine::{Alert, Changes};
use super::maintenance::{Scope, Window};

#[derive(Debug, thiserror::Error)]
pub enum AlertStoreError {
    #[error("alert store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("alert store {path}: schema migration failed: {source}")]
    Migration {
        path: PathBuf,
        source: rusqlite_migration::Error,
    },
    #[error("alert store {path}: stored {what} does not decode: {reason}")]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
}

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![M::up(
        "CREATE TABLE alerts (
            fingerprint     INTEGER PRIMARY KEY,  -- u64 stored as its i64 bits
            labels          TEXT NOT NULL,        -- JSON object
            annotations     TEXT NOT NULL,        -- JSON object, as of the last change
            active_since_ms INTEGER NOT NULL,
            fired_ms        INTEGER,
            resolved_ms     INTEGER,
            digest          INTEGER NOT NULL
         ) STRICT;
         CREATE TABLE notification_log (
            receiver   TEXT NOT NULL,
            group_key  TEXT NOT NULL,
            firing     TEXT NOT NULL,   -- JSON array of fingerprints
            resolved   TEXT NOT NULL,
            at_ms      INTEGER NOT NULL,
            PRIMARY KEY (receiver, group_key)
         ) STRICT;
         CREATE TABLE outbox (
            id               INTEGER PRIMARY KEY,
            receiver         TEXT NOT NULL,
            group_key        TEXT NOT NULL,
            payload          TEXT NOT NULL,
            created_ms       INTEGER NOT NULL,
            attempts         INTEGER NOT NULL DEFAULT 0,
            next_attempt_ms  INTEGER NOT NULL,
            last_error       TEXT
         ) STRICT;
         CREATE INDEX outbox_by_receiver ON outbox(receiver, id);
         CREATE TABLE maintenance (
            id          INTEGER PRIMARY KEY,
            site        TEXT,
            istat_code  TEXT,
            starts_ms   INTEGER NOT NULL,
            ends_ms     INTEGER NOT NULL,
            reason      TEXT NOT NULL,
            created_by  TEXT NOT NULL
         ) STRICT;",
    )])
}

/// One notification waiting for its receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub id: i64,
    pub receiver: String,
    pub payload: String,
    pub created_ms: i64,
    pub attempts: u32,
    pub next_attempt_ms: i64,
}

/// Per receiver: notifications waiting and the oldest one's creation.
pub type OutboxStats = BTreeMap<String, (u64, Option<i64>)>;

pub struct AlertStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

fn fp_col(fp: u64) -> i64 {
    fp as i64
}

impl AlertStore {
    pub fn open(path: &Path) -> Result<Self, AlertStoreError> {
        let err = |source| AlertStoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        }
        let mut conn = Connection::open(path).map_err(err)?;
        // FULL: an enqueued notification must survive a power cut. Alert
        // writes are rare (state changes), so the fsyncs cost little.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.busy_timeout(crate::store::BUSY_TIMEOUT).map_err(err)?;
        migrations()
            .to_latest(&mut conn)
            .map_err(|source| AlertStoreError::Migration {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        })
    }

    fn err(&self, source: rusqlite::Error) -> AlertStoreError {
        AlertStoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, what: &'static str, e: impl std::fmt::Display) -> AlertStoreError {
        AlertStoreError::Corrupt {
            path: self.path.clone(),
            what,
            reason: e.to_string(),
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn load_alerts(&self) -> Result<Vec<Alert>, AlertStoreError> {
        let conn = self.conn();
        let mut st = conn
            .prepare(
                "SELECT fingerprint, labels, annotations, active_since_ms, fired_ms, resolved_ms, digest
                 FROM alerts",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, bool>(6)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (fp, labels, annotations, since, fired, resolved, digest) =
                row.map_err(|e| self.err(e))?;
            out.push(Alert {
                fingerprint: fp as u64,
                labels: serde_json::from_str(&labels).map_err(|e| self.corrupt("labels", e))?,
                annotations: serde_json::from_str(&annotations)
                    .map_err(|e| self.corrupt("annotations", e))?,
                active_since_ms: since,
                fired_ms: fired,
                resolved_ms: resolved,
                digest,
                silenced_by: None,
                inhibited: false,
            });
        }
        Ok(out)
    }

    pub fn save(&self, changes: &Changes) -> Result<(), AlertStoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut up = tx
                .prepare_cached(
                    "INSERT INTO alerts (fingerprint, labels, annotations, active_since_ms, fired_ms, resolved_ms, digest)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT(fingerprint) DO UPDATE SET
                        labels = excluded.labels, annotations = excluded.annotations,
                        active_since_ms = excluded.active_since_ms, fired_ms = excluded.fired_ms,
                        resolved_ms = excluded.resolved_ms, digest = excluded.digest",
                )
                .map_err(|e| self.err(e))?;
            for a in &changes.upserts {
                up.execute(params![
                    fp_col(a.fingerprint),
                    serde_json::to_string(&a.labels).expect("a map serializes"),
                    serde_json::to_string(&a.annotations).expect("a map serializes"),
                    a.active_since_ms,
                    a.fired_ms,
                    a.resolved_ms,
                    a.digest
                ])
                .map_err(|e| self.err(e))?;
            }
            let mut del = tx
                .prepare_cached("DELETE FROM alerts WHERE fingerprint = ?1")
                .map_err(|e| self.err(e))?;
            for fp in &changes.removed {
                del.execute([fp_col(*fp)]).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    pub fn load_log(&self) -> Result<HashMap<LogKey, LogEntry>, AlertStoreError> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT receiver, group_key, firing, resolved, at_ms FROM notification_log")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = HashMap::new();
        for row in rows {
            let (receiver, key, firing, resolved, at_ms) = row.map_err(|e| self.err(e))?;
            let set = |s: &str| -> Result<BTreeSet<u64>, AlertStoreError> {
                let v: Vec<i64> =
                    serde_json::from_str(s).map_err(|e| self.corrupt("notification log", e))?;
                Ok(v.into_iter().map(|x| x as u64).collect())
            };
            out.insert(
                (receiver, key),
                LogEntry {
                    firing: set(&firing)?,
                    resolved: set(&resolved)?,
                    at_ms,
                },
            );
        }
        Ok(out)
    }

    /// Enqueues the flushes' notifications and logs them, all or nothing.
    pub fn commit_flushes(&self, flushes: &[Flush], now_ms: i64) -> Result<(), AlertStoreError> {
        if flushes.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut log = tx
                .prepare_cached(
                    "INSERT INTO notification_log (receiver, group_key, firing, resolved, at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(receiver, group_key) DO UPDATE SET
                        firing = excluded.firing, resolved = excluded.resolved, at_ms = excluded.at_ms",
                )
                .map_err(|e| self.err(e))?;
            let mut enqueue = tx
                .prepare_cached(
                    "INSERT INTO outbox (receiver, group_key, payload, created_ms, next_attempt_ms)
                     VALUES (?1, ?2, ?3, ?4, ?4)",
                )
                .map_err(|e| self.err(e))?;
            let json = |s: &BTreeSet<u64>| {
                serde_json::to_string(&s.iter().map(|x| *x as i64).collect::<Vec<_>>())
                    .expect("a list serializes")
            };
            for f in flushes {
                log.execute(params![
                    f.receiver,
                    f.group_key,
                    json(&f.entry.firing),
                    json(&f.entry.resolved),
                    f.entry.at_ms
                ])
                .map_err(|e| self.err(e))?;
                if let Some(p) = &f.payload {
                    enqueue
                        .execute(params![f.receiver, f.group_key, p, now_ms])
                        .map_err(|e| self.err(e))?;
                }
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The oldest notification waiting for a receiver: delivery is in order.
    pub fn head(&self, receiver: &str) -> Result<Option<Pending>, AlertStoreError> {
        self.conn()
            .prepare_cached(
                "SELECT id, receiver, payload, created_ms, attempts, next_attempt_ms
                 FROM outbox WHERE receiver = ?1 ORDER BY id LIMIT 1",
            )
            .and_then(|mut st| {
                st.query_row([receiver], |r| {
                    Ok(Pending {
                        id: r.get(0)?,
                        receiver: r.get(1)?,
                        payload: r.get(2)?,
                        created_ms: r.get(3)?,
                        attempts: r.get(4)?,
                        next_attempt_ms: r.get(5)?,
                    })
                })
                .optional()
            })
            .map_err(|e| self.err(e))
    }

    /// Delivered, refused for good or expired: gone from the outbox.
    pub fn remove(&self, id: i64) -> Result<(), AlertStoreError> {
        self.conn()
            .execute("DELETE FROM outbox WHERE id = ?1", [id])
            .map(drop)
            .map_err(|e| self.err(e))
    }

    pub fn retry_later(
        &self,
        id: i64,
        attempts: u32,
        next_attempt_ms: i64,
        error: &str,
    ) -> Result<(), AlertStoreError> {
        self.conn()
            .execute(
                "UPDATE outbox SET attempts = ?2, next_attempt_ms = ?3, last_error = ?4 WHERE id = ?1",
                params![id, attempts, next_attempt_ms, error],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    pub fn outbox_stats(&self) -> Result<OutboxStats, AlertStoreError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(
                "SELECT receiver, COUNT(*), MIN(created_ms) FROM outbox GROUP BY receiver",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    (r.get::<_, i64>(1)? as u64, r.get(2)?),
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    pub fn windows(&self) -> Result<Vec<Window>, AlertStoreError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(
                "SELECT id, site, istat_code, starts_ms, ends_ms, reason, created_by
                 FROM maintenance ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, site, istat, starts_ms, ends_ms, reason, created_by) =
                row.map_err(|e| self.err(e))?;
            out.push(Window {
                id,
                scope: Scope::new(site, istat)
                    .map_err(|e| self.corrupt("maintenance window", e))?,
                starts_ms,
                ends_ms,
                reason,
                created_by,
            });
        }
        Ok(out)
    }

    /// Stores a window set through the API; returns it with its id.
    pub fn add_window(&self, mut w: Window) -> Result<Window, AlertStoreError> {
        let (site, istat) = match &w.scope {
            Scope::Site(s) => (Some(s.as_str()), None),
            Scope::Comune(c) => (None, Some(c.as_str())),
        };
        let conn = self.conn();
        conn.execute(
            "INSERT INTO maintenance (site, istat_code, starts_ms, ends_ms, reason, created_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![site, istat, w.starts_ms, w.ends_ms, w.reason, w.created_by],
        )
        .map_err(|e| self.err(e))?;
        w.id = conn.last_insert_rowid();
        Ok(w)
    }

    /// Deletes an API window; false when there is none with that id.
    pub fn delete_window(&self, id: i64) -> Result<bool, AlertStoreError> {
        self.conn()
            .execute("DELETE FROM maintenance WHERE id = ?1", [id])
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    /// Windows that ended long ago only clutter the list.
    pub fn prune_windows(&self, ended_before_ms: i64) -> Result<(), AlertStoreError> {
        self.conn()
            .execute(
                "DELETE FROM maintenance WHERE ends_ms < ?1",
                [ended_before_ms],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        migrations().validate().unwrap();
    }

    #[test]
    fn outbox_keeps_order_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let flush = |k: &str, body: &str| Flush {
            receiver: "noc".into(),
            group_key: k.into(),
            payload: Some(body.into()),
            entry: LogEntry {
                firing: [u64::MAX, 1].into(),
                resolved: BTreeSet::new(),
                at_ms: 5,
            },
            resolved_sent: Vec::new(),
        };
        {
            let s = AlertStore::open(&path).unwrap();
            s.commit_flushes(&[flush("g1", "one"), flush("g2", "two")], 10)
                .unwrap();
        }
        let s = AlertStore::open(&path).unwrap();
        let head = s.head("noc").unwrap().unwrap();
        assert_eq!(head.payload, "one");
        s.retry_later(head.id, 1, 99, "HTTP 503").unwrap();
        assert_eq!(s.head("noc").unwrap().unwrap().next_attempt_ms, 99);
        s.remove(head.id).unwrap();
        assert_eq!(s.head("noc").unwrap().unwrap().payload, "two");
        assert_eq!(s.outbox_stats().unwrap()["noc"], (1, Some(10)));
        let log = s.load_log().unwrap();
        assert_eq!(
            log[&("noc".to_owned(), "g1".to_owned())].firing,
            [u64::MAX, 1].into()
        );
    }
}
