//! How an enrollment token is written, shared by the collector that makes
//! it and the agent that uses it.
//!
//! ```text
//! cmp1.<id>.<secret>.<ca-sha256>
//! ```
//!
//! - `id`: 8 hex digits, public: the token's name in `enroll list`.
//! - `secret`: 32 hex digits (128 random bits); the collector keeps only
//!   the SHA-256 of the credential `<id>.<secret>`.
//! - `ca-sha256`: 64 hex digits, the SHA-256 of the DER of the CA that
//!   signed the collector's certificate. The agent checks the collector's
//!   chain against it before it sends the credential, as kubeadm's
//!   discovery hash does, so a technician pastes one string and nothing
//!   can stand in for the collector.

use std::fmt;

use crate::{hex, sha256, unhex};

pub const TOKEN_PREFIX: &str = "cmp1";
const ID_HEX: usize = 8;
const SECRET_HEX: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "not an enrollment token: expected {TOKEN_PREFIX}.<8 hex>.<32 hex>.<64 hex> \
         (from `campanile-collector enroll new`)"
    )]
    Format,
}

/// A token as written.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrollmentToken {
    pub id: String,
    pub secret: String,
    pub ca_sha256: [u8; 32],
}

impl EnrollmentToken {
    /// A token from its parts: `id` of 4 bytes, `secret` of 16.
    pub fn new(id: [u8; 4], secret: [u8; 16], ca_sha256: [u8; 32]) -> Self {
        Self {
            id: hex(&id),
            secret: hex(&secret),
            ca_sha256,
        }
    }

    /// Reads a token as pasted (surrounding blanks are ignored).
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let mut parts = text.trim().split('.');
        let (Some(TOKEN_PREFIX), Some(id), Some(secret), Some(ca), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Format);
        };
        let ca_sha256: [u8; 32] = unhex(ca).ok_or(TokenError::Format)?;
        unhex::<4>(id).ok_or(TokenError::Format)?;
        unhex::<16>(secret).ok_or(TokenError::Format)?;
        if id.len() != ID_HEX || secret.len() != SECRET_HEX {
            return Err(TokenError::Format);
        }
        Ok(Self {
            id: id.to_ascii_lowercase(),
            secret: secret.to_ascii_lowercase(),
            ca_sha256,
        })
    }

    /// What the agent sends: `<id>.<secret>`.
    pub fn credential(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

/// Splits a credential as the agent sent it into its id and the SHA-256
/// the collector keeps of it.
pub fn parse_credential(credential: &str) -> Option<(String, [u8; 32])> {
    let (id, secret) = credential.split_once('.')?;
    if id.len() != ID_HEX || secret.len() != SECRET_HEX {
        return None;
    }
    unhex::<4>(id)?;
    unhex::<16>(secret)?;
    let normal = credential.to_ascii_lowercase();
    Some((id.to_ascii_lowercase(), credential_sha256(&normal)))
}

/// SHA-256 of a credential `<id>.<secret>` in lower case.
pub fn credential_sha256(credential: &str) -> [u8; 32] {
    sha256(credential.as_bytes())
}

/// SHA-256 of a certificate's DER: a CA's fingerprint, as `openssl x509
/// -fingerprint -sha256` prints it (without the colons).
pub fn certificate_sha256(der: &[u8]) -> [u8; 32] {
    sha256(der)
}

impl fmt::Display for EnrollmentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TOKEN_PREFIX}.{}.{}.{}",
            self.id,
            self.secret,
            hex(&self.ca_sha256)
        )
    }
}

/// Never prints the secret (tokens end up in logs through `{:?}`).
impl fmt::Debug for EnrollmentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollmentToken")
            .field("id", &self.id)
            .field("ca_sha256", &hex(&self.ca_sha256))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_its_credential_hashes_as_the_collector_keeps_it() {
        let t = EnrollmentToken::new([0xab, 1, 2, 3], [7; 16], [0x5a; 32]);
        let text = t.to_string();
        assert_eq!(text.len(), 4 + 1 + 8 + 1 + 32 + 1 + 64);
        let back = EnrollmentToken::parse(&format!(
            "  {}\n",
            text.to_uppercase().replace("CMP1", "cmp1")
        ))
        .unwrap();
        assert_eq!(back, t);
        let (id, sha) = parse_credential(&t.credential()).unwrap();
        assert_eq!(id, "ab010203");
        assert_eq!(sha, credential_sha256(&t.credential()));
        assert!(
            !format!("{t:?}").contains(&t.secret),
            "Debug shows the secret"
        );
    }

    #[test]
    fn anything_else_is_refused_as_not_a_token() {
        let good = EnrollmentToken::new([1; 4], [2; 16], [3; 32]).to_string();
        for bad in [
            String::new(),
            good.replacen("cmp1", "cmp2", 1),
            format!("{good}.x"),
            good[..good.len() - 1].to_owned(),
            good.replacen('.', ".g", 1),
        ] {
            assert_eq!(
                EnrollmentToken::parse(&bad),
                Err(TokenError::Format),
                "{bad}"
            );
        }
        assert_eq!(parse_credential("0102.0304"), None);
        assert_eq!(
            parse_credential(&format!("{}.{}", "0".repeat(8), "z".repeat(32))),
            None
        );
    }
}
