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

/// Which CA signs agents' certificates now, by the SHA-256 of its name
/// (DER). The enroller sets it; the ingest service asks an agent whose
/// certificate another CA signed to renew (a CA rollover).
#[derive(Debug, Default)]
pub struct CurrentSigner(std::sync::RwLock<Option<[u8; 32]>>);

impl CurrentSigner {
    pub fn set(&self, subject_sha256: [u8; 32]) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(subject_sha256);
    }

    /// Whether a certificate of this issuer should be renewed: it is known,
    /// and not the CA that signs now.
    pub fn wants_renewal(&self, issuer_sha256: Option<[u8; 32]>) -> bool {
        let current = *self.0.read().unwrap_or_else(|p| p.into_inner());
        matches!((current, issuer_sha256), (Some(c), Some(i)) if c != i)
    }
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

    pub(crate) fn issuer(&self) -> Result<Issuer<'_, &KeyPair>, PkiError> {
        Ok(Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?)
    }

    /// The collector's server certificate for the given DNS names and IPs.
    pub fn issue_server(
        &self,
        names: &[String],
        ips: &[IpAddr],
        days: i64,
    ) -> Result<Issued, PkiError> {
        let params = server_params(names, ips)?;
        let now = OffsetDateTime::now_utc();
        self.sign(
            params,
            now - Duration::minutes(5),
            now + Duration::days(days),
        )
    }

    /// The server certificate at `cert_path` again, for the same names and
    /// addresses and the key at `key_path`, signed by this CA for `days`
    /// from now, written over it (by a rename: a collector reloading it
    /// never reads half a file). Returns the names and the new expiry.
    pub fn renew_server(
        &self,
        cert_path: &Path,
        key_path: &Path,
        days: i64,
    ) -> Result<RenewedServer, PkiError> {
        let pem = read(cert_path)?;
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| PkiError::Pem(format!("{}: {e}", cert_path.display())))?;
        let (_, current) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| PkiError::Pem(format!("{}: {e}", cert_path.display())))?;
        let (mut names, mut ips) = (Vec::new(), Vec::new());
        if let Ok(Some(san)) = current.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    x509_parser::extensions::GeneralName::DNSName(n) => names.push((*n).to_owned()),
                    x509_parser::extensions::GeneralName::IPAddress(b) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                            ips.push(IpAddr::from(v4));
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                            ips.push(IpAddr::from(v6));
                        }
                    }
                    _ => {}
                }
            }
        }
        if names.is_empty() && ips.is_empty() {
            return Err(PkiError::Pem(format!(
                "{}: no DNS name or IP address to renew it for",
                cert_path.display()
            )));
        }
        let key = KeyPair::from_pem(&read(key_path)?).map_err(|e| PkiError::Key {
            path: key_path.to_owned(),
            message: e.to_string(),
        })?;
        let now = OffsetDateTime::now_utc();
        let not_after = now + Duration::days(days);
        let mut params = server_params(&names, &ips)?;
        stamp(
            &mut params,
            random_serial(),
            now - Duration::minutes(5),
            not_after,
        );
        let cert = params.signed_by(&key, &self.issuer()?)?;
        write_file_atomically(cert_path, cert.pem().as_bytes(), 0o644)?;
        Ok(RenewedServer {
            names,
            ips,
            not_after,
        })
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

    /// SHA-256 of this CA's name (DER), as its certificates name their
    /// issuer.
    pub fn subject_sha256(&self) -> Result<[u8; 32], PkiError> {
        let der = CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|e| PkiError::Pem(e.to_string()))?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::Pem(e.to_string()))?;
        Ok(campanile_proto::sha256(
            cert.tbs_certificate.subject.as_raw(),
        ))
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

/// A renewed server certificate.
#[derive(Debug, Clone)]
pub struct RenewedServer {
    pub names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub not_after: OffsetDateTime,
}

/// What the collector's server certificate carries: its names and
/// addresses, for server authentication only.
fn server_params(names: &[String], ips: &[IpAddr]) -> Result<CertificateParams, PkiError> {
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
    Ok(params)
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
    // Positive, and with its top byte never zero: DER then writes the 16
    // bytes as they are, and the serial a handshake reads back is the one
    // the ledger records.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    rcgen::SerialNumber::from_slice(&bytes)
}

/// A certificate's serial as the store keys it: lower-case hex of the
/// integer's bytes without leading zero bytes (DER adds one to keep an
/// integer with its top bit set positive; tools print it or not).
pub fn serial_hex(raw: &[u8]) -> String {
    let first = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    campanile_proto::hex(&raw[first..])
}

/// A serial as an operator pastes it (`openssl x509 -serial` prints
/// `serial=4A1B...`, other tools `4a:1b:...`), normalised as
/// [`serial_hex`] writes it; `None` if it is not hex of at most 20 bytes
/// (RFC 5280's bound).
pub fn normalize_serial(input: &str) -> Option<String> {
    let s = input.trim();
    let s = s.strip_prefix("serial=").unwrap_or(s);
    let digits: String = s
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let digits = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    let mut hex = digits.as_str();
    while hex.len() > 2 && hex.starts_with("00") {
        hex = &hex[2..];
    }
    (hex.len() <= 40).then(|| hex.to_owned())
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

/// Writes `contents` beside `path`, then renames it there: a reader (a
/// collector reloading its certificates, a tool reading a CRL) never
/// sees half a file.
pub fn write_file_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    write_file(&tmp, contents, mode)?;
    std::fs::rename(&tmp, path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
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

    #[test]
    fn a_serial_reads_back_from_the_certificate_as_the_ledger_records_it() {
        let ca = Ca::generate("test CA", 1).unwrap();
        let key = KeyPair::generate().unwrap();
        let identity = HostIdentity::new("pc-1", "site-1").unwrap();
        let now = OffsetDateTime::now_utc();
        for _ in 0..64 {
            let signed = ca
                .issue_agent_for_key(&identity, &key, now, now + Duration::days(1))
                .unwrap();
            let der = CertificateDer::from_pem_slice(signed.cert_pem.as_bytes()).unwrap();
            let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
            assert_eq!(serial_hex(cert.raw_serial()), signed.serial_hex);
            assert_eq!(
                normalize_serial(&signed.serial_hex),
                Some(signed.serial_hex)
            );
        }
    }

    #[test]
    fn pasted_serials_are_normalised_and_nonsense_is_refused() {
        assert_eq!(normalize_serial("serial=4A1B").as_deref(), Some("4a1b"));
        assert_eq!(normalize_serial("00:c3:0f").as_deref(), Some("c30f"));
        assert_eq!(normalize_serial("abc").as_deref(), Some("0abc"));
        assert_eq!(normalize_serial("00").as_deref(), Some("00"));
        assert_eq!(serial_hex(&[0, 0x80, 1]), "8001");
        for bad in ["", "serial=", "xyz", "4a 1b", &"ab".repeat(21)] {
            assert_eq!(normalize_serial(bad), None, "{bad:?}");
        }
    }
}
