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
use crate::enroll::config::{EnrollmentConfig, RawEnrollment};
use crate::exposition::config::ExpositionConfig;
use crate::http::config::{ApiConfig, RawApi};
use crate::ingest::config::{GrpcConfig, RawGrpc, RawTls, TlsConfig};
use crate::ingest::validate::Limits;
use crate::reach::config::{ProbesConfig, RawProbes};

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
    #[serde(default)]
    enrollment: Option<RawEnrollment>,
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
struct RawStore {
    path: PathBuf,
}

fn default_http_listen() -> String {
    "127.0.0.1:9471".into()
}

/// Validated collector configuration.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    pub grpc: GrpcConfig,
    pub tls: TlsConfig,
    pub http_listen: SocketAddr,
    pub store_path: PathBuf,
    pub limits: Limits,
    pub exposition: ExpositionConfig,
    pub territory: TerritoryConfig,
    pub api: ApiConfig,
    pub probes: ProbesConfig,
    pub alerts: AlertsConfig,
    /// Agents may enroll with a token; `None`: every connection must
    /// present a client certificate.
    pub enrollment: Option<EnrollmentConfig>,
}

impl CollectorConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(&loader::read(path)?, path)
    }

    /// Parses `text` as if read from `path` (used to resolve relative paths
    /// and to name the file in errors), and hands each section to the part
    /// that owns it to validate.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = loader::parse_toml(text, path)?;
        let base = loader::base_dir(path);
        let invalid = |field, reason: String| ConfigError::invalid(path, field, reason);
        let http_listen = raw.http.listen_addr.parse::<SocketAddr>().map_err(|e| {
            invalid(
                "http.listen_addr",
                format!("{:?} is not an ip:port address ({e})", raw.http.listen_addr),
            )
        })?;
        let grpc = crate::ingest::config::validate_grpc(raw.grpc, &invalid)?;
        let tls = crate::ingest::config::validate_tls(raw.tls, base);
        let limits = raw.limits.validated(&invalid)?;
        let territory = campanile_territory::config::validate(raw.territory, base, &invalid)?;
        let api = crate::http::config::validate(raw.api, &invalid)?;
        let probes = crate::reach::config::validate(raw.probes, &invalid)?;
        let store_path = base.join(raw.store.path);
        let alerts =
            crate::alerts::config::validate(raw.alerts, base, &store_path, http_listen, &invalid)?;
        let enrollment = raw
            .enrollment
            .map(|e| crate::enroll::config::validate(e, base, &invalid))
            .transpose()?;
        Ok(Self {
            grpc,
            tls,
            http_listen,
            store_path,
            limits,
            exposition: raw.exposition,
            territory,
            api,
            probes,
            alerts,
            enrollment,
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
        assert_eq!(c.tls.ca_cert_path, Path::new("/etc/campanile/pki/ca.pem"));
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
        assert_eq!(c.grpc.listen_backlog, 4096);
        let set = |n: u32| {
            MINIMAL.replace(
                "listen_addr = \"127.0.0.1:9470\"",
                &format!("listen_addr = \"127.0.0.1:9470\"\nlisten_backlog = {n}"),
            )
        };
        let c = CollectorConfig::parse(&set(16384), Path::new("c.toml")).unwrap();
        assert_eq!(c.grpc.listen_backlog, 16384);
        for n in [0, 16, 70_000] {
            let e = CollectorConfig::parse(&set(n), Path::new("c.toml")).unwrap_err();
            assert!(e.to_string().contains("grpc.listen_backlog"), "{n}: {e}");
        }
    }

    #[test]
    fn handshakes_in_progress_are_bounded_by_default_and_the_bound_cannot_be_zero() {
        let c = CollectorConfig::parse(MINIMAL, Path::new("c.toml")).unwrap();
        assert_eq!(c.grpc.max_handshakes_in_progress, 256);
        let set = |n: usize| {
            MINIMAL.replace(
                "listen_addr = \"127.0.0.1:9470\"",
                &format!("listen_addr = \"127.0.0.1:9470\"\nmax_handshakes_in_progress = {n}"),
            )
        };
        let c = CollectorConfig::parse(&set(2000), Path::new("c.toml")).unwrap();
        assert_eq!(c.grpc.max_handshakes_in_progress, 2000);
        for n in [0, 2_000_000] {
            let e = CollectorConfig::parse(&set(n), Path::new("c.toml")).unwrap_err();
            assert!(
                e.to_string().contains("grpc.max_handshakes_in_progress"),
                "{n}: {e}"
            );
        }
    }

    #[test]
    fn the_defences_default_to_an_agents_needs_and_refuse_bounds_no_agent_could_meet() {
        let c = CollectorConfig::parse(MINIMAL, Path::new("c.toml")).unwrap();
        assert_eq!(
            c.grpc.max_connection_buffer_bytes,
            2 * c.grpc.max_message_bytes
        );
        assert_eq!(c.grpc.max_streams_per_connection, 4);
        assert_eq!(
            c.grpc.known_source_ttl,
            Some(std::time::Duration::from_secs(86_400))
        );
        let with = |extra: &str| {
            MINIMAL.replace(
                "listen_addr = \"127.0.0.1:9470\"",
                &format!("listen_addr = \"127.0.0.1:9470\"\n{extra}"),
            )
        };
        let off = CollectorConfig::parse(
            &with("prioritize_known_sources = false"),
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(off.grpc.known_source_ttl, None);
        for (extra, field) in [
            (
                "max_connection_buffer_bytes = 1000",
                "grpc.max_connection_buffer_bytes",
            ),
            (
                "max_inflight_request_bytes = 1000",
                "grpc.max_inflight_request_bytes",
            ),
            (
                "max_connections_per_source = 0",
                "grpc.max_connections_per_source",
            ),
            (
                "client_hello_timeout_ms = 0",
                "grpc.client_hello_timeout_ms",
            ),
            (
                "max_connections_per_identity = 0",
                "grpc.max_connections_per_identity",
            ),
        ] {
            let e = CollectorConfig::parse(&with(extra), Path::new("c.toml")).unwrap_err();
            assert!(e.to_string().contains(field), "{extra}: {e}");
        }
    }
}
