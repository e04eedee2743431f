//! The centre's small PKI: a CA, the collector's server certificate and one
//! client certificate per agent, whose URI SANs carry the host identity
//! (the convention lives in `campanile_proto::identity`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use campanile_proto::identity::HostIdentity;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} already exists; refusing to overwrite a CA key (remove it first to start over)"
    )]
    Exists { path: PathBuf },
    #[error("invalid name {0:?} for a certificate")]
    Name(String),
    #[error("{path}: not a usable private key: {message}")]
    Key { path: PathBuf, message: String },
    #[error("bad PEM: {0}")]
    Pem(String),
    #[error(
        "{bundle} holds no CA certificate for the key {key}: the signing CA must be one of the \
         CAs the collector trusts"
    )]
    NoCertificateForKey { key: PathBuf, bundle: PathBuf },
}

/// A PEM certificate and its PEM private key.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA that can sign: its certificate and key.
pub struct Ca {
    pub cert_pem: String,
    key: KeyPair,
}

impl Ca {
    /// A new self-signed CA valid for `days`.
    pub fn generate(common_name: &str, days: i64) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(days);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key,
        })
    }

    /// Loads `ca.pem` and `ca.key` from a directory made by [`init`].
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        Self::load_signer(&dir.join("ca.pem"), &dir.join("ca.key"))
    }

    /// The CA whose key is at `key_path`, its certificate found in the
    /// bundle at `bundle_path` (the CAs the collector trusts) by its
    /// public key.
    pub fn load_signer(bundle_path: &Path, key_path: &Path) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(&read(key_path)?).map_err(|e| PkiError::Key {
            path: key_path.to_owned(),
            message: e.to_string(),
        })?;
        let bundle = read(bundle_path)?;
        for block in pem_certificates(&bundle) {
            let der = CertificateDer::from_pem_slice(block.as_bytes())
                .map_err(|e| PkiError::Pem(format!("{}: {e}", bundle_path.display())))?;
            let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
                continue;
            };
            if cert.tbs_certificate.subject_pki.raw == key.subject_public_key_info().as_slice() {
                return Ok(Self {
                    cert_pem: block,
                    key,
                });
            }
        }
        Err(PkiError::NoCertificateForKey {
            key: key_path.to_owned(),
            bundle: bundle_path.to_owned(),
        })
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    fn issuer(&self) -> Result<Issuer<'_, &KeyPair>, PkiError> {
        Ok(Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?)
    }

    /// The collector's server certificate for the given DNS names and IPs.
    pub fn issue_server(
        &self,
        names: &[String],
        ips: &[IpAddr],
        days: i64,
    ) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(names
            .first()
            .map(String::as_str)
            .unwrap_or("campanile-collector"));
        for n in names {
            let s = rcgen::string::Ia5String::try_from(n.as_str())
                .map_err(|_| PkiError::Name(n.clone()))?;
            params.subject_alt_names.push(SanType::DnsName(s));
        }
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = OffsetDateTime::now_utc();
        self.sign(
            params,
            now - Duration::minutes(5),
            now + Duration::days(days),
        )
    }

    /// An agent's client certificate carrying `identity`, valid between the
    /// given instants (tests use this to make expired certificates).
    pub fn issue_agent_between(
        &self,
        identity: &HostIdentity,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Issued, PkiError> {
        self.sign(agent_params(identity)?, not_before, not_after)
    }

    /// An agent's client certificate valid from now for `days`.
    pub fn issue_agent(&self, identity: &HostIdentity, days: i64) -> Result<Issued, PkiError> {
        let now = OffsetDateTime::now_utc();
        self.issue_agent_between(
            identity,
            now - Duration::minutes(5),
            now + Duration::days(days),
        )
    }

    /// An agent's client certificate carrying `identity` for a key the
    /// agent made (the public key of its CSR), valid between the given
    /// instants. Nothing else of the CSR is copied: names, usages and
    /// constraints are the collector's.
    pub fn issue_agent_for_key(
        &self,
        identity: &HostIdentity,
        public_key: &impl rcgen::PublicKeyData,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<SignedForKey, PkiError> {
        let mut params = agent_params(identity)?;
        let serial = random_serial();
        let serial_hex = campanile_proto::hex(serial.as_ref());
        stamp(&mut params, serial, not_before, not_after);
        let cert = params.signed_by(public_key, &self.issuer()?)?;
        Ok(SignedForKey {
            cert_pem: cert.pem(),
            serial_hex,
        })
    }

    /// SHA-256 of this CA's certificate (DER): the fingerprint tokens carry.
    pub fn sha256(&self) -> Result<[u8; 32], PkiError> {
        let der = CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|e| PkiError::Pem(e.to_string()))?;
        Ok(campanile_proto::enrollment::certificate_sha256(&der))
    }

    fn sign(
        &self,
        mut params: CertificateParams,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Issued, PkiError> {
        stamp(&mut params, random_serial(), not_before, not_after);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer()?)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A certificate signed for a key the collector never saw.
#[derive(Debug, Clone)]
pub struct SignedForKey {
    pub cert_pem: String,
    /// Lower-case hex of the serial number.
    pub serial_hex: String,
}

/// What every agent certificate carries: the identity as URI SANs (and
/// the host id as common name), for client authentication only.
fn agent_params(identity: &HostIdentity) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&identity.host_id);
    for uri in identity.san_uris() {
        let s = rcgen::string::Ia5String::try_from(uri.as_str())
            .map_err(|_| PkiError::Name(uri.clone()))?;
        params.subject_alt_names.push(SanType::URI(s));
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

fn stamp(
    params: &mut CertificateParams,
    serial: rcgen::SerialNumber,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) {
    params.not_before = not_before;
    params.not_after = not_after;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.serial_number = Some(serial);
}

/// The PEM blocks of the certificates in `bundle`, each as written.
pub fn pem_certificates(bundle: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = bundle;
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let end = start + len + END.len();
        blocks.push(format!("{}\n", &rest[start..end]));
        rest = &rest[end..];
    }
    blocks
}

fn random_serial() -> rcgen::SerialNumber {
    let mut bytes = [0u8; 16];
    // ring's system RNG; the serial only needs to be unique per CA.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    bytes[0] &= 0x7f; // keep the DER integer positive
    rcgen::SerialNumber::from_slice(&bytes)
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Campanile");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes a certificate (0644) and its key (0600) as `<name>.pem`/`<name>.key`.
pub fn write_issued(
    dir: &Path,
    name: &str,
    issued: &Issued,
) -> Result<(PathBuf, PathBuf), PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    write_file(&cert, issued.cert_pem.as_bytes(), 0o644)?;
    write_file(&key, issued.key_pem.as_bytes(), 0o600)?;
    Ok((cert, key))
}

/// Writes a file created with `mode` from the start, so a private key is
/// never readable by others, not even for an instant.
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    use std::io::Write;
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(mode);
        let mut f = opts.open(path).map_err(io)?;
        // An existing file keeps its old mode on open: set it explicitly.
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io)?;
        f.write_all(contents).map_err(io)?;
        f.sync_all().map_err(io)
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        let mut f = opts.open(path).map_err(io)?;
        f.write_all(contents).map_err(io)?;
        f.sync_all().map_err(io)
    }
}

/// What `pki init` wrote.
#[derive(Debug)]
pub struct InitOutput {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// Creates `ca.pem`/`ca.key` and `server.pem`/`server.key` in `out`.
pub fn init(
    out: &Path,
    names: &[String],
    ips: &[IpAddr],
    ca_days: i64,
    server_days: i64,
) -> Result<InitOutput, PkiError> {
    let ca_key_path = out.join("ca.key");
    if ca_key_path.exists() {
        return Err(PkiError::Exists { path: ca_key_path });
    }
    let ca = Ca::generate("Campanile CA", ca_days)?;
    let (ca_cert, _) = write_issued(
        out,
        "ca",
        &Issued {
            cert_pem: ca.cert_pem.clone(),
            key_pem: ca.key_pem(),
        },
    )?;
    let server = ca.issue_server(names, ips, server_days)?;
    let (server_cert, server_key) = write_issued(out, "server", &server)?;
    Ok(InitOutput {
        ca_cert,
        server_cert,
        server_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_private_keys_readable_only_by_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let out = init(
            dir.path(),
            &["localhost".into()],
            &["127.0.0.1".parse().unwrap()],
            10,
            10,
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in [dir.path().join("ca.key"), out.server_key.clone()] {
                let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", key.display());
            }
        }
        let again = init(dir.path(), &["localhost".into()], &[], 10, 10);
        assert!(matches!(again, Err(PkiError::Exists { .. })));
        let ca = Ca::load(dir.path()).unwrap();
        ca.issue_agent(&HostIdentity::new("pc-1", "site-1").unwrap(), 1)
            .unwrap();
    }
}
