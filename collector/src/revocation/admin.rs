//! `pki revoke`: revokes a host's certificates, or one certificate by
//! serial, in the store. The running collector follows the store
//! ([`super::follow`]), so no restart is needed.

use crate::store::StoreError;
use crate::store::certificates::AdminStore;

/// What to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every certificate the collector signed for the host, still valid.
    Host(String),
    /// One certificate, whoever issued it, as an operator pasted it.
    Serial(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error(
        "{0:?} is not a certificate serial: give it in hex, as `openssl x509 -serial -noout \
         -in agent.pem` prints it"
    )]
    BadSerial(String),
    #[error(
        "host {0:?} holds no valid certificate the collector signed; one issued by hand (`pki \
         issue-agent`) is revoked by its serial: `openssl x509 -serial -noout -in agent.pem` \
         prints it"
    )]
    NothingForHost(String),
    #[error("certificate {0} is revoked already")]
    AlreadyRevoked(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Revokes what `target` names, in one transaction; returns the serials
/// revoked.
pub fn revoke(
    store: &mut AdminStore,
    target: &Target,
    reason: &str,
    now_ms: i64,
) -> Result<Vec<String>, RevokeError> {
    match target {
        Target::Serial(pasted) => {
            let serial = crate::pki::normalize_serial(pasted)
                .ok_or_else(|| RevokeError::BadSerial(pasted.clone()))?;
            store.certificates(|tx| {
                if tx.revoke(&serial, now_ms, reason)? {
                    Ok(vec![serial])
                } else {
                    Err(RevokeError::AlreadyRevoked(serial))
                }
            })
        }
        Target::Host(host) => store.certificates(|tx| {
            let serials = tx.valid_serials(host, now_ms)?;
            if serials.is_empty() {
                return Err(RevokeError::NothingForHost(host.clone()));
            }
            for serial in &serials {
                tx.revoke(serial, now_ms, reason)?;
            }
            Ok(serials)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::certificates::CertificateRow;

    fn ledger_with(store: &mut AdminStore, serial: &str, host: &str) {
        store
            .certificates(|tx| {
                tx.record_certificate(&CertificateRow {
                    serial: serial.into(),
                    host_id: host.into(),
                    site: "site-a".into(),
                    ca_sha256: "00".repeat(32),
                    not_before_ms: 0,
                    not_after_ms: 10_000,
                    issued_ms: 0,
                    how: "enrolled",
                    token_id: None,
                })
            })
            .unwrap();
    }

    #[test]
    fn a_host_is_revoked_once_and_then_has_nothing_left_to_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = AdminStore::open(&dir.path().join("s.db")).unwrap();
        ledger_with(&mut store, "4a01", "pc-01.site-a");
        ledger_with(&mut store, "4a02", "pc-02.site-a");
        let host = Target::Host("pc-01.site-a".into());
        assert_eq!(revoke(&mut store, &host, "stolen", 100).unwrap(), ["4a01"]);
        assert!(matches!(
            revoke(&mut store, &host, "stolen", 200),
            Err(RevokeError::NothingForHost(_))
        ));
        assert!(matches!(
            revoke(&mut store, &Target::Host("pc-09.site-a".into()), "x", 200),
            Err(RevokeError::NothingForHost(_))
        ));
        let rows = store.revocations_in_force(0).unwrap();
        assert_eq!(rows.len(), 1, "the other host keeps its certificate");
    }

    #[test]
    fn a_serial_is_revoked_as_pasted_once_and_nonsense_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = AdminStore::open(&dir.path().join("s.db")).unwrap();
        let pasted = Target::Serial("serial=00:4A:0B".into());
        assert_eq!(revoke(&mut store, &pasted, "lost", 1).unwrap(), ["4a0b"]);
        assert!(matches!(
            revoke(&mut store, &Target::Serial("4a0b".into()), "lost", 2),
            Err(RevokeError::AlreadyRevoked(s)) if s == "4a0b"
        ));
        assert!(matches!(
            revoke(&mut store, &Target::Serial("not-hex".into()), "x", 3),
            Err(RevokeError::BadSerial(_))
        ));
        assert_eq!(store.revocations_in_force(0).unwrap().len(), 1);
    }
}
