//! CA rollover: `pki rotate-ca` makes a new CA that the collector trusts
//! beside the old one and signs with from then on; agents under the old
//! CA are asked to renew ([`crate::pki::CurrentSigner`]) and get the new
//! bundle with their new certificate. `pki retire-ca` ends the old CA once
//! no agent holds a certificate of it: the server certificate moves to the
//! new CA (every agent trusts it by then) and the old CA leaves the
//! bundle. The running collector picks up each step from the files
//! (`tls_reload`), with no restart. [`gauge`] counts agents per CA.

pub mod gauge;

use std::path::{Path, PathBuf};

use campanile_proto::enrollment::certificate_sha256;
use campanile_proto::hex;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;

use crate::pki::{self, Ca, PkiError};
use crate::store::StoreError;
use crate::store::certificates::AdminStore;
use crate::store::rollover::HostsOn;

#[derive(Debug, thiserror::Error)]
pub enum RolloverError {
    #[error(
        "{bundle} holds {cas} CAs: a rollover is under way; finish it with `pki retire-ca` first"
    )]
    InProgress { bundle: PathBuf, cas: usize },
    #[error("{bundle} holds only the signing CA: there is no old CA to retire")]
    NothingToRetire { bundle: PathBuf },
    #[error(
        "{count} agent(s) still hold a certificate of the old CA ({hosts}{more}); they move when \
         they next report (the collector asks them to renew). Wait, or revoke those that will \
         never come back (`pki revoke --host`)"
    )]
    StillInUse {
        count: usize,
        hosts: String,
        more: &'static str,
    },
    #[error(
        "{count} agent(s) hold a certificate issued by hand ({hosts}{more}); they move when they \
         renew, which the collector asks of them at their next report"
    )]
    ByHand {
        count: usize,
        hosts: String,
        more: &'static str,
    },
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `rotate` did.
#[derive(Debug, Clone)]
pub struct Rotated {
    pub old_sha256: [u8; 32],
    pub new_sha256: [u8; 32],
    pub new_name: String,
    /// Where the old CA's key is kept.
    pub old_key: PathBuf,
}

/// What `retire` did.
#[derive(Debug, Clone)]
pub struct Retired {
    pub retired: Vec<[u8; 32]>,
    pub server_not_after: OffsetDateTime,
}

/// Makes a new CA valid for `days`: the bundle at `bundle_path` gets it
/// beside the old one, and the key at `key_path` becomes its key (the old
/// key is kept beside it as `ca-<fingerprint>.key`).
pub fn rotate(
    bundle_path: &Path,
    key_path: &Path,
    days: i64,
    now: OffsetDateTime,
) -> Result<Rotated, RolloverError> {
    let bundle = read(bundle_path)?;
    let cas = pki::pem_certificates(&bundle).len();
    if cas > 1 {
        return Err(RolloverError::InProgress {
            bundle: bundle_path.to_owned(),
            cas,
        });
    }
    let old = Ca::load_signer(bundle_path, key_path)?;
    let old_sha256 = old.sha256()?;
    // A name of its own: agents' certificates tell their CA by its name.
    let new_name = format!(
        "Campanile CA {:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let new = Ca::generate(&new_name, days)?;
    let old_key = key_path.with_file_name(format!("ca-{}.key", &hex(&old_sha256)[..16]));
    pki::write_file_atomically(&old_key, old.key_pem().as_bytes(), 0o600)?;
    // The bundle first: a collector that reads the files between the two
    // writes finds the old key among trusted CAs, and goes on as before.
    let mut both = bundle.trim_end().to_owned();
    both.push('\n');
    both.push_str(&new.cert_pem);
    pki::write_file_atomically(bundle_path, both.as_bytes(), 0o644)?;
    pki::write_file_atomically(key_path, new.key_pem().as_bytes(), 0o600)?;
    Ok(Rotated {
        old_sha256,
        new_sha256: new.sha256()?,
        new_name,
        old_key,
    })
}

/// Ends every CA of the bundle but the signing one, once no agent holds a
/// valid certificate of them: the server certificate (at `server_cert`,
/// for the key at `server_key`) is signed anew by the signing CA for
/// `server_days`, then the bundle keeps only that CA.
pub fn retire(
    store: &AdminStore,
    bundle_path: &Path,
    key_path: &Path,
    server_cert: &Path,
    server_key: &Path,
    server_days: i64,
    now_ms: i64,
) -> Result<Retired, RolloverError> {
    let signer = Ca::load_signer(bundle_path, key_path)?;
    let signing = signer.sha256()?;
    let bundle = read(bundle_path)?;
    let (mut keep, mut old) = (String::new(), Vec::new());
    for block in pki::pem_certificates(&bundle) {
        let der = CertificateDer::from_pem_slice(block.as_bytes())
            .map_err(|e| PkiError::Pem(format!("{}: {e}", bundle_path.display())))?;
        let sha = certificate_sha256(&der);
        if sha == signing {
            keep.push_str(&block);
        } else {
            old.push(sha);
        }
    }
    if old.is_empty() {
        return Err(RolloverError::NothingToRetire {
            bundle: bundle_path.to_owned(),
        });
    }
    let old_hex: Vec<String> = old.iter().map(|s| hex(s)).collect();
    let on_old = store.hosts_on_cas(&old_hex, now_ms, SHOWN)?;
    if on_old.count > 0 {
        let (hosts, more) = listed(&on_old);
        return Err(RolloverError::StillInUse {
            count: on_old.count,
            hosts,
            more,
        });
    }
    let by_hand = store.hosts_with_certificates_by_hand(now_ms, SHOWN)?;
    if by_hand.count > 0 {
        let (hosts, more) = listed(&by_hand);
        return Err(RolloverError::ByHand {
            count: by_hand.count,
            hosts,
            more,
        });
    }
    // Every agent has renewed since the rotation, so holds the bundle with
    // the new CA: the server certificate can move to it, then the old CA
    // can go.
    let renewed = signer.renew_server(server_cert, server_key, server_days)?;
    pki::write_file_atomically(bundle_path, keep.as_bytes(), 0o644)?;
    Ok(Retired {
        retired: old,
        server_not_after: renewed.not_after,
    })
}

/// Whether the bundle holds more than one CA: a rollover is under way.
pub fn in_progress(bundle_path: &Path) -> Result<bool, PkiError> {
    Ok(pki::pem_certificates(&read(bundle_path)?).len() > 1)
}

/// Hosts named in a refusal.
const SHOWN: usize = 10;

fn listed(h: &HostsOn) -> (String, &'static str) {
    (
        h.first.join(", "),
        if h.count > h.first.len() { ", ..." } else { "" },
    )
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The CA of the bundle that signed the certificate at `cert_path` (the
/// collector's server certificate): the CA enrollment tokens pin, since an
/// agent checks the server's chain against it before it sends the token.
pub fn server_ca_sha256(bundle_path: &Path, cert_path: &Path) -> Result<[u8; 32], PkiError> {
    let pem_err = |path: &Path, e: String| PkiError::Pem(format!("{}: {e}", path.display()));
    let cert = std::fs::read(cert_path).map_err(|source| PkiError::Io {
        path: cert_path.to_owned(),
        source,
    })?;
    let leaf =
        CertificateDer::from_pem_slice(&cert).map_err(|e| pem_err(cert_path, e.to_string()))?;
    let (_, leaf) = x509_parser::parse_x509_certificate(&leaf)
        .map_err(|e| pem_err(cert_path, e.to_string()))?;
    for block in pki::pem_certificates(&read(bundle_path)?) {
        let der = CertificateDer::from_pem_slice(block.as_bytes())
            .map_err(|e| pem_err(bundle_path, e.to_string()))?;
        let Ok((_, ca)) = x509_parser::parse_x509_certificate(&der) else {
            continue;
        };
        if ca.tbs_certificate.subject.as_raw() == leaf.tbs_certificate.issuer.as_raw() {
            return Ok(certificate_sha256(&der));
        }
    }
    Err(pem_err(
        bundle_path,
        format!("holds no CA that signed {}", cert_path.display()),
    ))
}
