//! Revoked certificates, by serial: those the collector signed (whose
//! ledger row says so too) and those issued by hand, which the ledger
//! does not know. The running collector holds the serials in memory and
//! follows this table (`crate::revocation`), so a revocation made by the
//! command line takes effect without a restart.

use rusqlite::{OptionalExtension, params};

use super::certificates::{AdminStore, CertificateTx};
use super::{Store, StoreError};

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RevocationRow {
    /// Lower-case hex, no leading zero bytes.
    pub serial: String,
    /// The host it was issued to, when the ledger knows it.
    pub host_id: Option<String>,
    pub revoked_ms: i64,
    pub reason: String,
    /// Its expiry, when the ledger knows it: past it, the revocation
    /// matters no more (the handshake refuses the certificate anyway).
    pub not_after_ms: Option<i64>,
}

/// How the revocations stand, cheap to read: a change in it means the
/// serials must be read again. Rows are only ever added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RevocationsMark {
    pub count: i64,
    pub last_rowid: i64,
}

impl CertificateTx<'_> {
    /// Revokes `serial` (normalised, see [`crate::pki::normalize_serial`]):
    /// lists it, and marks its ledger row if the collector signed it.
    /// False if it was revoked already.
    pub fn revoke(&self, serial: &str, now_ms: i64, reason: &str) -> Result<bool, StoreError> {
        self.tx
            .execute(
                "UPDATE certificates SET revoked_ms = ?2, revoked_reason = ?3
                  WHERE serial = ?1 AND revoked_ms IS NULL",
                params![serial, now_ms, reason],
            )
            .map_err(|e| self.err(e))?;
        let ledger: Option<(String, i64)> = self
            .tx
            .query_row(
                "SELECT host_id, not_after_ms FROM certificates WHERE serial = ?1",
                [serial],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let (host_id, not_after_ms) = ledger.unzip();
        self.tx
            .execute(
                "INSERT OR IGNORE INTO revocations (serial, host_id, revoked_ms, reason, not_after_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![serial, host_id, now_ms, reason, not_after_ms],
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    pub fn is_revoked(&self, serial: &str) -> Result<bool, StoreError> {
        self.tx
            .query_row(
                "SELECT 1 FROM revocations WHERE serial = ?1",
                [serial],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(|e| self.err(e))
    }
}

const SELECT_IN_FORCE: &str = "SELECT serial, host_id, revoked_ms, reason, not_after_ms
       FROM revocations WHERE not_after_ms IS NULL OR not_after_ms > ?1
      ORDER BY revoked_ms, serial";

fn revocation_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RevocationRow> {
    Ok(RevocationRow {
        serial: r.get(0)?,
        host_id: r.get(1)?,
        revoked_ms: r.get(2)?,
        reason: r.get(3)?,
        not_after_ms: r.get(4)?,
    })
}

fn in_force(
    conn: &rusqlite::Connection,
    path: &std::path::Path,
    now_ms: i64,
) -> Result<Vec<RevocationRow>, StoreError> {
    let sql = |source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let mut stmt = conn.prepare_cached(SELECT_IN_FORCE).map_err(sql)?;
    stmt.query_map([now_ms], revocation_row)
        .and_then(|rows| rows.collect())
        .map_err(sql)
}

impl Store {
    pub fn revocations_mark(&self) -> Result<RevocationsMark, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        conn.prepare_cached("SELECT count(*), coalesce(max(rowid), 0) FROM revocations")
            .and_then(|mut st| {
                st.query_row([], |r| {
                    Ok(RevocationsMark {
                        count: r.get(0)?,
                        last_rowid: r.get(1)?,
                    })
                })
            })
            .map_err(|e| self.err(e))
    }

    /// The revocations of certificates not yet expired at `now_ms` (or of
    /// unknown expiry).
    pub fn revocations_in_force(&self, now_ms: i64) -> Result<Vec<RevocationRow>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        in_force(&conn, &self.path, now_ms)
    }
}

impl AdminStore {
    pub fn revocations_in_force(&self, now_ms: i64) -> Result<Vec<RevocationRow>, StoreError> {
        in_force(self.conn(), self.path(), now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::certificates::CertificateRow;

    fn cert(serial: &str, host: &str, not_after_ms: i64) -> CertificateRow {
        CertificateRow {
            serial: serial.into(),
            host_id: host.into(),
            site: "site-a".into(),
            ca_sha256: "00".repeat(32),
            not_before_ms: 0,
            not_after_ms,
            issued_ms: 0,
            how: "enrolled",
            token_id: None,
        }
    }

    #[test]
    fn a_revocation_lists_the_serial_marks_the_ledger_and_ends_with_the_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open(&path).unwrap();
        let before = store.revocations_mark().unwrap();
        store
            .certificates(|tx| -> Result<(), StoreError> {
                tx.record_certificate(&cert("0a", "pc-01.site-a", 5_000))?;
                assert!(tx.revoke("0a", 100, "stolen")?);
                assert!(!tx.revoke("0a", 200, "again")?, "revoked once");
                // A certificate issued by hand: no ledger row, no expiry.
                assert!(tx.revoke("0b", 300, "by serial")?);
                assert!(tx.is_revoked("0a")? && tx.is_revoked("0b")? && !tx.is_revoked("0c")?);
                assert!(tx.valid_serials("pc-01.site-a", 1_000)?.is_empty());
                Ok(())
            })
            .unwrap();
        assert_ne!(store.revocations_mark().unwrap(), before);
        // They outlive a restart.
        drop(store);
        let store = Store::open(&path).unwrap();
        let rows = store.revocations_in_force(1_000).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.serial.as_str()).collect::<Vec<_>>(),
            ["0a", "0b"]
        );
        assert_eq!(rows[0].host_id.as_deref(), Some("pc-01.site-a"));
        assert_eq!(
            (rows[0].reason.as_str(), rows[0].not_after_ms),
            ("stolen", Some(5_000))
        );
        assert_eq!(
            (rows[1].host_id.as_ref(), rows[1].not_after_ms),
            (None, None)
        );
        // Past its expiry the first no longer needs listing; the second
        // has no known expiry and stays.
        let later = store.revocations_in_force(6_000).unwrap();
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].serial, "0b");
    }

    #[test]
    fn the_command_line_revokes_beside_a_running_collector() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open(&path).unwrap();
        let mark = store.revocations_mark().unwrap();
        let mut admin = AdminStore::open(&path).unwrap();
        admin
            .certificates(|tx| tx.revoke("0c", 10, "lost"))
            .unwrap();
        assert_ne!(store.revocations_mark().unwrap(), mark);
        assert_eq!(store.revocations_in_force(0).unwrap()[0].serial, "0c");
        assert_eq!(admin.revocations_in_force(0).unwrap().len(), 1);
    }
}
