//! Agent configuration: TOML parsed, then validated into [`AgentConfig`].
//! Relative paths resolve against the config file's directory.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use campanile_probe::{IcmpSpec, valid_target_name};

use campanile_proto::enrollment::EnrollmentToken;
use campanile_proto::identity;

use crate::spool::SpoolConfig;
use serde::Deserialize;

use campanile_proto::config as loader;
pub use campanile_proto::config::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    identity: RawIdentity,
    collector: RawCollector,
    #[serde(default)]
    enrollment: RawEnrollment,
    #[serde(default)]
    collect: CollectConfig,
    #[serde(default)]
    spool: RawSpool,
    #[serde(default)]
    probes: RawProbes,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    /// Default: the host id of the certificate.
    host_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnrollment {
    token: Option<String>,
    #[serde(default = "default_renew_percent")]
    renew_when_remaining_percent: u8,
}

impl Default for RawEnrollment {
    fn default() -> Self {
        Self {
            token: None,
            renew_when_remaining_percent: default_renew_percent(),
        }
    }
}

/// Half its life: a 30-day certificate is renewed with 15 days left, time
/// for the collector to be down a week and the agent still to renew.
fn default_renew_percent() -> u8 {
    50
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollector {
    endpoint: String,
    server_name: Option<String>,
    #[serde(default = "default_ca_cert_path")]
    ca_cert_path: PathBuf,
    #[serde(default = "default_cert_path")]
    cert_path: PathBuf,
    #[serde(default = "default_key_path")]
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

/// `[spool]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSpool {
    path: PathBuf,
    max_bytes: u64,
    max_age_secs: u64,
    batch_max_reports: usize,
    batch_max_bytes: u64,
}

/// Where the agent keeps its state when the config does not say: the
/// systemd unit's StateDirectory, or ProgramData on Windows. Enrollment
/// writes the certificate there, and the spool lives there.
pub fn state_dir() -> PathBuf {
    #[cfg(windows)]
    if let Some(base) = crate::platform::program_data_dir() {
        return base.join("Campanile");
    }
    if cfg!(windows) {
        let base = std::env::var_os("ProgramData").unwrap_or_else(|| r"C:\ProgramData".into());
        PathBuf::from(base).join("Campanile")
    } else {
        PathBuf::from("/var/lib/campanile-agent")
    }
}

fn default_spool_path() -> PathBuf {
    state_dir().join("spool.redb")
}
fn default_ca_cert_path() -> PathBuf {
    state_dir().join("ca.pem")
}
fn default_cert_path() -> PathBuf {
    state_dir().join("agent.pem")
}
fn default_key_path() -> PathBuf {
    state_dir().join("agent.key")
}

impl Default for RawSpool {
    fn default() -> Self {
        Self {
            path: default_spool_path(),
            // A week-long outage at a 60 s interval is 10,080 reports of
            // 0.3-1 KB (with probes), plus a few full inventories of ~30 KB.
            max_bytes: 32 * 1024 * 1024,
            max_age_secs: 8 * 86_400,
            batch_max_reports: 100,
            batch_max_bytes: 1024 * 1024,
        }
    }
}

/// The durable outbox and how it is drained.
#[derive(Debug, Clone)]
pub struct SendConfig {
    pub spool: SpoolConfig,
    /// Reports per Deliver call (the collector refuses more than its
    /// `limits.max_reports_per_request`, 500 by default).
    pub batch_max_reports: usize,
    /// Encoded bytes per Deliver call before compression; a single larger
    /// report goes alone.
    pub batch_max_bytes: u64,
}

const MIN_SPOOL_BYTES: u64 = 1024 * 1024;

impl SendConfig {
    fn from_raw(raw: RawSpool, path: &Path, interval_secs: u32) -> Result<Self, ConfigError> {
        let invalid = |field, reason: String| ConfigError::invalid(path, field, reason);
        if raw.path.as_os_str().is_empty() {
            return Err(invalid("spool.path", "must not be empty".into()));
        }
        if raw.max_bytes < MIN_SPOOL_BYTES {
            return Err(invalid(
                "spool.max_bytes",
                format!(
                    "{} is too small: at least {MIN_SPOOL_BYTES} (one full inventory must fit)",
                    raw.max_bytes
                ),
            ));
        }
        if raw.max_age_secs < u64::from(interval_secs) {
            return Err(invalid(
                "spool.max_age_secs",
                format!(
                    "{} is shorter than collect.interval_secs ({interval_secs})",
                    raw.max_age_secs
                ),
            ));
        }
        if !(1..=500).contains(&raw.batch_max_reports) {
            return Err(invalid(
                "spool.batch_max_reports",
                "must be between 1 and 500".into(),
            ));
        }
        if !(4096..=16 * 1024 * 1024).contains(&raw.batch_max_bytes) {
            return Err(invalid(
                "spool.batch_max_bytes",
                "must be between 4096 and 16777216".into(),
            ));
        }
        Ok(Self {
            spool: SpoolConfig {
                path: loader::base_dir(path).join(raw.path),
                max_bytes: raw.max_bytes,
                max_age_secs: raw.max_age_secs,
            },
            batch_max_reports: raw.batch_max_reports,
            batch_max_bytes: raw.batch_max_bytes,
        })
    }
}

/// `[probes]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawProbes {
    enabled: bool,
    auto_gateway: bool,
    auto_dns: bool,
    auto_collector: bool,
    icmp_count: u32,
    icmp_interval_ms: u64,
    icmp_timeout_ms: u64,
    tcp_timeout_ms: u64,
    dns_timeout_ms: u64,
    dns_resolvers: Vec<String>,
    max_duty_devices: usize,
    icmp: Vec<RawIcmpTarget>,
    tcp: Vec<RawTcpTarget>,
    dns: Vec<RawDnsTarget>,
}

impl Default for RawProbes {
    fn default() -> Self {
        Self {
            enabled: true,
            auto_gateway: true,
            auto_dns: true,
            auto_collector: true,
            icmp_count: 5,
            icmp_interval_ms: 200,
            icmp_timeout_ms: 1000,
            tcp_timeout_ms: 3000,
            dns_timeout_ms: 2000,
            dns_resolvers: Vec::new(),
            max_duty_devices: 32,
            icmp: Vec::new(),
            tcp: Vec::new(),
            dns: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIcmpTarget {
    name: String,
    address: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTcpTarget {
    name: String,
    /// "host:port" or "[v6]:port".
    address: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDnsTarget {
    name: String,
    query: String,
    /// "ip" or "ip:port"; default: the first resolver of the host.
    resolver: Option<String>,
    #[serde(default)]
    ipv6: bool,
}

/// Target names the agent gives the targets it finds by itself.
pub const AUTO_TARGETS: &[&str] = &["gateway", "gateway6", "dns1", "dns2", "dns3", "collector"];

/// Configured targets, all kinds together: they become label values on the
/// collector, so they are few.
pub const MAX_CONFIGURED_TARGETS: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub struct IcmpTarget {
    pub name: String,
    pub address: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TcpTarget {
    pub name: String,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsTarget {
    pub name: String,
    pub query: String,
    pub resolver: Option<SocketAddr>,
    pub ipv6: bool,
}

/// Validated `[probes]`: what the agent measures of its links each cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeConfig {
    pub enabled: bool,
    /// Ping the default gateways (IPv4 and IPv6) from the routing table.
    pub auto_gateway: bool,
    /// Ping the host's DNS resolvers (or `dns_resolvers`).
    pub auto_dns: bool,
    /// Ping the collector's host.
    pub auto_collector: bool,
    pub icmp: IcmpSpec,
    pub tcp_timeout: Duration,
    pub dns_timeout: Duration,
    /// Resolvers to use instead of the host's own; empty = the host's.
    pub dns_resolvers: Vec<SocketAddr>,
    pub max_duty_devices: usize,
    pub icmp_targets: Vec<IcmpTarget>,
    pub tcp_targets: Vec<TcpTarget>,
    pub dns_targets: Vec<DnsTarget>,
}

impl ProbeConfig {
    /// Probes off: what tests and `once` without a config use.
    pub fn disabled() -> Self {
        let mut p = Self::from_raw(RawProbes::default(), Path::new(""), u32::MAX)
            .unwrap_or_else(|_| unreachable!("the defaults are valid"));
        p.enabled = false;
        p
    }

    /// The longest one probe cycle can take.
    pub fn max_duration(&self) -> Duration {
        self.icmp
            .max_duration()
            .max(self.tcp_timeout)
            .max(self.dns_timeout)
    }

    fn from_raw(raw: RawProbes, path: &Path, interval_secs: u32) -> Result<Self, ConfigError> {
        let invalid =
            |field: &'static str, reason: String| ConfigError::invalid(path, field, reason);
        if raw.icmp_count == 0 || raw.icmp_count > 1000 {
            return Err(invalid(
                "probes.icmp_count",
                "must be between 1 and 100".into(),
            ));
        }
        for (field, v) in [
            ("probes.icmp_interval_ms", raw.icmp_interval_ms),
            ("probes.icmp_timeout_ms", raw.icmp_timeout_ms),
            ("probes.tcp_timeout_ms", raw.tcp_timeout_ms),
            ("probes.dns_timeout_ms", raw.dns_timeout_ms),
        ] {
            if v == 0 || v > 60_000 {
                return Err(invalid(field, "must be between 1 and 60000".into()));
            }
        }
        if raw.max_duty_devices > 64 {
            return Err(invalid("probes.max_duty_devices", "at most 64".into()));
        }
        let mut names: Vec<String> = Vec::new();
        let mut check_name = |field: &'static str, name: &str| -> Result<(), ConfigError> {
            if !valid_target_name(name) {
                return Err(invalid(
                    field,
                    format!("target name {name:?} must be 1-32 of [a-z0-9_-]"),
                ));
            }
            if AUTO_TARGETS.contains(&name) || names.iter().any(|n| n == name) {
                return Err(invalid(
                    field,
                    format!("target name {name:?} is used twice (or is one of {AUTO_TARGETS:?})"),
                ));
            }
            names.push(name.to_owned());
            Ok(())
        };
        let mut icmp_targets = Vec::new();
        for t in &raw.icmp {
            check_name("probes.icmp.name", &t.name)?;
            if t.address.trim().is_empty() {
                return Err(invalid(
                    "probes.icmp.address",
                    format!("target {:?} has no address", t.name),
                ));
            }
            icmp_targets.push(IcmpTarget {
                name: t.name.clone(),
                address: t.address.trim().to_owned(),
            });
        }
        let mut tcp_targets = Vec::new();
        for t in &raw.tcp {
            check_name("probes.tcp.name", &t.name)?;
            let (host, port) = split_host_port(&t.address).ok_or_else(|| {
                invalid(
                    "probes.tcp.address",
                    format!("target {:?}: {:?} is not host:port", t.name, t.address),
                )
            })?;
            tcp_targets.push(TcpTarget {
                name: t.name.clone(),
                host,
                port,
            });
        }
        let mut dns_targets = Vec::new();
        for t in &raw.dns {
            check_name("probes.dns.name", &t.name)?;
            if t.query.trim().is_empty() || t.query.len() > 253 {
                return Err(invalid(
                    "probes.dns.query",
                    format!("target {:?}: the query must be a DNS name", t.name),
                ));
            }
            let resolver = match &t.resolver {
                None => None,
                Some(r) => Some(parse_resolver(r).ok_or_else(|| {
                    invalid(
                        "probes.dns.resolver",
                        format!("target {:?}: {r:?} is not an IP or IP:port", t.name),
                    )
                })?),
            };
            dns_targets.push(DnsTarget {
                name: t.name.clone(),
                query: t.query.trim().to_owned(),
                resolver,
                ipv6: t.ipv6,
            });
        }
        if names.len() > MAX_CONFIGURED_TARGETS {
            return Err(invalid(
                "probes",
                format!(
                    "{} targets configured; at most {MAX_CONFIGURED_TARGETS}",
                    names.len()
                ),
            ));
        }
        let dns_resolvers = raw
            .dns_resolvers
            .iter()
            .map(|r| {
                parse_resolver(r).ok_or_else(|| {
                    invalid(
                        "probes.dns_resolvers",
                        format!("{r:?} is not an IP or IP:port"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if dns_resolvers.len() > 3 {
            return Err(invalid("probes.dns_resolvers", "at most 3".into()));
        }
        let probes = Self {
            enabled: raw.enabled,
            auto_gateway: raw.auto_gateway,
            auto_dns: raw.auto_dns,
            auto_collector: raw.auto_collector,
            icmp: IcmpSpec {
                count: raw.icmp_count,
                interval: Duration::from_millis(raw.icmp_interval_ms),
                timeout: Duration::from_millis(raw.icmp_timeout_ms),
            },
            tcp_timeout: Duration::from_millis(raw.tcp_timeout_ms),
            dns_timeout: Duration::from_millis(raw.dns_timeout_ms),
            dns_resolvers,
            max_duty_devices: raw.max_duty_devices,
            icmp_targets,
            tcp_targets,
            dns_targets,
        };
        // Probes run inside the cycle; they must end well before the next.
        let budget = Duration::from_secs(u64::from(interval_secs)) * 3 / 4;
        if probes.enabled && probes.max_duration() > budget {
            return Err(invalid(
                "probes",
                format!(
                    "one probe cycle can take {} ms, more than 3/4 of collect.interval_secs ({} ms): fewer ICMP packets or shorter timeouts",
                    probes.max_duration().as_millis(),
                    budget.as_millis()
                ),
            ));
        }
        Ok(probes)
    }
}

/// "192.0.2.53", "192.0.2.53:5353", "2001:db8::53", "[2001:db8::53]:53".
pub fn parse_resolver(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Some(sa);
    }
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 53))
}

/// "host:port", "192.0.2.1:443", "[2001:db8::1]:22".
fn split_host_port(text: &str) -> Option<(String, u16)> {
    let text = text.trim();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        (host, port)
    } else {
        let (host, port) = text.rsplit_once(':')?;
        if host.contains(':') {
            return None; // a bare IPv6 address needs brackets
        }
        (host, port)
    };
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

/// Where and how to reach the collector.
#[derive(Debug, Clone)]
pub struct CollectorEndpoint {
    pub endpoint: String,
    /// `host:port` of the endpoint, as enrollment connects to it.
    pub authority: String,
    /// The endpoint's host (name or IP), probed as the "collector" target.
    pub host: String,
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
    /// The host id the certificate must carry; `None`: whatever it carries.
    pub host_id: Option<String>,
    /// Enrolls with this token on the first `run` without a certificate.
    pub enrollment_token: Option<EnrollmentToken>,
    /// Renews the certificate once less than this share of its lifetime
    /// remains (percent).
    pub renew_when_remaining_percent: u8,
    pub collector: CollectorEndpoint,
    pub collect: CollectConfig,
    pub send: SendConfig,
    pub probes: ProbeConfig,
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(&loader::read(path)?, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = loader::parse_toml(text, path)?;
        let invalid = |field, reason: String| ConfigError::invalid(path, field, reason);
        if let Some(h) = &raw.identity.host_id {
            identity::validate_id("host", h)
                .map_err(|e| invalid("identity.host_id", e.to_string()))?;
        }
        if !(1..=90).contains(&raw.enrollment.renew_when_remaining_percent) {
            return Err(invalid(
                "enrollment.renew_when_remaining_percent",
                "must be between 1 and 90".into(),
            ));
        }
        let renew_when_remaining_percent = raw.enrollment.renew_when_remaining_percent;
        let enrollment_token = raw
            .enrollment
            .token
            .as_deref()
            .map(EnrollmentToken::parse)
            .transpose()
            .map_err(|e| invalid("enrollment.token", e.to_string()))?;
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
        let server_name = raw.collector.server_name.unwrap_or_else(|| host.clone());
        let c = &raw.collect;
        if c.interval_secs == 0 || c.interval_secs > 86_400 {
            return Err(invalid(
                "collect.interval_secs",
                "must be between 1 and 86400".into(),
            ));
        }
        if raw.collector.request_timeout_secs == 0 || raw.collector.connect_timeout_secs == 0 {
            return Err(invalid("collector", "timeouts must be positive".into()));
        }
        let probes = ProbeConfig::from_raw(raw.probes, path, c.interval_secs)?;
        let send = SendConfig::from_raw(raw.spool, path, c.interval_secs)?;
        let base = loader::base_dir(path);
        Ok(Self {
            host_id: raw.identity.host_id,
            enrollment_token,
            renew_when_remaining_percent,
            collector: CollectorEndpoint {
                authority: rest.split('/').next().unwrap_or(rest).to_owned(),
                endpoint,
                host,
                server_name,
                ca_cert_path: base.join(raw.collector.ca_cert_path),
                cert_path: base.join(raw.collector.cert_path),
                key_path: base.join(raw.collector.key_path),
                connect_timeout_secs: raw.collector.connect_timeout_secs,
                request_timeout_secs: raw.collector.request_timeout_secs,
            },
            collect: raw.collect,
            send,
            probes,
        })
    }
}

/// `HOST:PORT` (an `https://` before it is allowed) as enrollment takes
/// it: the authority to connect to, and the host to check the
/// collector's certificate for.
pub fn parse_authority(text: &str) -> Option<(String, String)> {
    let rest = text.trim();
    let rest = rest.strip_prefix("https://").unwrap_or(rest);
    let authority = rest.trim_end_matches('/');
    let (host, _port) = split_host_port(authority)?;
    Some((authority.to_owned(), host))
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
    fn probe_defaults_are_on_with_auto_targets() {
        let c = AgentConfig::parse(&cfg("https://x:1"), Path::new("a.toml")).unwrap();
        assert!(
            c.probes.enabled
                && c.probes.auto_gateway
                && c.probes.auto_dns
                && c.probes.auto_collector
        );
        assert_eq!(c.probes.icmp.count, 5);
    }

    #[test]
    fn parses_probe_targets() {
        let text = cfg("https://x:1")
            + r#"
            [probes]
            dns_resolvers = ["192.0.2.53", "[2001:db8::53]:5353"]
            [[probes.icmp]]
            name = "router"
            address = "192.168.1.1"
            [[probes.tcp]]
            name = "centre-web"
            address = "[2001:db8::80]:443"
            [[probes.dns]]
            name = "resolve-centre"
            query = "portal.cst.example"
            "#;
        let c = AgentConfig::parse(&text, Path::new("a.toml")).unwrap();
        assert_eq!(c.probes.dns_resolvers[1].to_string(), "[2001:db8::53]:5353");
        assert_eq!(c.probes.dns_resolvers[0].port(), 53);
        assert_eq!(c.probes.tcp_targets[0].host, "2001:db8::80");
        assert_eq!(c.probes.tcp_targets[0].port, 443);
        assert_eq!(c.probes.dns_targets[0].resolver, None);
    }

    #[test]
    fn rejects_bad_probe_targets() {
        for (extra, needle) in [
            (
                "[[probes.icmp]]\nname = \"Router 1\"\naddress = \"192.0.2.1\"",
                "[a-z0-9_-]",
            ),
            (
                "[[probes.icmp]]\nname = \"gateway\"\naddress = \"192.0.2.1\"",
                "used twice",
            ),
            (
                "[[probes.tcp]]\nname = \"web\"\naddress = \"2001:db8::1:443\"",
                "host:port",
            ),
            (
                "[[probes.tcp]]\nname = \"web\"\naddress = \"host:0\"",
                "host:port",
            ),
            (
                "[[probes.dns]]\nname = \"r\"\nquery = \"x.example\"\nresolver = \"dns.example\"",
                "IP or IP:port",
            ),
            ("[probes]\nicmp_count = 0", "icmp_count"),
            (
                "[probes]\nicmp_count = 100\nicmp_interval_ms = 1000",
                "3/4 of collect.interval_secs",
            ),
        ] {
            let text = format!("{}\n{extra}\n", cfg("https://x:1"));
            let e = AgentConfig::parse(&text, Path::new("a.toml")).unwrap_err();
            assert!(e.to_string().contains(needle), "{extra}: {e}");
        }
    }

    #[test]
    fn rejects_invalid_host_id() {
        let bad = cfg("https://x:1").replace("pc-01", "PC 01");
        let e = AgentConfig::parse(&bad, Path::new("a.toml")).unwrap_err();
        assert!(e.to_string().contains("identity.host_id"), "{e}");
    }
}
