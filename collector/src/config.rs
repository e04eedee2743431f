//! Collector configuration: TOML parsed into raw structs, then validated into
//! [`CollectorConfig`]. Relative paths are resolved against the directory of
//! the config file, so a config and its certificates can move together.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    #[serde(default)]
    territory: RawTerritory,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    probes: RawProbes,
    #[serde(default)]
    alerts: crate::alerts::config::RawAlerts,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawProbes {
    targets: Vec<String>,
    duty_agents_per_site: usize,
    plan_refresh_secs: u64,
    wan: RawWan,
}

impl Default for RawProbes {
    fn default() -> Self {
        Self {
            targets: DEFAULT_PROBE_TARGETS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            duty_agents_per_site: 2,
            plan_refresh_secs: 30,
            wan: RawWan::default(),
        }
    }
}

/// The agents' own target names plus the usual extras of a comune's setup.
pub const DEFAULT_PROBE_TARGETS: &[&str] = &[
    "gateway",
    "gateway6",
    "dns1",
    "dns2",
    "dns3",
    "collector",
    "router",
    "centre",
    "internet",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawWan {
    enabled: bool,
    interval_secs: u64,
    method: String,
    tcp_port: Option<u16>,
    icmp_count: u32,
    icmp_interval_ms: u64,
    icmp_timeout_ms: u64,
    tcp_timeout_ms: u64,
    max_concurrent: usize,
}

impl Default for RawWan {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 60,
            method: "icmp".into(),
            tcp_port: None,
            icmp_count: 5,
            icmp_interval_ms: 200,
            icmp_timeout_ms: 1000,
            tcp_timeout_ms: 3000,
            max_concurrent: 64,
        }
    }
}

/// How the centre probes each site's WAN address.
#[derive(Debug, Clone, PartialEq)]
pub enum WanMethod {
    Icmp(campanile_probe::IcmpSpec),
    Tcp { port: u16, timeout: Duration },
}

#[derive(Debug, Clone, PartialEq)]
pub struct WanConfig {
    pub enabled: bool,
    pub interval: Duration,
    pub method: WanMethod,
    /// Sites probed at once.
    pub max_concurrent: usize,
}

/// Validated `[probes]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbesConfig {
    /// Target names the agents' results may carry; others are ignored and
    /// counted, so agents cannot add label values on their own.
    pub targets: std::collections::BTreeSet<String>,
    /// Agents of a site that probe its devices (a device is up if any of
    /// them reaches it).
    pub duty_agents_per_site: usize,
    /// How often duty and site assignment are recomputed.
    pub plan_refresh: Duration,
    pub wan: WanConfig,
}

impl Default for ProbesConfig {
    fn default() -> Self {
        validate_probes(RawProbes::default(), &|f, r| {
            ConfigError::invalid(Path::new("(defaults)"), f, r)
        })
        .unwrap_or_else(|e| unreachable!("the defaults are valid: {e}"))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTerritory {
    register_path: Option<PathBuf>,
    eol_catalog_path: Option<PathBuf>,
    #[serde(default = "default_missing_after_days")]
    missing_after_days: u32,
    #[serde(default = "default_reload_check_secs")]
    reload_check_secs: u64,
    #[serde(default)]
    hardware: HardwareThresholds,
    #[serde(default)]
    score: ScoreWeights,
}

impl Default for RawTerritory {
    fn default() -> Self {
        Self {
            register_path: None,
            eol_catalog_path: None,
            missing_after_days: default_missing_after_days(),
            reload_check_secs: default_reload_check_secs(),
            hardware: HardwareThresholds::default(),
            score: ScoreWeights::default(),
        }
    }
}

fn default_missing_after_days() -> u32 {
    14
}
fn default_reload_check_secs() -> u64 {
    10
}

/// Below these a host is "under spec" (see the README, "Gaps").
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HardwareThresholds {
    /// RAM as installed; the OS reports a little less, so a host counts as
    /// short below 90% of it.
    pub min_memory_mib: u64,
    /// System disk size in decimal gigabytes, as disks are sold.
    pub min_system_disk_gb: u64,
    /// A filesystem is nearly full from this share of its size in use.
    pub nearly_full_percent: f64,
    /// Hardware older than this (BIOS date, else first seen) is under spec.
    pub max_hardware_age_years: u32,
    /// Flag Windows client hosts that cannot run Windows 11.
    pub check_windows_11: bool,
}

impl Default for HardwareThresholds {
    fn default() -> Self {
        Self {
            min_memory_mib: 8192,
            min_system_disk_gb: 120,
            nearly_full_percent: 90.0,
            max_hardware_age_years: 8,
            check_windows_11: true,
        }
    }
}

/// Weights of the parts of `campanile_comune_gap_score`; only their ratios
/// matter (the score divides by their sum).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScoreWeights {
    pub missing: f64,
    pub offline: f64,
    pub os_eol: f64,
    pub under_spec: f64,
    pub nearly_full: f64,
    pub unplanned: f64,
}

impl Default for ScoreWeights {
    fn default() -> Self {
        Self {
            missing: 0.30,
            offline: 0.20,
            os_eol: 0.25,
            under_spec: 0.15,
            nearly_full: 0.05,
            unplanned: 0.05,
        }
    }
}

impl ScoreWeights {
    pub fn parts(&self) -> [(&'static str, f64); 6] {
        [
            ("missing", self.missing),
            ("offline", self.offline),
            ("os_eol", self.os_eol),
            ("under_spec", self.under_spec),
            ("nearly_full", self.nearly_full),
            ("unplanned", self.unplanned),
        ]
    }
}

/// Where the register and the catalog come from and how gaps are judged.
#[derive(Debug, Clone)]
pub struct TerritoryConfig {
    /// Without a register every host is unplanned and no asset is missing.
    pub register_path: Option<PathBuf>,
    /// Without it the catalog built into the binary is used.
    pub eol_catalog_path: Option<PathBuf>,
    pub missing_after_days: u32,
    pub reload_check_secs: u64,
    pub hardware: HardwareThresholds,
    pub score: ScoreWeights,
}

impl Default for TerritoryConfig {
    fn default() -> Self {
        let raw = RawTerritory::default();
        Self {
            register_path: None,
            eol_catalog_path: None,
            missing_after_days: raw.missing_after_days,
            reload_check_secs: raw.reload_check_secs,
            hardware: raw.hardware,
            score: raw.score,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    #[serde(default)]
    protect_metrics: bool,
    #[serde(default)]
    tokens: Vec<RawToken>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    /// SHA-256 of the token, hex: the config never holds the secret itself.
    sha256: String,
    #[serde(default = "default_role")]
    role: String,
}

fn default_role() -> String {
    "read".into()
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every GET.
    Read,
    /// Read, and set or end maintenance windows.
    Maintain,
}

#[derive(Debug, Clone)]
pub struct ApiToken {
    pub name: String,
    pub sha256: [u8; 32],
    pub role: Role,
}

/// Who may read the API (and `/metrics` when `protect_metrics` is set).
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    pub protect_metrics: bool,
    pub tokens: Vec<ApiToken>,
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
    pub alerts: crate::alerts::AlertsConfig,
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
        if raw.limits.max_reports_per_request == 0 {
            return Err(invalid(
                "limits.max_reports_per_request",
                "must be positive".into(),
            ));
        }
        let territory = validate_territory(raw.territory, base, &invalid)?;
        let api = validate_api(raw.api, &invalid)?;
        let probes = validate_probes(raw.probes, &invalid)?;
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
            limits: raw.limits,
            exposition: raw.exposition,
            territory,
            api,
            probes,
            alerts,
        })
    }
}

fn validate_probes(
    raw: RawProbes,
    invalid: &impl Fn(&'static str, String) -> ConfigError,
) -> Result<ProbesConfig, ConfigError> {
    if raw.targets.len() > 32 {
        return Err(invalid("probes.targets", "at most 32 names".into()));
    }
    if let Some(bad) = raw
        .targets
        .iter()
        .find(|t| !campanile_probe::valid_target_name(t))
    {
        return Err(invalid(
            "probes.targets",
            format!("{bad:?} must be 1-32 of [a-z0-9_-]"),
        ));
    }
    if raw.duty_agents_per_site == 0 || raw.duty_agents_per_site > 16 {
        return Err(invalid(
            "probes.duty_agents_per_site",
            "must be between 1 and 16".into(),
        ));
    }
    if raw.plan_refresh_secs == 0 {
        return Err(invalid(
            "probes.plan_refresh_secs",
            "must be positive".into(),
        ));
    }
    let w = raw.wan;
    if w.interval_secs == 0 {
        return Err(invalid(
            "probes.wan.interval_secs",
            "must be positive".into(),
        ));
    }
    if w.max_concurrent == 0 {
        return Err(invalid(
            "probes.wan.max_concurrent",
            "must be positive".into(),
        ));
    }
    for (field, v) in [
        ("probes.wan.icmp_interval_ms", w.icmp_interval_ms),
        ("probes.wan.icmp_timeout_ms", w.icmp_timeout_ms),
        ("probes.wan.tcp_timeout_ms", w.tcp_timeout_ms),
    ] {
        if v == 0 || v > 60_000 {
            return Err(invalid(field, "must be between 1 and 60000".into()));
        }
    }
    if w.icmp_count == 0 || w.icmp_count > 100 {
        return Err(invalid(
            "probes.wan.icmp_count",
            "must be between 1 and 100".into(),
        ));
    }
    let interval = Duration::from_secs(w.interval_secs);
    let method = match (w.method.as_str(), w.tcp_port) {
        ("icmp", None) => {
            let spec = campanile_probe::IcmpSpec {
                count: w.icmp_count,
                interval: Duration::from_millis(w.icmp_interval_ms),
                timeout: Duration::from_millis(w.icmp_timeout_ms),
            };
            if spec.max_duration() >= interval {
                return Err(invalid(
                    "probes.wan",
                    "one ICMP probe would outlast interval_secs".into(),
                ));
            }
            WanMethod::Icmp(spec)
        }
        ("icmp", Some(_)) => {
            return Err(invalid(
                "probes.wan.tcp_port",
                "only with method = \"tcp\"".into(),
            ));
        }
        ("tcp", Some(port)) if port != 0 => WanMethod::Tcp {
            port,
            timeout: Duration::from_millis(w.tcp_timeout_ms),
        },
        ("tcp", _) => {
            return Err(invalid(
                "probes.wan.tcp_port",
                "method = \"tcp\" needs a port (1-65535)".into(),
            ));
        }
        (other, _) => {
            return Err(invalid(
                "probes.wan.method",
                format!("{other:?} is not one of: icmp, tcp"),
            ));
        }
    };
    Ok(ProbesConfig {
        targets: raw.targets.into_iter().collect(),
        duty_agents_per_site: raw.duty_agents_per_site,
        plan_refresh: Duration::from_secs(raw.plan_refresh_secs),
        wan: WanConfig {
            enabled: w.enabled,
            interval,
            method,
            max_concurrent: w.max_concurrent,
        },
    })
}

fn validate_territory(
    raw: RawTerritory,
    base: &Path,
    invalid: &impl Fn(&'static str, String) -> ConfigError,
) -> Result<TerritoryConfig, ConfigError> {
    let h = &raw.hardware;
    if !(h.nearly_full_percent > 0.0 && h.nearly_full_percent <= 100.0) {
        return Err(invalid(
            "territory.hardware.nearly_full_percent",
            "must be above 0 and at most 100".into(),
        ));
    }
    if raw.missing_after_days == 0 {
        return Err(invalid(
            "territory.missing_after_days",
            "must be positive".into(),
        ));
    }
    if raw.reload_check_secs == 0 {
        return Err(invalid(
            "territory.reload_check_secs",
            "must be positive".into(),
        ));
    }
    let parts = raw.score.parts();
    if let Some((name, _)) = parts.iter().find(|(_, w)| !(w.is_finite() && *w >= 0.0)) {
        return Err(invalid(
            "territory.score",
            format!("weight {name} must be a number of 0 or more"),
        ));
    }
    if parts.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 {
        return Err(invalid(
            "territory.score",
            "at least one weight must be above 0".into(),
        ));
    }
    Ok(TerritoryConfig {
        register_path: raw.register_path.map(|p| base.join(p)),
        eol_catalog_path: raw.eol_catalog_path.map(|p| base.join(p)),
        missing_after_days: raw.missing_after_days,
        reload_check_secs: raw.reload_check_secs,
        hardware: raw.hardware,
        score: raw.score,
    })
}

fn validate_api(
    raw: RawApi,
    invalid: &impl Fn(&'static str, String) -> ConfigError,
) -> Result<ApiConfig, ConfigError> {
    let mut tokens = Vec::with_capacity(raw.tokens.len());
    for t in raw.tokens {
        let name = t.name.trim().to_owned();
        if name.is_empty() {
            return Err(invalid("api.tokens.name", "must not be empty".into()));
        }
        let sha256 = parse_sha256(&t.sha256).ok_or_else(|| {
            invalid(
                "api.tokens.sha256",
                format!(
                    "token {name}: must be 64 hex digits (see `campanile-collector token new`)"
                ),
            )
        })?;
        let role = match t.role.as_str() {
            "read" => Role::Read,
            "maintain" => Role::Maintain,
            other => {
                return Err(invalid(
                    "api.tokens.role",
                    format!("token {name}: role {other:?} is not one of: read, maintain"),
                ));
            }
        };
        if tokens.iter().any(|x: &ApiToken| x.name == name) {
            return Err(invalid(
                "api.tokens.name",
                format!("token {name} is listed twice"),
            ));
        }
        tokens.push(ApiToken { name, sha256, role });
    }
    if raw.protect_metrics && tokens.is_empty() {
        return Err(invalid(
            "api.protect_metrics",
            "needs at least one token in [[api.tokens]]".into(),
        ));
    }
    Ok(ApiConfig {
        protect_metrics: raw.protect_metrics,
        tokens,
    })
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
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
