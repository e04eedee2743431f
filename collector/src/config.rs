//! Collector configuration: TOML parsed into raw structs, then validated into
//! [`CollectorConfig`]. Relative paths are resolved against the directory of
//! the config file, so a config and its certificates can move together.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use campanile_proto::config as loader;
pub use campanile_proto::config::ConfigError;
use campanile_territory::config::{RawTerritory, TerritoryConfig};
use serde::Deserialize;

use crate::alerts::config::{AlertsConfig, RawAlerts};
use crate::exposition::config::ExpositionConfig;
use crate::http::config::{ApiConfig, RawApi};
use crate::reach::config::{ProbesConfig, RawProbes};
use crate::validate::Limits;

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
    #[serde(default)]
    territory: RawTerritory,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    probes: RawProbes,
    #[serde(default)]
    alerts: RawAlerts,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrpc {
    listen_addr: String,
    #[serde(default = "default_max_message_bytes")]
    max_message_bytes: usize,
    #[serde(default = "default_handshake_timeout_secs")]
    handshake_timeout_secs: u64,
    /// 0: connections stay open as long as the agents keep them.
    #[serde(default)]
    idle_timeout_secs: u64,
    #[serde(default = "default_listen_backlog")]
    listen_backlog: u32,
    #[serde(default = "default_max_handshakes_in_progress")]
    max_handshakes_in_progress: usize,
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
    #[serde(default = "default_session_resumption")]
    session_resumption: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: PathBuf,
}

fn default_max_message_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_handshake_timeout_secs() -> u64 {
    10
}
fn default_listen_backlog() -> u32 {
    4096
}
fn default_max_handshakes_in_progress() -> usize {
    256
}
fn default_session_resumption() -> bool {
    true
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
    /// Close an agent connection once no byte has crossed it for this
    /// long and no request is waiting for its answer; `None` keeps
    /// connections open.
    pub idle_timeout: Option<std::time::Duration>,
    /// Connections the kernel queues before the collector accepts them.
    pub listen_backlog: u32,
    /// TLS handshakes run at once; connections beyond wait their turn.
    pub max_handshakes_in_progress: usize,
    pub http_listen: SocketAddr,
    pub ca_cert_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// TLS 1.3 session tickets (false: every connection makes a full
    /// handshake).
    pub tls_session_resumption: bool,
    pub store_path: PathBuf,
    pub limits: Limits,
    pub exposition: ExpositionConfig,
    pub territory: TerritoryConfig,
    pub api: ApiConfig,
    pub probes: ProbesConfig,
    pub alerts: AlertsConfig,
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
        if !(128..=65_535).contains(&raw.grpc.listen_backlog) {
            return Err(invalid(
                "grpc.listen_backlog",
                format!(
                    "{} is out of range: 128 to 65535 (the kernel caps it at net.core.somaxconn)",
                    raw.grpc.listen_backlog
                ),
            ));
        }
        // The upper end keeps the semaphore below its maximum of permits
        // (tokio panics past it), far beyond any open-files limit.
        if !(1..=1_000_000).contains(&raw.grpc.max_handshakes_in_progress) {
            return Err(invalid(
                "grpc.max_handshakes_in_progress",
                format!(
                    "{} is out of range: 1 to 1000000 (0 would refuse every connection)",
                    raw.grpc.max_handshakes_in_progress
                ),
            ));
        }
        let limits = raw.limits.validated(&invalid)?;
        let territory = campanile_territory::config::validate(raw.territory, base, &invalid)?;
        let api = crate::http::config::validate(raw.api, &invalid)?;
        let probes = crate::reach::config::validate(raw.probes, &invalid)?;
        let store_path = base.join(raw.store.path);
        let alerts =
            crate::alerts::config::validate(raw.alerts, base, &store_path, http_listen, &invalid)?;
        Ok(Self {
            grpc_listen,
            max_message_bytes: raw.grpc.max_message_bytes,
            handshake_timeout_secs: raw.grpc.handshake_timeout_secs,
            idle_timeout: (raw.grpc.idle_timeout_secs > 0)
                .then(|| std::time::Duration::from_secs(raw.grpc.idle_timeout_secs)),
            listen_backlog: raw.grpc.listen_backlog,
            max_handshakes_in_progress: raw.grpc.max_handshakes_in_progress,
            http_listen,
            ca_cert_path: base.join(raw.tls.ca_cert_path),
            cert_path: base.join(raw.tls.cert_path),
            key_path: base.join(raw.tls.key_path),
            tls_session_resumption: raw.tls.session_resumption,
            store_path,
            limits,
            exposition: raw.exposition,
            territory,
            api,
            probes,
            alerts,
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

    #[test]
    fn listen_backlog_defaults_to_somaxconns_default_and_refuses_a_tiny_queue() {
        let c = CollectorConfig::parse(MINIMAL, Path::new("c.toml")).unwrap();
        assert_eq!(c.listen_backlog, 4096);
        let set = |n: u32| {
            MINIMAL.replace(
                "listen_addr = \"127.0.0.1:9470\"",
                &format!("listen_addr = \"127.0.0.1:9470\"\nlisten_backlog = {n}"),
            )
        };
        let c = CollectorConfig::parse(&set(16384), Path::new("c.toml")).unwrap();
        assert_eq!(c.listen_backlog, 16384);
        for n in [0, 16, 70_000] {
            let e = CollectorConfig::parse(&set(n), Path::new("c.toml")).unwrap_err();
            assert!(e.to_string().contains("grpc.listen_backlog"), "{n}: {e}");
        }
    }

    #[test]
    fn handshakes_in_progress_are_bounded_by_default_and_the_bound_cannot_be_zero() {
        let c = CollectorConfig::parse(MINIMAL, Path::new("c.toml")).unwrap();
        assert_eq!(c.max_handshakes_in_progress, 256);
        let set = |n: usize| {
            MINIMAL.replace(
                "listen_addr = \"127.0.0.1:9470\"",
                &format!("listen_addr = \"127.0.0.1:9470\"\nmax_handshakes_in_progress = {n}"),
            )
        };
        let c = CollectorConfig::parse(&set(2000), Path::new("c.toml")).unwrap();
        assert_eq!(c.max_handshakes_in_progress, 2000);
        for n in [0, 2_000_000] {
            let e = CollectorConfig::parse(&set(n), Path::new("c.toml")).unwrap_err();
            assert!(
                e.to_string().contains("grpc.max_handshakes_in_progress"),
                "{n}: {e}"
            );
        }
    }
}
