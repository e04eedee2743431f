//! The gRPC port's rustls server: our certificate, and client certificates
//! required and verified against the configured CA.
//!
//! We use our own acceptor rather than tonic's built-in TLS because that one
//! takes one client CA and no CRL, and because handshakes must run off the
//! accept loop: a peer that stalls mid-handshake must not stop others.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ingest::tls::revoking_verifier::RevokingVerifier;
use crate::revocation::Revoked;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    Pem {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Builds the server config: our certificate, client certificates required
/// and verified against `ca_cert_path`.
/// `session_resumption`: TLS 1.3 resumption with stateless tickets. The
/// session (the client chain with it) travels encrypted in the ticket under
/// a key only this process holds, rotated every 6 hours, so a reconnect costs
/// one key exchange instead of two signatures and a chain verification, and
/// the collector keeps nothing per agent. A server-side cache would hold a
/// session per agent and rustls searches it linearly on every resumption:
/// at 50,000 agents that search alone took 6 % of the collector's CPU.
///
/// `enrollment`: connections may also present no certificate at all (the
/// gRPC server then serves them enrollment alone), and our chain carries
/// the CAs, so an agent that knows only a CA's fingerprint (from its
/// token) can verify us before it sends the token.
///
/// `revoked`: certificates with these serials are refused, though their
/// chain holds.
pub fn server_config(
    ca_cert_path: &Path,
    cert_path: &Path,
    key_path: &Path,
    session_resumption: bool,
    enrollment: bool,
    revoked: Arc<Revoked>,
) -> Result<rustls::ServerConfig, TlsError> {
    let mut provider = rustls::crypto::ring::default_provider();
    // AES-128-GCM with SHA-256 first, whatever the client prefers (rustls
    // clients, the agent among them, offer AES-256-GCM with SHA-384 first).
    // Both are TLS 1.3's own suites; the difference is the hash every
    // handshake runs its key schedule and transcript through: SHA-256 has
    // instructions on the CPUs the collector runs on (SHA-NI, ARMv8), SHA-384
    // does not. At 50,000 agents reconnecting once a minute the SHA-384 key
    // schedule alone took 3.5 % of a client's CPU.
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    let provider = Arc::new(provider);
    let mut roots = RootCertStore::empty();
    let cas = load_certs(ca_cert_path)?;
    for ca in &cas {
        roots.add(ca.clone()).map_err(|e| TlsError::Pem {
            path: ca_cert_path.to_owned(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    let mut verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if enrollment {
        verifier = verifier.allow_unauthenticated();
    }
    let verifier = Arc::new(RevokingVerifier {
        inner: verifier
            .build()
            .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?,
        revoked,
    });
    let mut certs = load_certs(cert_path)?;
    if enrollment {
        for ca in cas {
            if !certs.contains(&ca) {
                certs.push(ca);
            }
        }
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::Pem {
        path: key_path.to_owned(),
        message: format!("no usable private key: {e}"),
    })?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(format!("server certificate/key: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    cfg.ignore_client_order = true;
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    if session_resumption {
        cfg.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| TlsError::Config(format!("session ticket keys: {e}")))?;
        // Each resumption hands out a fresh ticket: one is enough.
        cfg.send_tls13_tickets = 1;
    } else {
        cfg.send_tls13_tickets = 0;
    }
    Ok(cfg)
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::Pem {
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("no certificate found".into()));
    }
    Ok(certs)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use campanile_proto::identity::HostIdentity;

    /// Runs a TLS handshake between the two in memory.
    pub(crate) fn handshake(
        client: &mut rustls::ClientConnection,
        server: &mut rustls::ServerConnection,
    ) {
        let mut wire = Vec::new();
        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                return;
            }
            wire.clear();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            server.read_tls(&mut wire.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            wire.clear();
            while server.wants_write() {
                server.write_tls(&mut wire).unwrap();
            }
            client.read_tls(&mut wire.as_slice()).unwrap();
            client.process_new_packets().unwrap();
        }
        panic!("the handshake did not complete");
    }

    /// The collector's server config and an agent's client config (ring,
    /// as the agent has it), from one test CA written into `dir`.
    pub(crate) fn test_configs(dir: &Path) -> (rustls::ServerConfig, rustls::ClientConfig) {
        test_configs_revoking(dir, Revoked::new(Default::default()))
    }

    /// [`test_configs`] with its server refusing `revoked`.
    pub(crate) fn test_configs_revoking(
        dir: &Path,
        revoked: Arc<Revoked>,
    ) -> (rustls::ServerConfig, rustls::ClientConfig) {
        let ca = crate::pki::Ca::generate("Campanile test CA", 1).unwrap();
        let server = ca.issue_server(&["localhost".into()], &[], 1).unwrap();
        let identity = HostIdentity::new("pc-001", "site-a").unwrap();
        let agent = ca.issue_agent(&identity, 1).unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let cfg = server_config(
            &file("ca.pem", &ca.cert_pem),
            &file("server.pem", &server.cert_pem),
            &file("server.key", &server.key_pem),
            true,
            false,
            revoked,
        )
        .unwrap();
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let client_cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(agent.cert_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(agent.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
        (cfg, client_cfg)
    }

    #[test]
    fn agents_get_aes_128_with_sha_256_though_they_offer_sha_384_first() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, client_cfg) = test_configs(dir.path());
        assert_eq!(
            client_cfg.crypto_provider().cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
            "the client side of this test must prefer SHA-384"
        );
        let mut client =
            rustls::ClientConnection::new(Arc::new(client_cfg), "localhost".try_into().unwrap())
                .unwrap();
        let mut server = rustls::ServerConnection::new(Arc::new(cfg)).unwrap();
        handshake(&mut client, &mut server);

        assert_eq!(
            server.negotiated_cipher_suite().map(|s| s.suite()),
            Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
        assert!(server.peer_certificates().is_some_and(|c| !c.is_empty()));
    }
}
