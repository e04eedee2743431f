//! Agent configuration: TOML parsed, then validated into [`AgentConfig`].
//! Relative paths resolve against the config file's directory.

use std::path::{Path, PathBuf};

use campanile_proto::identity;
use serde::Deserialize;

use campanile_proto::config as loader;
pub use campanile_proto::config::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    identity: RawIdentity,
    collector: RawCollector,
    #[serde(default)]
    collect: CollectConfig,
    #[serde(default)]
    queue: QueueConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    host_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollector {
    endpoint: String,
    server_name: Option<String>,
    ca_cert_path: PathBuf,
    cert_path: PathBuf,
    key_path: PathBuf,
    #[serde(default = "default_connect_timeout")]
    connect_timeout_secs: u64,
    #[serde(default = "default_request_timeout")]
    request_timeout_secs: u64,
}

fn default_connect_timeout() -> u64 {
    10
}
fn default_request_timeout() -> u64 {
    30
}

/// What the agent collects and how often.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectConfig {
    pub interval_secs: u32,
    pub max_filesystems: usize,
    pub max_interfaces: usize,
    pub include_virtual_interfaces: bool,
    /// Read the installed-package database (dpkg, rpm) for the inventory.
    pub packages: bool,
    /// Count failed systemd units (runs `systemctl` once per cycle).
    pub systemd_units: bool,
}

impl Default for CollectConfig {
    fn default() -> Self {
        Self {
            interval_secs: 60,
            max_filesystems: 32,
            max_interfaces: 16,
            include_virtual_interfaces: false,
            packages: true,
            systemd_units: true,
        }
    }
}

/// Reports waiting for an acknowledgement. Held in memory for now; the
/// durable spool replaces this queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Oldest reports are dropped (and counted) beyond this.
    pub max_reports: usize,
    /// Reports per Deliver call.
    pub max_batch: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_reports: 1440,
            max_batch: 50,
        }
    }
}

/// Where and how to reach the collector.
#[derive(Debug, Clone)]
pub struct CollectorEndpoint {
    pub endpoint: String,
    pub server_name: String,
    pub ca_cert_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub connect_timeout_secs: u64,
    pub request_timeout_secs: u64,
}

/// Validated agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub host_id: String,
    pub collector: CollectorEndpoint,
    pub collect: CollectConfig,
    pub queue: QueueConfig,
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(&loader::read(path)?, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = loader::parse_toml(text, path)?;
        let invalid = |field, reason: String| ConfigError::invalid(path, field, reason);
        identity::validate_id("host", &raw.identity.host_id)
            .map_err(|e| invalid("identity.host_id", e.to_string()))?;
        let endpoint = raw.collector.endpoint.trim().to_owned();
        // tonic would silently skip TLS for http://; the identity depends on it.
        let Some(rest) = endpoint.strip_prefix("https://") else {
            return Err(invalid(
                "collector.endpoint",
                format!("{endpoint:?} must start with https:// (plain http is refused)"),
            ));
        };
        let host = host_of(rest)
            .ok_or_else(|| invalid("collector.endpoint", format!("{endpoint:?} has no host")))?;
        let server_name = raw.collector.server_name.unwrap_or(host);
        let c = &raw.collect;
        if c.interval_secs == 0 || c.interval_secs > 86_400 {
            return Err(invalid(
                "collect.interval_secs",
                "must be between 1 and 86400".into(),
            ));
        }
        if raw.queue.max_reports == 0 || raw.queue.max_batch == 0 {
            return Err(invalid(
                "queue",
                "max_reports and max_batch must be positive".into(),
            ));
        }
        if raw.collector.request_timeout_secs == 0 || raw.collector.connect_timeout_secs == 0 {
            return Err(invalid("collector", "timeouts must be positive".into()));
        }
        let base = loader::base_dir(path);
        Ok(Self {
            host_id: raw.identity.host_id,
            collector: CollectorEndpoint {
                endpoint,
                server_name,
                ca_cert_path: base.join(raw.collector.ca_cert_path),
                cert_path: base.join(raw.collector.cert_path),
                key_path: base.join(raw.collector.key_path),
                connect_timeout_secs: raw.collector.connect_timeout_secs,
                request_timeout_secs: raw.collector.request_timeout_secs,
            },
            collect: raw.collect,
            queue: raw.queue,
        })
    }
}

/// The host part of `host:port/path`, without IPv6 brackets.
fn host_of(rest: &str) -> Option<String> {
    let authority = rest.split('/').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(endpoint: &str) -> String {
        format!(
            r#"
            [identity]
            host_id = "pc-01"
            [collector]
            endpoint = "{endpoint}"
            ca_cert_path = "ca.pem"
            cert_path = "agent.pem"
            key_path = "agent.key"
            "#
        )
    }

    #[test]
    fn refuses_plain_http_endpoints() {
        let e = AgentConfig::parse(&cfg("http://127.0.0.1:9470"), Path::new("a.toml")).unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
    }

    #[test]
    fn derives_server_name_from_endpoint_host() {
        let c = AgentConfig::parse(
            &cfg("https://collector.cst.example:9470"),
            Path::new("/etc/c/a.toml"),
        )
        .unwrap();
        assert_eq!(c.collector.server_name, "collector.cst.example");
        assert_eq!(c.collector.cert_path, Path::new("/etc/c/agent.pem"));
        let c = AgentConfig::parse(&cfg("https://[::1]:9470"), Path::new("a.toml")).unwrap();
        assert_eq!(c.collector.server_name, "::1");
    }

    #[test]
    fn rejects_invalid_host_id() {
        let bad = cfg("https://x:1").replace("pc-01", "PC 01");
        let e = AgentConfig::parse(&bad, Path::new("a.toml")).unwrap_err();
        assert!(e.to_string().contains("identity.host_id"), "{e}");
    }
}
