//! Enrollment: an agent trades a token bound to a site for a certificate
//! signed by the collector's CA ([`Enroller`]), on the gRPC port, over a
//! connection that presents no client certificate and can call nothing
//! else ([`service`]).
//!
//! - [`config`]: the `enrollment` section of the config.
//! - [`token`]: making tokens; the format is `campanile_proto::enrollment`.
//! - [`csr`]: what is accepted of a CSR.
//! - [`host_id`]: the host id given when the CSR asks for none.
//! - [`attempts`]: refused attempts per source.
//! - [`refusal`]: why an attempt was refused, as counted and answered.
//! - [`admin`]: the operator's side (`enroll new`, `enroll list`, ...).

pub mod admin;
pub mod attempts;
pub mod config;
pub mod csr;
pub mod host_id;
pub mod refusal;
pub mod service;
pub mod token;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use campanile_proto::enrollment::parse_credential;
use campanile_proto::hex;
use campanile_proto::identity::HostIdentity;
use campanile_proto::v1::{EnrollRequest, IssuedCertificate};
use rcgen::PublicKeyData;
use time::OffsetDateTime;

use crate::ingest::tls::PeerInfo;
use crate::ingest::tls::source::SourceKey;
use crate::pki::{Ca, CurrentSigner, PkiError};
use crate::store::Store;
use crate::store::certificates::{CertificateRow, CertificateTx};
use attempts::FailedAttempts;
use config::EnrollmentConfig;
pub use refusal::Refusal;

/// Signs agents' certificates for valid tokens.
pub struct Enroller {
    /// Replaced whole by [`Self::reload`].
    signing: RwLock<Arc<Signing>>,
    /// Told which CA signs, so agents under another are asked to renew.
    current: Arc<CurrentSigner>,
    bundle_path: PathBuf,
    store: Arc<Store>,
    cfg: EnrollmentConfig,
    attempts: FailedAttempts,
    results: prometheus::IntCounterVec,
    renewals: prometheus::IntCounterVec,
}

impl Enroller {
    /// The signer is the CA of `cfg.ca_key_path`, found among the trusted
    /// CAs of `bundle_path` by its key.
    pub fn new(
        cfg: EnrollmentConfig,
        bundle_path: &std::path::Path,
        store: Arc<Store>,
        current: Arc<CurrentSigner>,
        results: prometheus::IntCounterVec,
        renewals: prometheus::IntCounterVec,
    ) -> Result<Self, PkiError> {
        let signing = Signing::load(bundle_path, &cfg.ca_key_path)?;
        current.set(signing.subject_sha256);
        Ok(Self {
            signing: RwLock::new(Arc::new(signing)),
            current,
            bundle_path: bundle_path.to_owned(),
            store,
            attempts: FailedAttempts::new(
                cfg.max_failed_attempts_per_source,
                cfg.failed_attempts_window,
            ),
            cfg,
            results,
            renewals,
        })
    }

    fn signing(&self) -> Arc<Signing> {
        // Nothing panics while holding it.
        self.signing
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the CA bundle and the signing key again; what is in force
    /// stays if they do not load. True if the signer or the bundle
    /// changed.
    pub fn reload(&self) -> Result<bool, PkiError> {
        let new = Signing::load(&self.bundle_path, &self.cfg.ca_key_path)?;
        let mut held = self.signing.write().unwrap_or_else(|p| p.into_inner());
        let changed = new.ca_sha256 != held.ca_sha256 || new.bundle_pem != held.bundle_pem;
        if changed {
            self.current.set(new.subject_sha256);
            *held = Arc::new(new);
        }
        Ok(changed)
    }

    /// What tokens made by this collector carry: its signer's fingerprint,
    /// and where agents dial (`advertised_endpoint`, else `listen`).
    pub fn issuing(&self, listen: std::net::SocketAddr, server_cert: &Path) -> admin::Issuing {
        admin::Issuing {
            bundle_path: self.bundle_path.clone(),
            cert_path: server_cert.to_owned(),
            endpoint: self
                .cfg
                .advertised_endpoint
                .clone()
                .unwrap_or_else(|| listen.to_string()),
        }
    }

    /// A new certificate for the identity `peer`'s certificate carries,
    /// for the new key of `csr_der`; counted and logged. Blocking.
    pub fn renew(&self, peer: &PeerInfo, csr_der: &[u8]) -> Result<IssuedCertificate, Refusal> {
        let result = self.try_renew(peer, csr_der);
        let label = match &result {
            Ok(issued) => {
                tracing::info!(host = %issued.host_id, site = %issued.site, "certificate renewed");
                "ok"
            }
            Err(refusal) => {
                tracing::info!(peer = %peer.remote_addr, reason = refusal.reason_label(),
                    error = %refusal, "renewal refused");
                refusal.reason_label()
            }
        };
        self.renewals.with_label_values(&[label]).inc();
        result
    }

    fn try_renew(&self, peer: &PeerInfo, csr_der: &[u8]) -> Result<IssuedCertificate, Refusal> {
        let identity = peer.identity.clone().map_err(Refusal::Unauthenticated)?;
        let csr = csr::check(csr_der)?;
        if let Some(asked) = &csr.host_id
            && *asked != identity.host_id
        {
            return Err(Refusal::WrongHost {
                asked: asked.clone(),
                expected: identity.host_id,
            });
        }
        if let Some(asked) = &csr.site
            && *asked != identity.site
        {
            return Err(Refusal::WrongSite {
                asked: asked.clone(),
                expected: identity.site,
            });
        }
        let key = campanile_proto::sha256(&csr.public_key.subject_public_key_info());
        if peer.cert_key_sha256 == Some(key) {
            return Err(Refusal::SameKey);
        }
        self.store.certificates(|tx| {
            // The store, not the set in memory: a revocation made a moment
            // ago refuses the renewal before the collector has read it.
            if let Some(serial) = &peer.cert_serial
                && tx.is_revoked(serial)?
            {
                return Err(Refusal::Revoked);
            }
            self.sign_and_record(tx, &identity, &csr.public_key, "renewed", None)
        })
    }

    /// Signs a certificate of the configured lifetime from now and records
    /// it in the ledger, in `tx`.
    fn sign_and_record(
        &self,
        tx: &CertificateTx<'_>,
        identity: &HostIdentity,
        key: &rcgen::PublicKey,
        how: &'static str,
        token_id: Option<String>,
    ) -> Result<IssuedCertificate, Refusal> {
        let now = OffsetDateTime::now_utc();
        let lifetime = time::Duration::try_from(self.cfg.certificate_lifetime)
            .unwrap_or(time::Duration::days(30));
        // Valid a little before now, for agents whose clock runs slow: five
        // minutes, or a tenth of a short lifetime (whose agent renews at
        // half of it: backdating must not eat that half).
        let backdate: time::Duration = (lifetime / 10_i32).min(time::Duration::minutes(5));
        let not_before = now - backdate;
        let not_after = now + lifetime;
        let signing = self.signing();
        let signed = signing
            .signer
            .issue_agent_for_key(identity, key, not_before, not_after)?;
        tx.record_certificate(&CertificateRow {
            serial: signed.serial_hex,
            host_id: identity.host_id.clone(),
            site: identity.site.clone(),
            ca_sha256: hex(&signing.ca_sha256),
            not_before_ms: unix_ms(not_before),
            not_after_ms: unix_ms(not_after),
            issued_ms: unix_ms(now),
            how,
            token_id,
        })?;
        Ok(IssuedCertificate {
            certificate_pem: signed.cert_pem,
            ca_bundle_pem: signing.bundle_pem.clone(),
            host_id: identity.host_id.clone(),
            site: identity.site.clone(),
            not_before_unix_ms: unix_ms(not_before),
            not_after_unix_ms: unix_ms(not_after),
        })
    }

    /// Checks the request and, if all holds, signs and records the
    /// certificate; counts and logs the outcome. Blocking (a store
    /// transaction): run it off the async threads.
    pub fn enroll(
        &self,
        source: SourceKey,
        req: &EnrollRequest,
    ) -> Result<IssuedCertificate, Refusal> {
        let result = self.try_enroll(source, req);
        let label = match &result {
            Ok(issued) => {
                tracing::info!(host = %issued.host_id, site = %issued.site, %source,
                    "agent enrolled");
                "ok"
            }
            Err(refusal) => {
                if refusal.is_token_failure() {
                    self.attempts.failed(source, Instant::now());
                }
                if matches!(refusal, Refusal::RateLimited) {
                    tracing::debug!(%source, "enrollment refused unread: too many refusals");
                } else {
                    tracing::info!(%source, reason = refusal.reason_label(), error = %refusal,
                        "enrollment refused");
                }
                refusal.reason_label()
            }
        };
        self.results.with_label_values(&[label]).inc();
        result
    }

    fn try_enroll(
        &self,
        source: SourceKey,
        req: &EnrollRequest,
    ) -> Result<IssuedCertificate, Refusal> {
        if self.attempts.blocked(source, Instant::now()) {
            return Err(Refusal::RateLimited);
        }
        let (token_id, secret_sha256) =
            parse_credential(&req.token).ok_or(Refusal::UnknownToken)?;
        let csr = csr::check(&req.csr_der)?;
        let now = OffsetDateTime::now_utc();
        let now_ms = unix_ms(now);
        self.store.certificates(|tx| {
            let token = tx
                .token(&token_id, &secret_sha256)?
                .ok_or(Refusal::UnknownToken)?;
            if token.revoked_ms.is_some() {
                return Err(Refusal::TokenRevoked);
            }
            if token.expires_ms <= now_ms {
                return Err(Refusal::TokenExpired);
            }
            if token.uses_left == 0 {
                return Err(Refusal::TokenUsedUp);
            }
            if let Some(asked) = &csr.site
                && *asked != token.site
            {
                return Err(Refusal::WrongSite {
                    asked: asked.clone(),
                    expected: token.site.clone(),
                });
            }
            let host_id = match &csr.host_id {
                Some(h) => h.clone(),
                None => host_id::default_host_id(&req.hostname, &token.site).ok_or_else(|| {
                    Refusal::BadHostId(format!(
                        "no host id can be made of hostname {:?}: ask for one",
                        req.hostname
                    ))
                })?,
            };
            let identity = HostIdentity::new(&host_id, &token.site)
                .map_err(|e| Refusal::BadHostId(e.to_string()))?;
            let held = tx.valid_serials(&host_id, now_ms)?;
            let reported = tx
                .reported_certificate_not_after(&host_id)?
                .is_some_and(|t| t > now_ms);
            if (!held.is_empty() || reported) && !token.may_replace {
                return Err(Refusal::HostTaken(host_id));
            }
            for serial in &held {
                tx.revoke(serial, now_ms, "replaced")?;
            }
            tx.use_token(&token.id)?;
            self.sign_and_record(
                tx,
                &identity,
                &csr.public_key,
                "enrolled",
                Some(token.id.clone()),
            )
        })
    }
}

/// The CA that signs, and what agents get with each certificate.
struct Signing {
    signer: Ca,
    /// The signer's fingerprint, as tokens carry it.
    ca_sha256: [u8; 32],
    /// Every CA the collector trusts, handed to each agent.
    bundle_pem: String,
    /// SHA-256 of the signer's name, as its certificates name their issuer.
    subject_sha256: [u8; 32],
}

impl Signing {
    /// The CA of `key_path`, found among the trusted CAs of `bundle_path`
    /// by its key.
    fn load(bundle_path: &Path, key_path: &Path) -> Result<Self, PkiError> {
        let signer = Ca::load_signer(bundle_path, key_path)?;
        let ca_sha256 = signer.sha256()?;
        let bundle_pem = std::fs::read_to_string(bundle_path).map_err(|source| PkiError::Io {
            path: bundle_path.to_owned(),
            source,
        })?;
        Ok(Self {
            subject_sha256: signer.subject_sha256()?,
            signer,
            ca_sha256,
            bundle_pem,
        })
    }
}

fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}
