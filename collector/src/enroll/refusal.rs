//! Why an enrollment was refused: the label that counts it and the
//! status the agent gets.

use crate::pki::PkiError;
use crate::store::StoreError;

/// Why an enrollment was refused; its label counts it in
/// `campanile_enrollments_total{result}`.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("too many refused attempts from this address; try again later")]
    RateLimited,
    #[error("unknown enrollment token")]
    UnknownToken,
    #[error("the enrollment token has expired")]
    TokenExpired,
    #[error("the enrollment token is used up")]
    TokenUsedUp,
    #[error("the enrollment token was revoked")]
    TokenRevoked,
    #[error("bad CSR: {0}")]
    BadCsr(String),
    #[error("bad host id: {0}")]
    BadHostId(String),
    #[error("the CSR asks for a name beyond one host and one site: {0}")]
    ExtraSan(String),
    #[error("the CSR asks for site {asked:?}, not {expected:?}")]
    WrongSite { asked: String, expected: String },
    #[error("the CSR asks for host {asked:?}, the certificate presented is for {expected:?}")]
    WrongHost { asked: String, expected: String },
    #[error("the CSR is for the key of the certificate presented: renew with a new key")]
    SameKey,
    #[error("the certificate presented is revoked: it cannot renew; enroll again with a new token")]
    Revoked,
    #[error("the certificate presented carries no host identity: {0}")]
    Unauthenticated(String),
    #[error("the CSR asks for a CA certificate")]
    CaRequested,
    #[error("weak key: {0}")]
    WeakKey(String),
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    #[error(
        "host id {0:?} holds a valid certificate: revoke it first (`campanile-collector pki \
         revoke --host`), or use a token made with --replace"
    )]
    HostTaken(String),
    #[error("cannot record the enrollment now: {0}")]
    Store(#[from] StoreError),
    #[error("cannot sign the certificate: {0}")]
    Sign(#[from] PkiError),
}

impl Refusal {
    pub fn reason_label(&self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::UnknownToken => "unknown_token",
            Self::TokenExpired => "token_expired",
            Self::TokenUsedUp => "token_used_up",
            Self::TokenRevoked => "token_revoked",
            Self::BadCsr(_) => "bad_csr",
            Self::BadHostId(_) => "bad_host_id",
            Self::ExtraSan(_) => "extra_san",
            Self::WrongSite { .. } => "wrong_site",
            Self::WrongHost { .. } => "wrong_host",
            Self::SameKey => "same_key",
            Self::Revoked => "revoked",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::CaRequested => "ca_requested",
            Self::WeakKey(_) => "weak_key",
            Self::UnsupportedKey(_) => "unsupported_key",
            Self::HostTaken(_) => "host_taken",
            Self::Store(_) => "store_error",
            Self::Sign(_) => "signing_failed",
        }
    }

    /// Refusals of the token itself: what guessing produces, so they are
    /// counted against the source.
    pub fn is_token_failure(&self) -> bool {
        matches!(
            self,
            Self::UnknownToken | Self::TokenExpired | Self::TokenUsedUp | Self::TokenRevoked
        )
    }

    pub fn status(&self) -> tonic::Status {
        let msg = self.to_string();
        match self {
            Self::RateLimited => tonic::Status::resource_exhausted(msg),
            Self::UnknownToken | Self::TokenExpired | Self::TokenUsedUp | Self::TokenRevoked => {
                tonic::Status::permission_denied(msg)
            }
            Self::BadCsr(_)
            | Self::BadHostId(_)
            | Self::ExtraSan(_)
            | Self::WrongSite { .. }
            | Self::WrongHost { .. }
            | Self::SameKey
            | Self::CaRequested
            | Self::WeakKey(_)
            | Self::UnsupportedKey(_) => tonic::Status::invalid_argument(msg),
            Self::HostTaken(_) => tonic::Status::already_exists(msg),
            Self::Revoked => tonic::Status::permission_denied(msg),
            Self::Unauthenticated(_) => tonic::Status::unauthenticated(msg),
            Self::Store(_) => tonic::Status::unavailable(msg),
            Self::Sign(_) => tonic::Status::internal(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_label_is_pre_registered() {
        use super::Refusal;
        let all = [
            Refusal::RateLimited,
            Refusal::UnknownToken,
            Refusal::TokenExpired,
            Refusal::TokenUsedUp,
            Refusal::TokenRevoked,
            Refusal::BadCsr(String::new()),
            Refusal::BadHostId(String::new()),
            Refusal::ExtraSan(String::new()),
            Refusal::WrongSite {
                asked: String::new(),
                expected: String::new(),
            },
            Refusal::CaRequested,
            Refusal::WeakKey(String::new()),
            Refusal::UnsupportedKey(String::new()),
            Refusal::HostTaken(String::new()),
            Refusal::Store(crate::store::StoreError::Shared {
                message: String::new(),
            }),
            Refusal::Sign(crate::pki::PkiError::Pem(String::new())),
        ];
        for r in &all {
            assert!(
                crate::telemetry::ENROLLMENT_RESULTS.contains(&r.reason_label()),
                "{}",
                r.reason_label()
            );
        }
        assert_eq!(
            crate::telemetry::ENROLLMENT_RESULTS.len(),
            all.len() + 1,
            "and ok"
        );
        let renewal = [
            Refusal::WrongHost {
                asked: String::new(),
                expected: String::new(),
            },
            Refusal::SameKey,
            Refusal::Revoked,
            Refusal::Unauthenticated(String::new()),
        ];
        for r in all.iter().chain(&renewal) {
            // Token refusals and rate limits do not happen to renewals.
            if r.is_token_failure() || matches!(r, Refusal::RateLimited | Refusal::HostTaken(_)) {
                continue;
            }
            assert!(
                crate::telemetry::RENEWAL_RESULTS.contains(&r.reason_label()),
                "{}",
                r.reason_label()
            );
        }
    }
}
