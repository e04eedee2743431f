//! What a CA rollover needs of the store: which CA signed the certificate
//! each host holds now. The ledger knows the collector's own certificates
//! (the newest valid one of a host is the one it uses); a host whose last
//! report came with a valid certificate the ledger does not know holds one
//! issued by hand.

use std::path::Path;

use rusqlite::Connection;

use super::certificates::AdminStore;
use super::{Store, StoreError};

/// The hosts on some CAs: how many, and the first of them by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostsOn {
    pub count: usize,
    pub first: Vec<String>,
}

/// Each host's newest valid, unrevoked certificate of the ledger, and its
/// CA: SQLite takes the bare columns from the row of `max()`.
const NEWEST_PER_HOST: &str = "SELECT host_id, ca_sha256, max(issued_ms) FROM certificates
      WHERE not_after_ms > ?1 AND revoked_ms IS NULL GROUP BY host_id";

fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

fn by_ca(conn: &Connection, path: &Path, now_ms: i64) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT ca_sha256, count(*) FROM ({NEWEST_PER_HOST}) GROUP BY ca_sha256 ORDER BY ca_sha256"
        ))
        .map_err(sql(path))?;
    stmt.query_map([now_ms], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(sql(path))
}

fn on_cas(
    conn: &Connection,
    path: &Path,
    cas: &[String],
    now_ms: i64,
    limit: usize,
) -> Result<HostsOn, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT host_id, ca_sha256 FROM ({NEWEST_PER_HOST}) ORDER BY host_id"
        ))
        .map_err(sql(path))?;
    let rows: Vec<(String, String)> = stmt
        .query_map([now_ms], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(sql(path))?;
    Ok(collect_hosts(
        rows.into_iter()
            .filter(|(_, ca)| cas.contains(ca))
            .map(|(h, _)| h),
        limit,
    ))
}

fn by_hand(
    conn: &Connection,
    path: &Path,
    now_ms: i64,
    limit: usize,
) -> Result<HostsOn, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT h.host_id FROM hosts h WHERE h.cert_not_after_ms > ?1
                AND NOT EXISTS (SELECT 1 FROM certificates c
                                 WHERE c.host_id = h.host_id
                                   AND c.not_after_ms / 1000 = h.cert_not_after_ms / 1000)
              ORDER BY h.host_id",
        )
        .map_err(sql(path))?;
    let hosts: Vec<String> = stmt
        .query_map([now_ms], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(sql(path))?;
    Ok(collect_hosts(hosts.into_iter(), limit))
}

fn collect_hosts(hosts: impl Iterator<Item = String>, limit: usize) -> HostsOn {
    let mut out = HostsOn::default();
    for h in hosts {
        out.count += 1;
        if out.first.len() < limit {
            out.first.push(h);
        }
    }
    out
}

impl Store {
    /// Hosts by the CA (hex SHA-256) of the certificate the collector
    /// signed that they hold now.
    pub fn hosts_by_ca(&self, now_ms: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        by_ca(&conn, &self.path, now_ms)
    }

    /// Hosts that hold a valid certificate issued by hand.
    pub fn hosts_with_certificates_by_hand(&self, now_ms: i64) -> Result<HostsOn, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        by_hand(&conn, &self.path, now_ms, 0)
    }
}

impl AdminStore {
    /// Hosts whose certificate in force one of `cas` (hex SHA-256) signed.
    pub fn hosts_on_cas(
        &self,
        cas: &[String],
        now_ms: i64,
        limit: usize,
    ) -> Result<HostsOn, StoreError> {
        on_cas(self.conn(), self.path(), cas, now_ms, limit)
    }

    /// Hosts that hold a valid certificate issued by hand.
    pub fn hosts_with_certificates_by_hand(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<HostsOn, StoreError> {
        by_hand(self.conn(), self.path(), now_ms, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::certificates::CertificateRow;

    fn cert(
        serial: &str,
        host: &str,
        ca: &str,
        issued_ms: i64,
        not_after_ms: i64,
    ) -> CertificateRow {
        CertificateRow {
            serial: serial.into(),
            host_id: host.into(),
            site: "site-a".into(),
            ca_sha256: ca.into(),
            not_before_ms: issued_ms,
            not_after_ms,
            issued_ms,
            how: "enrolled",
            token_id: None,
        }
    }

    #[test]
    fn a_host_counts_under_the_ca_of_its_newest_valid_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open(&path).unwrap();
        store
            .certificates(|tx| -> Result<(), StoreError> {
                // pc-01 moved from old to new; pc-02 is still on old; pc-03's
                // new certificate is revoked, so it holds its old one; pc-04's
                // only certificate has expired.
                tx.record_certificate(&cert("01", "pc-01", "old", 10, 1_000))?;
                tx.record_certificate(&cert("02", "pc-01", "new", 20, 1_000))?;
                tx.record_certificate(&cert("03", "pc-02", "old", 10, 1_000))?;
                tx.record_certificate(&cert("04", "pc-03", "old", 10, 1_000))?;
                tx.record_certificate(&cert("05", "pc-03", "new", 20, 1_000))?;
                tx.revoke("05", 30, "test")?;
                tx.record_certificate(&cert("06", "pc-04", "old", 10, 50))?;
                Ok(())
            })
            .unwrap();
        assert_eq!(
            store.hosts_by_ca(100).unwrap(),
            [("new".to_owned(), 1), ("old".to_owned(), 2)]
        );
        let admin = AdminStore::open(&path).unwrap();
        let on_old = admin.hosts_on_cas(&["old".into()], 100, 1).unwrap();
        assert_eq!(on_old.count, 2);
        assert_eq!(on_old.first, ["pc-02"]);
        assert_eq!(
            admin.hosts_on_cas(&["gone".into()], 100, 10).unwrap().count,
            0
        );
        assert_eq!(
            admin
                .hosts_with_certificates_by_hand(100, 10)
                .unwrap()
                .count,
            0
        );
    }
}
