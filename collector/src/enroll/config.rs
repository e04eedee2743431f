//! `[enrollment]`: agents trade a token for a certificate on the gRPC
//! port. Without this section the port requires a client certificate of
//! every connection, as before.

use std::path::{Path, PathBuf};
use std::time::Duration;

use campanile_proto::config::ConfigError;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnrollment {
    ca_key_path: PathBuf,
    #[serde(default = "default_certificate_lifetime_secs")]
    certificate_lifetime_secs: u64,
    #[serde(default)]
    advertised_endpoint: Option<String>,
    #[serde(default = "default_max_failed_attempts_per_source")]
    max_failed_attempts_per_source: u32,
    #[serde(default = "default_failed_attempts_window_secs")]
    failed_attempts_window_secs: u64,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
}

/// 30 days: short enough that a lost certificate soon stops mattering,
/// long enough that an agent renewing at half its life survives two weeks
/// away from the collector.
fn default_certificate_lifetime_secs() -> u64 {
    30 * 86_400
}
fn default_max_failed_attempts_per_source() -> u32 {
    10
}
fn default_failed_attempts_window_secs() -> u64 {
    600
}
/// A territory's first morning: hundreds of PCs enrolling within minutes,
/// each connection open for one call.
fn default_max_connections() -> usize {
    512
}

/// Validated `[enrollment]`.
#[derive(Debug, Clone)]
pub struct EnrollmentConfig {
    /// The key of the CA that signs agents' certificates; its certificate
    /// is one of `tls.ca_cert_path`'s.
    pub ca_key_path: PathBuf,
    pub certificate_lifetime: Duration,
    /// Where agents reach the gRPC port, for the install commands
    /// `enroll new` prints.
    pub advertised_endpoint: Option<String>,
    /// Refused attempts from one source (IPv4 address, IPv6 /64) within
    /// `failed_attempts_window`, after which its attempts are refused
    /// unread until the window has passed.
    pub max_failed_attempts_per_source: u32,
    pub failed_attempts_window: Duration,
    /// Connections without a client certificate held at once; beyond,
    /// new ones are closed.
    pub max_connections: usize,
}

/// Ten seconds is for tests of renewal; a certificate may not outlive
/// what browsers accept of a server's (825 days).
const LIFETIME_SECS: std::ops::RangeInclusive<u64> = 10..=825 * 86_400;

pub fn validate(
    raw: RawEnrollment,
    base: &Path,
    invalid: &dyn Fn(&'static str, String) -> ConfigError,
) -> Result<EnrollmentConfig, ConfigError> {
    if !LIFETIME_SECS.contains(&raw.certificate_lifetime_secs) {
        return Err(invalid(
            "enrollment.certificate_lifetime_secs",
            format!(
                "{} is out of range: from {} to {} (825 days)",
                raw.certificate_lifetime_secs,
                LIFETIME_SECS.start(),
                LIFETIME_SECS.end()
            ),
        ));
    }
    if raw.max_failed_attempts_per_source == 0 {
        return Err(invalid(
            "enrollment.max_failed_attempts_per_source",
            "must be at least 1".into(),
        ));
    }
    if raw.failed_attempts_window_secs == 0 {
        return Err(invalid(
            "enrollment.failed_attempts_window_secs",
            "must be at least 1".into(),
        ));
    }
    if raw.max_connections == 0 {
        return Err(invalid(
            "enrollment.max_connections",
            "must be at least 1".into(),
        ));
    }
    if let Some(e) = &raw.advertised_endpoint
        && (e.is_empty() || e.contains("://") || !e.contains(':'))
    {
        return Err(invalid(
            "enrollment.advertised_endpoint",
            format!("{e:?} is not HOST:PORT"),
        ));
    }
    Ok(EnrollmentConfig {
        ca_key_path: base.join(raw.ca_key_path),
        certificate_lifetime: Duration::from_secs(raw.certificate_lifetime_secs),
        advertised_endpoint: raw.advertised_endpoint,
        max_failed_attempts_per_source: raw.max_failed_attempts_per_source,
        failed_attempts_window: Duration::from_secs(raw.failed_attempts_window_secs),
        max_connections: raw.max_connections,
    })
}
