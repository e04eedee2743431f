//! Collector configuration: TOML parsed into raw structs, then validated into
//! [`CollectorConfig`]. Relative paths are resolved against the directory of
//! the config file, so a config and its certificates can move together.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use campanile_proto::config as loader;
pub use campanile_proto::config::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    grpc: RawGrpc,
    #[serde(default)]
    http: RawHttp,
    tls: RawTls,
    store: RawStore,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    exposition: ExpositionConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrpc {
    listen_addr: String,
    #[serde(default = "default_max_message_bytes")]
    max_message_bytes: usize,
    #[serde(default = "default_handshake_timeout_secs")]
    handshake_timeout_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default = "default_http_listen")]
    listen_addr: String,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            listen_addr: default_http_listen(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_cert_path: PathBuf,
    cert_path: PathBuf,
    key_path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: PathBuf,
}

/// What one request and one report may carry. Over a limit the request is
/// refused with INVALID_ARGUMENT (RESOURCE_EXHAUSTED for the byte size).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_reports_per_request: usize,
    pub max_filesystems: usize,
    pub max_interfaces: usize,
    pub max_packages: usize,
    pub max_disks: usize,
    pub max_nics: usize,
    pub max_string_bytes: usize,
    /// How far in the future (agent clock vs collector clock) a report's
    /// collection time may be.
    pub max_future_skew_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_reports_per_request: 500,
            max_filesystems: 64,
            max_interfaces: 64,
            max_packages: 20_000,
            max_disks: 64,
            max_nics: 64,
            max_string_bytes: 1024,
            max_future_skew_secs: 300,
        }
    }
}

/// Bounds on what one host contributes to `/metrics` (low cardinality: long
/// lists live in the inventory API, not in labels).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpositionConfig {
    pub max_filesystems_per_host: usize,
    pub max_interfaces_per_host: usize,
}

impl Default for ExpositionConfig {
    fn default() -> Self {
        Self {
            max_filesystems_per_host: 6,
            max_interfaces_per_host: 2,
        }
    }
}

fn default_max_message_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_handshake_timeout_secs() -> u64 {
    10
}
fn default_http_listen() -> String {
    "127.0.0.1:9471".into()
}

/// Validated collector configuration.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    pub grpc_listen: SocketAddr,
    pub max_message_bytes: usize,
    pub handshake_timeout_secs: u64,
    pub http_listen: SocketAddr,
    pub ca_cert_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub store_path: PathBuf,
    pub limits: Limits,
    pub exposition: ExpositionConfig,
}

impl CollectorConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(&loader::read(path)?, path)
    }

    /// Parses `text` as if read from `path` (used to resolve relative paths
    /// and to name the file in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = loader::parse_toml(text, path)?;
        let base = loader::base_dir(path);
        let invalid = |field, reason: String| ConfigError::invalid(path, field, reason);
        let addr = |field, s: &str| {
            s.parse::<SocketAddr>()
                .map_err(|e| invalid(field, format!("{s:?} is not an ip:port address ({e})")))
        };
        let grpc_listen = addr("grpc.listen_addr", &raw.grpc.listen_addr)?;
        let http_listen = addr("http.listen_addr", &raw.http.listen_addr)?;
        if raw.grpc.max_message_bytes < 64 * 1024 {
            return Err(invalid(
                "grpc.max_message_bytes",
                "must be at least 65536".into(),
            ));
        }
        if raw.grpc.handshake_timeout_secs == 0 {
            return Err(invalid(
                "grpc.handshake_timeout_secs",
                "must be positive".into(),
            ));
        }
        if raw.limits.max_reports_per_request == 0 {
            return Err(invalid(
                "limits.max_reports_per_request",
                "must be positive".into(),
            ));
        }
        Ok(Self {
            grpc_listen,
            max_message_bytes: raw.grpc.max_message_bytes,
            handshake_timeout_secs: raw.grpc.handshake_timeout_secs,
            http_listen,
            ca_cert_path: base.join(raw.tls.ca_cert_path),
            cert_path: base.join(raw.tls.cert_path),
            key_path: base.join(raw.tls.key_path),
            store_path: base.join(raw.store.path),
            limits: raw.limits,
            exposition: raw.exposition,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [grpc]
        listen_addr = "127.0.0.1:9470"
        [tls]
        ca_cert_path = "pki/ca.pem"
        cert_path = "pki/server.pem"
        key_path = "pki/server.key"
        [store]
        path = "campanile.db"
    "#;

    #[test]
    fn resolves_relative_paths_against_the_config_directory() {
        let c =
            CollectorConfig::parse(MINIMAL, Path::new("/etc/campanile/collector.toml")).unwrap();
        assert_eq!(c.store_path, Path::new("/etc/campanile/campanile.db"));
        assert_eq!(c.ca_cert_path, Path::new("/etc/campanile/pki/ca.pem"));
        assert_eq!(c.http_listen.port(), 9471);
    }

    #[test]
    fn rejects_unknown_fields_and_bad_addresses_naming_the_field() {
        let unknown = format!("{MINIMAL}\n[extra]\nx = 1\n");
        let e = CollectorConfig::parse(&unknown, Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let bad = MINIMAL.replace("127.0.0.1:9470", "localhost");
        let e = CollectorConfig::parse(&bad, Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("grpc.listen_addr"), "{e}");
    }
}
