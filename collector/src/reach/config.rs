//! `[probes]`: the target names agents may report, the probe duty, and the
//! centre's own probe of each site's WAN address, parsed ([`RawProbes`])
//! then validated ([`validate`]).

use std::path::Path;
use std::time::Duration;

use campanile_proto::config::ConfigError;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawProbes {
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
        validate(RawProbes::default(), &|f, r| {
            ConfigError::invalid(Path::new("(defaults)"), f, r)
        })
        .unwrap_or_else(|e| unreachable!("the defaults are valid: {e}"))
    }
}

/// Validates `[probes]`; `invalid` makes the error that names the field.
pub fn validate(
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
