//! Enrollment tokens and the certificates the collector signed, in the
//! store's SQLite file. A token is kept only as the SHA-256 of its
//! credential, so reading the store does not give anyone a usable token.
//!
//! The running collector works on them through [`Store::certificates`];
//! the command line (`enroll new`, `enroll list`, ...) through an
//! [`AdminStore`], which opens the same file without loading the hosts.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{BUSY_TIMEOUT, Store, StoreError, schema};

/// A token as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRow {
    pub id: String,
    pub site: String,
    pub name: String,
    pub uses_total: u32,
    pub uses_left: u32,
    /// Enrolling a host id that holds a valid certificate replaces it
    /// (and revokes the old one) instead of being refused.
    pub may_replace: bool,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// A token to store.
#[derive(Debug, Clone)]
pub struct NewTokenRow {
    pub row: TokenRow,
    pub secret_sha256: [u8; 32],
}

/// A certificate the collector signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRow {
    /// Lower-case hex.
    pub serial: String,
    pub host_id: String,
    pub site: String,
    /// Hex SHA-256 of the signing CA's certificate.
    pub ca_sha256: String,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
    pub issued_ms: i64,
    /// `enrolled`.
    pub how: &'static str,
    pub token_id: Option<String>,
}

/// The certificate work of one transaction; see [`Store::certificates`].
pub struct CertificateTx<'a> {
    pub(super) tx: Transaction<'a>,
    path: &'a Path,
}

impl CertificateTx<'_> {
    pub(super) fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.to_owned(),
            source,
        }
    }

    /// The token with this id and credential hash, whatever its state.
    pub fn token(
        &self,
        id: &str,
        secret_sha256: &[u8; 32],
    ) -> Result<Option<TokenRow>, StoreError> {
        self.tx
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM enrollment_tokens WHERE id = ?1 AND secret_sha256 = ?2"),
                params![id, secret_sha256.as_slice()],
                token_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Takes one use of a token.
    pub fn use_token(&self, id: &str) -> Result<(), StoreError> {
        self.tx
            .execute(
                "UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE id = ?1 AND uses_left > 0",
                [id],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Serials of the host's certificates that are neither expired nor
    /// revoked at `now_ms`.
    pub fn valid_serials(&self, host_id: &str, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT serial FROM certificates
                  WHERE host_id = ?1 AND not_after_ms > ?2 AND revoked_ms IS NULL",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![host_id, now_ms], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// When the certificate the host last reported with expires, if the
    /// ledger does not know it: certificates issued by hand (`pki
    /// issue-agent`) are known only this way. One the collector signed
    /// (the same expiry, to the second a certificate holds) is for
    /// [`Self::valid_serials`] to judge, revoked or not.
    pub fn reported_certificate_not_after(&self, host_id: &str) -> Result<Option<i64>, StoreError> {
        self.tx
            .query_row(
                "SELECT h.cert_not_after_ms FROM hosts h WHERE h.host_id = ?1
                    AND NOT EXISTS (SELECT 1 FROM certificates c
                                     WHERE c.host_id = h.host_id
                                       AND c.not_after_ms / 1000 = h.cert_not_after_ms / 1000)",
                [host_id],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.err(e))
    }

    pub fn record_certificate(&self, c: &CertificateRow) -> Result<(), StoreError> {
        self.tx
            .execute(
                "INSERT INTO certificates (serial, host_id, site, ca_sha256, not_before_ms,
                     not_after_ms, issued_ms, how, token_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    c.serial,
                    c.host_id,
                    c.site,
                    c.ca_sha256,
                    c.not_before_ms,
                    c.not_after_ms,
                    c.issued_ms,
                    c.how,
                    c.token_id
                ],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }
}

const TOKEN_COLUMNS: &str = "id, site, name, uses_total, uses_left, may_replace, created_ms, \
                             expires_ms, revoked_ms";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: r.get(0)?,
        site: r.get(1)?,
        name: r.get(2)?,
        uses_total: r.get(3)?,
        uses_left: r.get(4)?,
        may_replace: r.get(5)?,
        created_ms: r.get(6)?,
        expires_ms: r.get(7)?,
        revoked_ms: r.get(8)?,
    })
}

/// Runs `f` in one transaction of `conn`, committed if it returns `Ok`.
fn in_transaction<T, E: From<StoreError>>(
    conn: &mut Connection,
    path: &Path,
    f: impl FnOnce(&CertificateTx<'_>) -> Result<T, E>,
) -> Result<T, E> {
    let sql = |source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    };
    // IMMEDIATE: the write lock is taken at the start, so two enrollments
    // of the same host id cannot both see it free.
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql)?;
    let work = CertificateTx { tx, path };
    let out = f(&work)?;
    work.tx.commit().map_err(sql)?;
    Ok(out)
}

fn create_token(conn: &Connection, path: &Path, t: &NewTokenRow) -> Result<(), StoreError> {
    let r = &t.row;
    conn.execute(
        "INSERT INTO enrollment_tokens (id, secret_sha256, site, name, uses_total, uses_left,
             may_replace, created_ms, expires_ms, revoked_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            r.id,
            t.secret_sha256.as_slice(),
            r.site,
            r.name,
            r.uses_total,
            r.uses_left,
            r.may_replace,
            r.created_ms,
            r.expires_ms,
            r.revoked_ms
        ],
    )
    .map(drop)
    .map_err(|source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    })
}

fn list_tokens(conn: &Connection, path: &Path) -> Result<Vec<TokenRow>, StoreError> {
    let sql = |source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {TOKEN_COLUMNS} FROM enrollment_tokens ORDER BY created_ms, id"
        ))
        .map_err(sql)?;
    stmt.query_map([], token_row)
        .and_then(|rows| rows.collect())
        .map_err(sql)
}

fn revoke_token(conn: &Connection, path: &Path, id: &str, now_ms: i64) -> Result<bool, StoreError> {
    conn.execute(
        "UPDATE enrollment_tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
        params![id, now_ms],
    )
    .map(|n| n > 0)
    .map_err(|source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    })
}

impl Store {
    /// Runs `f` in one transaction on the writer connection (between two
    /// group commits), committed if it returns `Ok`.
    pub fn certificates<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&CertificateTx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        in_transaction(&mut conn, &self.path, f)
    }

    pub fn create_enrollment_token(&self, t: &NewTokenRow) -> Result<(), StoreError> {
        let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        create_token(&conn, &self.path, t)
    }

    pub fn enrollment_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        list_tokens(&conn, &self.path)
    }

    /// Ends a token; false if there was no such token still in force.
    pub fn revoke_enrollment_token(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        revoke_token(&conn, &self.path, id, now_ms)
    }
}

/// The store as the command line opens it: its schema brought up to date,
/// no hosts loaded, safe beside a running collector (SQLite's WAL lets
/// both write, one transaction at a time).
pub struct AdminStore {
    conn: Connection,
    path: PathBuf,
}

impl AdminStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let sql = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(sql)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        schema::migrations()
            .to_latest(&mut conn)
            .map_err(|source| StoreError::Migration {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    pub fn create_enrollment_token(&self, t: &NewTokenRow) -> Result<(), StoreError> {
        create_token(&self.conn, &self.path, t)
    }

    pub fn enrollment_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        list_tokens(&self.conn, &self.path)
    }

    pub fn revoke_enrollment_token(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        revoke_token(&self.conn, &self.path, id, now_ms)
    }

    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub fn certificates<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&CertificateTx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        in_transaction(&mut self.conn, &self.path, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: &str, uses: u32) -> NewTokenRow {
        NewTokenRow {
            row: TokenRow {
                id: id.into(),
                site: "site-a".into(),
                name: "first morning".into(),
                uses_total: uses,
                uses_left: uses,
                may_replace: false,
                created_ms: 1_000,
                expires_ms: 10_000,
                revoked_ms: None,
            },
            secret_sha256: [7; 32],
        }
    }

    #[test]
    fn a_token_is_found_only_by_its_credential_hash_and_its_uses_run_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        store
            .create_enrollment_token(&token("0a0b0c0d", 2))
            .unwrap();
        let found = store
            .certificates(|tx| {
                assert_eq!(tx.token("0a0b0c0d", &[8; 32])?, None);
                let t = tx.token("0a0b0c0d", &[7; 32])?.expect("the token");
                tx.use_token(&t.id)?;
                tx.use_token(&t.id)?;
                tx.use_token(&t.id)?;
                tx.token("0a0b0c0d", &[7; 32])
            })
            .unwrap()
            .unwrap();
        assert_eq!(found.uses_left, 0, "uses never go below zero");
        assert!(store.revoke_enrollment_token("0a0b0c0d", 5).unwrap());
        assert!(!store.revoke_enrollment_token("0a0b0c0d", 6).unwrap());
        assert_eq!(store.enrollment_tokens().unwrap()[0].revoked_ms, Some(5));
    }

    #[test]
    fn a_failed_transaction_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open(&path).unwrap();
        store
            .create_enrollment_token(&token("01020304", 1))
            .unwrap();
        let r: Result<(), StoreError> = store.certificates(|tx| {
            tx.use_token("01020304")?;
            Err(StoreError::Shared {
                message: "refused".into(),
            })
        });
        assert!(r.is_err());
        // The command line sees what the collector wrote, and the use was
        // rolled back.
        let admin = AdminStore::open(&path).unwrap();
        assert_eq!(admin.enrollment_tokens().unwrap()[0].uses_left, 1);
    }

    #[test]
    fn valid_serials_leave_out_expired_and_revoked_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let cert = |serial: &str, not_after_ms| CertificateRow {
            serial: serial.into(),
            host_id: "pc-01.site-a".into(),
            site: "site-a".into(),
            ca_sha256: "00".into(),
            not_before_ms: 0,
            not_after_ms,
            issued_ms: 0,
            how: "enrolled",
            token_id: None,
        };
        let valid = store
            .certificates(|tx| {
                tx.record_certificate(&cert("01", 500))?;
                tx.record_certificate(&cert("02", 5_000))?;
                tx.record_certificate(&cert("03", 5_000))?;
                assert!(tx.revoke("03", 100, "test")?);
                tx.valid_serials("pc-01.site-a", 1_000)
            })
            .unwrap();
        assert_eq!(valid, vec!["02".to_owned()]);
    }
}
