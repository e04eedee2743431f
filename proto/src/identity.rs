//! How a host's identity is written in its client certificate.
//!
//! The certificate is the identity: the collector takes the host id and the
//! site from the certificate it verified, never from the payload. Both are
//! written as URI subject alternative names:
//!
//! ```text
//! urn:campanile:host:<host-id>
//! urn:campanile:site:<site-id>
//! ```
//!
//! and the subject common name repeats the host id for people reading the
//! certificate. Exactly one host URI and one site URI must be present.
//! Ids are 1..=63 characters of `a-z 0-9 . _ -`, starting with a letter or
//! digit: safe in file names, URIs, metric labels and log lines.

use std::fmt;

pub const HOST_URI_PREFIX: &str = "urn:campanile:host:";
pub const SITE_URI_PREFIX: &str = "urn:campanile:site:";
pub const MAX_ID_LEN: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("{kind} id {id:?} is invalid: {reason}")]
    InvalidId {
        kind: &'static str,
        id: String,
        reason: &'static str,
    },
    #[error("certificate has no {0} URI (expected {1}<id>)")]
    Missing(&'static str, &'static str),
    #[error("certificate has more than one {0} URI")]
    Duplicate(&'static str),
}

/// Who a verified certificate says the peer is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostIdentity {
    pub host_id: String,
    pub site: String,
}

impl HostIdentity {
    pub fn new(host_id: &str, site: &str) -> Result<Self, IdentityError> {
        validate_id("host", host_id)?;
        validate_id("site", site)?;
        Ok(Self {
            host_id: host_id.to_owned(),
            site: site.to_owned(),
        })
    }

    /// The URI SANs to put in this host's certificate.
    pub fn san_uris(&self) -> [String; 2] {
        [
            format!("{HOST_URI_PREFIX}{}", self.host_id),
            format!("{SITE_URI_PREFIX}{}", self.site),
        ]
    }

    /// Reads the identity back from a certificate's URI SANs.
    pub fn from_san_uris<'a>(
        uris: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, IdentityError> {
        let (mut host, mut site) = (None, None);
        for uri in uris {
            if let Some(id) = uri.strip_prefix(HOST_URI_PREFIX) {
                if host.replace(id).is_some() {
                    return Err(IdentityError::Duplicate("host"));
                }
            } else if let Some(id) = uri.strip_prefix(SITE_URI_PREFIX)
                && site.replace(id).is_some()
            {
                return Err(IdentityError::Duplicate("site"));
            }
        }
        let host = host.ok_or(IdentityError::Missing("host", HOST_URI_PREFIX))?;
        let site = site.ok_or(IdentityError::Missing("site", SITE_URI_PREFIX))?;
        Self::new(host, site)
    }
}

impl fmt::Display for HostIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (site {})", self.host_id, self.site)
    }
}

/// Checks the id syntax shared by hosts and sites.
pub fn validate_id(kind: &'static str, id: &str) -> Result<(), IdentityError> {
    let err = |reason| {
        Err(IdentityError::InvalidId {
            kind,
            id: id.to_owned(),
            reason,
        })
    };
    if id.is_empty() {
        return err("empty");
    }
    if id.len() > MAX_ID_LEN {
        return err("longer than 63 characters");
    }
    if !id.as_bytes()[0].is_ascii_alphanumeric() {
        return err("must start with a letter or digit");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    {
        return err("only a-z, 0-9, '.', '_' and '-' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_san_uris() {
        let id = HostIdentity::new("pc-01.comune-x", "municipio_x").unwrap();
        let uris = id.san_uris();
        let back = HostIdentity::from_san_uris(uris.iter().map(String::as_str)).unwrap();
        assert_eq!(id, back);
    }

    #[test]
    fn ignores_unrelated_uris_and_refuses_missing_or_duplicate_parts() {
        let ok = [
            "https://x",
            "urn:campanile:site:s1",
            "urn:campanile:host:h1",
        ];
        assert_eq!(HostIdentity::from_san_uris(ok).unwrap().host_id, "h1");
        assert_eq!(
            HostIdentity::from_san_uris(["urn:campanile:site:s1"]),
            Err(IdentityError::Missing("host", HOST_URI_PREFIX))
        );
        let dup = [
            "urn:campanile:host:a",
            "urn:campanile:host:b",
            "urn:campanile:site:s",
        ];
        assert_eq!(
            HostIdentity::from_san_uris(dup),
            Err(IdentityError::Duplicate("host"))
        );
    }

    #[test]
    fn rejects_ids_that_would_break_labels_or_paths() {
        for bad in ["", "-x", "Upper", "a/b", "a b", "é", &"x".repeat(64)] {
            assert!(validate_id("host", bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "0", "pc-01", "srv.comune_x", &"x".repeat(63)] {
            validate_id("host", good).unwrap();
        }
    }
}
