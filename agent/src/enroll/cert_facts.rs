//! What the agent reads of its own certificate: the identity it carries
//! (its URI SANs, through rustls' webpki) and when it is valid.
//!
//! webpki does not expose the validity, and x509-parser would add more to
//! a router's binary than the whole of this module's job; the validity
//! sits at a fixed place in the DER (RFC 5280, 4.1), so it is read here.

use std::path::Path;

use campanile_proto::identity::HostIdentity;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Bad {
        path: std::path::PathBuf,
        message: String,
    },
}

/// An agent certificate's identity and validity (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    pub identity: HostIdentity,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
}

impl CertFacts {
    /// Reads the first certificate of a PEM file.
    pub fn read(path: &Path) -> Result<Self, CertError> {
        let pem = std::fs::read(path).map_err(|source| CertError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_pem(&pem).map_err(|message| CertError::Bad {
            path: path.to_owned(),
            message,
        })
    }

    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let der =
            CertificateDer::from_pem_slice(pem).map_err(|e| format!("no certificate: {e}"))?;
        Self::from_der(&der)
    }

    pub fn from_der(der: &CertificateDer<'_>) -> Result<Self, String> {
        let cert = webpki::EndEntityCert::try_from(der)
            .map_err(|e| format!("not a usable certificate: {e}"))?;
        let identity =
            HostIdentity::from_san_uris(cert.valid_uri_names()).map_err(|e| e.to_string())?;
        let (not_before_ms, not_after_ms) =
            validity(der.as_ref()).ok_or("its validity does not parse")?;
        Ok(Self {
            identity,
            not_before_ms,
            not_after_ms,
        })
    }
}

/// One DER element: its tag, its contents and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |l, &b| (l << 8) | usize::from(b));
        rest = &rest[n..];
        len
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const EXPLICIT_0: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// notBefore and notAfter (Unix ms) of a DER certificate:
/// Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
/// OPTIONAL, serialNumber INTEGER, signature SEQUENCE, issuer SEQUENCE,
/// validity SEQUENCE { notBefore Time, notAfter Time }, ... }, ... }
fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (SEQUENCE, cert, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    let (mut tag, _, mut rest) = element(tbs)?;
    if tag == EXPLICIT_0 {
        (tag, _, rest) = element(rest)?;
    }
    if tag != INTEGER {
        return None;
    }
    for _ in 0..2 {
        let (SEQUENCE, _, r) = element(rest)? else {
            return None;
        };
        rest = r;
    }
    let (SEQUENCE, validity, _) = element(rest)? else {
        return None;
    };
    let (t1, before, r) = element(validity)?;
    let (t2, after, _) = element(r)?;
    Some((time_ms(t1, before)?, time_ms(t2, after)?))
}

/// UTCTime `YYMMDDHHMMSSZ` (years 1950-2049) or GeneralizedTime
/// `YYYYMMDDHHMMSSZ`, as RFC 5280 requires them (UTC, seconds, no
/// fractions).
fn time_ms(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |s: &str| s.parse::<i64>().ok();
    let (year, rest) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy = num(&digits[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (num(&digits[..4])?, &digits[4..]),
        _ => return None,
    };
    let (month, day) = (num(&rest[..2])?, num(&rest[2..4])?);
    let (h, m, s) = (num(&rest[4..6])?, num(&rest[6..8])?, num(&rest[8..10])?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((((days * 24 + h) * 60 + m) * 60 + s) * 1000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(not_before: time::OffsetDateTime, not_after: time::OffsetDateTime) -> String {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::default();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(ca, &ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        for uri in HostIdentity::new("pc-01.m", "m").unwrap().san_uris() {
            p.subject_alt_names
                .push(rcgen::SanType::URI(uri.as_str().try_into().unwrap()));
        }
        p.not_before = not_before;
        p.not_after = not_after;
        p.signed_by(&key, &issuer).unwrap().pem()
    }

    #[test]
    fn reads_the_identity_and_validity_an_agent_certificate_carries() {
        let before = time::macros::datetime!(2026-12-03 17:20:05 UTC);
        // Past 2049: written as GeneralizedTime.
        let after = time::macros::datetime!(2051-03-01 00:00:00 UTC);
        let facts = CertFacts::from_pem(cert(before, after).as_bytes()).unwrap();
        assert_eq!(facts.identity, HostIdentity::new("pc-01.m", "m").unwrap());
        assert_eq!(
            facts.not_before_ms,
            before.unix_timestamp() * 1000,
            "UTCTime"
        );
        assert_eq!(facts.not_after_ms, after.unix_timestamp() * 1000);
    }

    #[test]
    fn times_outside_the_rules_are_refused() {
        assert_eq!(time_ms(UTC_TIME, b"700101000000Z"), Some(0));
        assert_eq!(time_ms(UTC_TIME, b"491231235959Z"), Some(2_524_607_999_000));
        for bad in [
            &b"700101000000"[..],
            b"7001010000Z",
            b"701301000000Z",
            b"70010100000aZ",
        ] {
            assert_eq!(time_ms(UTC_TIME, bad), None, "{bad:?}");
        }
        assert_eq!(time_ms(GENERALIZED_TIME, b"700101000000Z"), None);
        assert_eq!(validity(b"\x30\x03\x02\x01\x00"), None);
    }
}
