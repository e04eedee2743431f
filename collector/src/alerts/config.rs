//! `[alerts]`: rules and their thresholds, grouping, receivers, the
//! Alertmanager sink and maintenance windows, parsed then validated.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use campanile_proto::config::ConfigError;

use super::maintenance::{Scope, Window};
use super::timefmt;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawAlerts {
    enabled: bool,
    evaluation_interval_secs: u64,
    state_path: Option<PathBuf>,
    external_url: Option<String>,
    group_by: Vec<String>,
    group_wait_secs: u64,
    group_interval_secs: u64,
    repeat_interval_secs: u64,
    daily_digest_at_utc: String,
    outbox_max_age_secs: u64,
    retry_initial_secs: u64,
    retry_max_secs: u64,
    rules: RawRules,
    receivers: Vec<RawReceiver>,
    alertmanager: Vec<RawAlertmanager>,
    maintenance: Vec<RawWindow>,
}

impl Default for RawAlerts {
    fn default() -> Self {
        Self {
            enabled: true,
            evaluation_interval_secs: 15,
            state_path: None,
            external_url: None,
            group_by: vec!["alertname".into(), "comune".into()],
            // Alertmanager's defaults.
            group_wait_secs: 30,
            group_interval_secs: 300,
            repeat_interval_secs: 4 * 3600,
            daily_digest_at_utc: "07:00".into(),
            // A long weekend of a receiver being down.
            outbox_max_age_secs: 3 * 86_400,
            retry_initial_secs: 5,
            retry_max_secs: 300,
            rules: RawRules::default(),
            receivers: Vec::new(),
            alertmanager: Vec::new(),
            maintenance: Vec::new(),
        }
    }
}

/// One rule's settings; every field is optional and a rule takes only the
/// thresholds that apply to it (others are refused by name).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    enabled: Option<bool>,
    for_secs: Option<u64>,
    severity: Option<String>,
    used_percent: Option<f64>,
    max_loss_percent: Option<f64>,
    max_rtt_ms: Option<f64>,
    targets: Option<Vec<String>>,
    max_offset_secs: Option<u64>,
    within_days: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRules {
    host_down: RawRule,
    site_dark: RawRule,
    site_hosts_silent: RawRule,
    filesystem_full: RawRule,
    link_degraded: RawRule,
    device_down: RawRule,
    os_end_of_life: RawRule,
    unplanned_host: RawRule,
    clock_skew: RawRule,
    certificate_expiry: RawRule,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReceiver {
    name: String,
    url: String,
    signing_secret_file: Option<PathBuf>,
    ca_cert_path: Option<PathBuf>,
    #[serde(default = "default_timeout_secs")]
    timeout_secs: u64,
    #[serde(default = "default_true")]
    send_resolved: bool,
    #[serde(default)]
    max_alerts: usize,
    #[serde(default)]
    severities: Vec<String>,
    #[serde(default)]
    istat_codes: Vec<String>,
    #[serde(default)]
    sites: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertmanager {
    url: String,
    ca_cert_path: Option<PathBuf>,
    #[serde(default = "default_timeout_secs")]
    timeout_secs: u64,
    #[serde(default = "default_resend_secs")]
    resend_interval_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    site: Option<String>,
    istat_code: Option<String>,
    starts_at: String,
    ends_at: String,
    #[serde(default)]
    reason: String,
}

fn default_timeout_secs() -> u64 {
    10
}
fn default_resend_secs() -> u64 {
    60
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Critical,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::Warning => "warning",
            Self::Info => "info",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "critical" => Some(Self::Critical),
            "warning" => Some(Self::Warning),
            "info" => Some(Self::Info),
            _ => None,
        }
    }
}

/// What every rule has.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub enabled: bool,
    /// How long the condition must hold before the alert fires.
    pub for_: Duration,
    pub severity: Severity,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// A host silent for 3 of its intervals (then `for_`).
    pub host_down: Rule,
    /// Every host of a site silent and its WAN address unreachable.
    pub site_dark: Rule,
    /// Every host of a site silent while its line answers (or has no WAN
    /// address to probe).
    pub site_hosts_silent: Rule,
    pub filesystem_full: Rule,
    pub filesystem_used_percent: f64,
    pub link_degraded: Rule,
    pub link_max_loss_ratio: f64,
    pub link_max_rtt: Duration,
    pub link_targets: BTreeSet<String>,
    pub device_down: Rule,
    /// Sent in the daily digest, never on its own.
    pub os_end_of_life: Rule,
    pub unplanned_host: Rule,
    pub clock_skew: Rule,
    pub clock_max_offset: Duration,
    pub certificate_expiry: Rule,
    pub certificate_within: Duration,
}

/// Where a receiver's notifications go and which alerts it wants.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub name: String,
    pub url: String,
    /// HMAC-SHA256 key; see the README ("Alert webhooks") for the headers.
    pub signing_secret: Option<Vec<u8>>,
    pub ca_cert_path: Option<PathBuf>,
    pub timeout: Duration,
    pub send_resolved: bool,
    /// 0 = no limit; beyond it alerts are left out and counted in
    /// `truncatedAlerts`.
    pub max_alerts: usize,
    /// Empty = every value.
    pub severities: BTreeSet<Severity>,
    pub istat_codes: BTreeSet<String>,
    pub sites: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct AlertmanagerSink {
    /// Base URL; alerts go to `<url>/api/v2/alerts`.
    pub url: String,
    pub ca_cert_path: Option<PathBuf>,
    pub timeout: Duration,
    pub resend_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct AlertsConfig {
    pub enabled: bool,
    pub evaluation_interval: Duration,
    pub state_path: PathBuf,
    /// Base of the links in alerts (`generatorURL`, annotation `link`).
    pub external_url: String,
    pub group_by: Vec<String>,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    /// Minutes after midnight UTC.
    pub daily_digest_minute: u32,
    pub outbox_max_age: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub rules: Rules,
    pub receivers: Vec<Receiver>,
    pub alertmanagers: Vec<AlertmanagerSink>,
    pub maintenance: Vec<Window>,
}

impl AlertsConfig {
    /// The defaults for a collector whose store and HTTP side are these.
    pub fn defaults(store_path: &Path, http_listen: std::net::SocketAddr) -> Self {
        validate(
            RawAlerts::default(),
            Path::new("/"),
            store_path,
            http_listen,
            &|f, r| ConfigError::invalid(Path::new("(defaults)"), f, r),
        )
        .unwrap_or_else(|e| unreachable!("the defaults are valid: {e}"))
    }
}

/// Next to the store: `campanile.db` → `campanile-alerts.db`.
fn default_state_path(store_path: &Path) -> PathBuf {
    let stem = store_path
        .file_stem()
        .map_or_else(|| "campanile".into(), |s| s.to_string_lossy().into_owned());
    store_path.with_file_name(format!("{stem}-alerts.db"))
}

pub(crate) fn validate(
    raw: RawAlerts,
    base: &Path,
    store_path: &Path,
    http_listen: std::net::SocketAddr,
    invalid: &impl Fn(&'static str, String) -> ConfigError,
) -> Result<AlertsConfig, ConfigError> {
    for (field, v) in [
        (
            "alerts.evaluation_interval_secs",
            raw.evaluation_interval_secs,
        ),
        ("alerts.group_interval_secs", raw.group_interval_secs),
        ("alerts.repeat_interval_secs", raw.repeat_interval_secs),
        ("alerts.outbox_max_age_secs", raw.outbox_max_age_secs),
        ("alerts.retry_initial_secs", raw.retry_initial_secs),
        ("alerts.retry_max_secs", raw.retry_max_secs),
    ] {
        if v == 0 {
            return Err(invalid(field, "must be positive".into()));
        }
    }
    if raw.retry_max_secs < raw.retry_initial_secs {
        return Err(invalid(
            "alerts.retry_max_secs",
            "must be at least retry_initial_secs".into(),
        ));
    }
    if raw.group_by.is_empty() {
        return Err(invalid(
            "alerts.group_by",
            "needs at least one label".into(),
        ));
    }
    let daily_digest_minute = parse_hh_mm(&raw.daily_digest_at_utc).ok_or_else(|| {
        invalid(
            "alerts.daily_digest_at_utc",
            format!("{:?} is not HH:MM", raw.daily_digest_at_utc),
        )
    })?;
    let external_url = match raw.external_url {
        Some(u) => {
            check_url(&u).map_err(|r| invalid("alerts.external_url", r))?;
            u.trim_end_matches('/').to_owned()
        }
        None => format!("http://{http_listen}"),
    };
    let rules = validate_rules(raw.rules, invalid)?;
    let mut receivers: Vec<Receiver> = Vec::new();
    for r in raw.receivers {
        let name = r.name.trim().to_owned();
        if !valid_name(&name) {
            return Err(invalid(
                "alerts.receivers.name",
                format!("{name:?} must be 1-64 of [A-Za-z0-9_.-]"),
            ));
        }
        if receivers.iter().any(|x| x.name == name) {
            return Err(invalid(
                "alerts.receivers.name",
                format!("receiver {name} is listed twice"),
            ));
        }
        check_url(&r.url).map_err(|e| invalid("alerts.receivers.url", format!("{name}: {e}")))?;
        if r.timeout_secs == 0 || r.timeout_secs > 300 {
            return Err(invalid(
                "alerts.receivers.timeout_secs",
                format!("{name}: must be between 1 and 300"),
            ));
        }
        let signing_secret = match r.signing_secret_file {
            None => None,
            Some(p) => {
                let p = base.join(p);
                let text = std::fs::read(&p).map_err(|e| {
                    invalid(
                        "alerts.receivers.signing_secret_file",
                        format!("{name}: cannot read {}: {e}", p.display()),
                    )
                })?;
                let secret = text.trim_ascii().to_vec();
                if secret.len() < 16 {
                    return Err(invalid(
                        "alerts.receivers.signing_secret_file",
                        format!("{name}: {} holds fewer than 16 bytes", p.display()),
                    ));
                }
                Some(secret)
            }
        };
        let mut severities = BTreeSet::new();
        for s in &r.severities {
            severities.insert(Severity::parse(s).ok_or_else(|| {
                invalid(
                    "alerts.receivers.severities",
                    format!("{name}: {s:?} is not one of: critical, warning, info"),
                )
            })?);
        }
        receivers.push(Receiver {
            name,
            url: r.url,
            signing_secret,
            ca_cert_path: r.ca_cert_path.map(|p| base.join(p)),
            timeout: Duration::from_secs(r.timeout_secs),
            send_resolved: r.send_resolved,
            max_alerts: r.max_alerts,
            severities,
            istat_codes: r.istat_codes.into_iter().collect(),
            sites: r.sites.into_iter().collect(),
        });
    }
    let mut alertmanagers = Vec::new();
    for a in raw.alertmanager {
        check_url(&a.url).map_err(|e| invalid("alerts.alertmanager.url", e))?;
        if a.timeout_secs == 0 || a.timeout_secs > 300 {
            return Err(invalid(
                "alerts.alertmanager.timeout_secs",
                "must be between 1 and 300".into(),
            ));
        }
        if a.resend_interval_secs == 0 {
            return Err(invalid(
                "alerts.alertmanager.resend_interval_secs",
                "must be positive".into(),
            ));
        }
        alertmanagers.push(AlertmanagerSink {
            url: a.url.trim_end_matches('/').to_owned(),
            ca_cert_path: a.ca_cert_path.map(|p| base.join(p)),
            timeout: Duration::from_secs(a.timeout_secs),
            resend_interval: Duration::from_secs(a.resend_interval_secs),
        });
    }
    let mut maintenance = Vec::new();
    for (i, w) in raw.maintenance.into_iter().enumerate() {
        let at = |field: &'static str, s: &str| {
            timefmt::parse_rfc3339_ms(s).ok_or_else(|| {
                invalid(
                    field,
                    format!("window {}: {s:?} is not an RFC 3339 time", i + 1),
                )
            })
        };
        let starts_ms = at("alerts.maintenance.starts_at", &w.starts_at)?;
        let ends_ms = at("alerts.maintenance.ends_at", &w.ends_at)?;
        let scope = Scope::new(w.site, w.istat_code)
            .map_err(|r| invalid("alerts.maintenance", format!("window {}: {r}", i + 1)))?;
        if ends_ms <= starts_ms {
            return Err(invalid(
                "alerts.maintenance.ends_at",
                format!("window {}: must be after starts_at", i + 1),
            ));
        }
        maintenance.push(Window {
            id: -(i as i64) - 1,
            scope,
            starts_ms,
            ends_ms,
            reason: w.reason,
            created_by: "config".into(),
        });
    }
    Ok(AlertsConfig {
        enabled: raw.enabled,
        evaluation_interval: Duration::from_secs(raw.evaluation_interval_secs),
        state_path: raw
            .state_path
            .map_or_else(|| default_state_path(store_path), |p| base.join(p)),
        external_url,
        group_by: raw.group_by,
        group_wait: Duration::from_secs(raw.group_wait_secs),
        group_interval: Duration::from_secs(raw.group_interval_secs),
        repeat_interval: Duration::from_secs(raw.repeat_interval_secs),
        daily_digest_minute,
        outbox_max_age: Duration::from_secs(raw.outbox_max_age_secs),
        retry_initial: Duration::from_secs(raw.retry_initial_secs),
        retry_max: Duration::from_secs(raw.retry_max_secs),
        rules,
        receivers,
        alertmanagers,
        maintenance,
    })
}

fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn check_url(u: &str) -> Result<(), String> {
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .ok_or_else(|| format!("{u:?} must start with http:// or https://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{u:?} has no host"));
    }
    Ok(())
}

fn parse_hh_mm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && s.len() == 5).then_some(h * 60 + m)
}

struct RuleDefaults {
    for_secs: u64,
    severity: Severity,
}

fn validate_rules(
    raw: RawRules,
    invalid: &impl Fn(&'static str, String) -> ConfigError,
) -> Result<Rules, ConfigError> {
    // Which extra thresholds each rule takes.
    const NONE: &[&str] = &[];
    let rule = |name: &'static str,
                r: &RawRule,
                d: RuleDefaults,
                extras: &[&str]|
     -> Result<Rule, ConfigError> {
        let given = [
            ("used_percent", r.used_percent.is_some()),
            ("max_loss_percent", r.max_loss_percent.is_some()),
            ("max_rtt_ms", r.max_rtt_ms.is_some()),
            ("targets", r.targets.is_some()),
            ("max_offset_secs", r.max_offset_secs.is_some()),
            ("within_days", r.within_days.is_some()),
        ];
        if let Some((field, _)) = given.iter().find(|(f, set)| *set && !extras.contains(f)) {
            return Err(invalid(
                "alerts.rules",
                format!("{name}: {field} does not apply to this rule"),
            ));
        }
        let severity = match &r.severity {
            None => d.severity,
            Some(s) => Severity::parse(s).ok_or_else(|| {
                invalid(
                    "alerts.rules",
                    format!("{name}: severity {s:?} is not one of: critical, warning, info"),
                )
            })?,
        };
        Ok(Rule {
            enabled: r.enabled.unwrap_or(true),
            for_: Duration::from_secs(r.for_secs.unwrap_or(d.for_secs)),
            severity,
        })
    };
    use Severity::{Critical, Info, Warning};
    let d = |for_secs, severity| RuleDefaults { for_secs, severity };
    let used_percent = raw.filesystem_full.used_percent.unwrap_or(90.0);
    if !(used_percent > 0.0 && used_percent <= 100.0) {
        return Err(invalid(
            "alerts.rules",
            "filesystem_full: used_percent must be above 0 and at most 100".into(),
        ));
    }
    let loss = raw.link_degraded.max_loss_percent.unwrap_or(5.0);
    if !(loss > 0.0 && loss <= 100.0) {
        return Err(invalid(
            "alerts.rules",
            "link_degraded: max_loss_percent must be above 0 and at most 100".into(),
        ));
    }
    let rtt = raw.link_degraded.max_rtt_ms.unwrap_or(300.0);
    if !(rtt.is_finite() && rtt > 0.0) {
        return Err(invalid(
            "alerts.rules",
            "link_degraded: max_rtt_ms must be above 0".into(),
        ));
    }
    let targets: BTreeSet<String> = match &raw.link_degraded.targets {
        Some(t) => t.iter().cloned().collect(),
        None => ["gateway", "gateway6", "collector", "centre"]
            .map(String::from)
            .into(),
    };
    let offset = raw.clock_skew.max_offset_secs.unwrap_or(60);
    // A week: an enrolled agent's 30-day certificate renews with 15 days
    // left, so this fires only for one that has failed to renew for eight
    // days (30 would fire for every enrolled agent, always), and still
    // leaves a week to act.
    let within = raw.certificate_expiry.within_days.unwrap_or(7);
    if offset == 0 || within == 0 {
        return Err(invalid(
            "alerts.rules",
            "clock_skew.max_offset_secs and certificate_expiry.within_days must be positive".into(),
        ));
    }
    Ok(Rules {
        host_down: rule("host_down", &raw.host_down, d(900, Warning), NONE)?,
        site_dark: rule("site_dark", &raw.site_dark, d(300, Critical), NONE)?,
        site_hosts_silent: rule(
            "site_hosts_silent",
            &raw.site_hosts_silent,
            d(600, Warning),
            NONE,
        )?,
        filesystem_full: rule(
            "filesystem_full",
            &raw.filesystem_full,
            d(1800, Warning),
            &["used_percent"],
        )?,
        filesystem_used_percent: used_percent,
        link_degraded: rule(
            "link_degraded",
            &raw.link_degraded,
            d(900, Warning),
            &["max_loss_percent", "max_rtt_ms", "targets"],
        )?,
        link_max_loss_ratio: loss / 100.0,
        link_max_rtt: Duration::from_secs_f64(rtt / 1000.0),
        link_targets: targets,
        device_down: rule("device_down", &raw.device_down, d(600, Warning), NONE)?,
        os_end_of_life: rule("os_end_of_life", &raw.os_end_of_life, d(0, Info), NONE)?,
        unplanned_host: rule("unplanned_host", &raw.unplanned_host, d(600, Info), NONE)?,
        clock_skew: rule(
            "clock_skew",
            &raw.clock_skew,
            d(900, Warning),
            &["max_offset_secs"],
        )?,
        clock_max_offset: Duration::from_secs(offset),
        certificate_expiry: rule(
            "certificate_expiry",
            &raw.certificate_expiry,
            d(0, Warning),
            &["within_days"],
        )?,
        certificate_within: Duration::from_secs(within * 86_400),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AlertsConfig, ConfigError> {
        let raw: RawAlerts = toml::from_str(text)
            .map_err(|e| ConfigError::invalid(Path::new("t.toml"), "alerts", e.to_string()))?;
        validate(
            raw,
            Path::new("/etc/campanile"),
            Path::new("/var/lib/campanile/campanile.db"),
            "127.0.0.1:9471".parse().unwrap(),
            &|f, r| ConfigError::invalid(Path::new("t.toml"), f, r),
        )
    }

    #[test]
    fn defaults_follow_alertmanager_and_sit_next_to_the_store() {
        let c = parse("").unwrap();
        assert_eq!(c.group_wait, Duration::from_secs(30));
        assert_eq!(c.group_interval, Duration::from_secs(300));
        assert_eq!(c.repeat_interval, Duration::from_secs(14_400));
        assert_eq!(c.group_by, ["alertname", "comune"]);
        assert_eq!(
            c.state_path,
            Path::new("/var/lib/campanile/campanile-alerts.db")
        );
        assert_eq!(c.external_url, "http://127.0.0.1:9471");
        assert_eq!(c.daily_digest_minute, 7 * 60);
        assert_eq!(c.rules.site_dark.severity, Severity::Critical);
    }

    #[test]
    fn refuses_thresholds_that_do_not_apply_and_bad_receivers() {
        let e = parse("[rules.host_down]\nused_percent = 80\n").unwrap_err();
        assert!(e.to_string().contains("host_down: used_percent"), "{e}");
        let e = parse("[[receivers]]\nname = \"chat\"\nurl = \"ftp://x\"\n").unwrap_err();
        assert!(e.to_string().contains("http://"), "{e}");
        let e = parse("[[receivers]]\nname = \"a\"\nurl = \"http://x\"\nseverities = [\"page\"]\n")
            .unwrap_err();
        assert!(e.to_string().contains("\"page\""), "{e}");
        let e = parse(
            "[[receivers]]\nname = \"a\"\nurl = \"http://x\"\nsigning_secret_file = \"/nonexistent/s\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/s"), "{e}");
        let e = parse("daily_digest_at_utc = \"7am\"").unwrap_err();
        assert!(e.to_string().contains("HH:MM"), "{e}");
    }

    #[test]
    fn maintenance_windows_need_one_scope_and_an_end_after_the_start() {
        let ok = parse(
            "[[maintenance]]\nsite = \"s1\"\nstarts_at = \"2026-11-22T08:00:00Z\"\nends_at = \"2026-11-22T10:00:00+01:00\"\n",
        )
        .unwrap();
        let w = &ok.maintenance[0];
        assert_eq!(w.ends_ms - w.starts_ms, 3_600_000);
        let e = parse(
            "[[maintenance]]\nsite = \"s1\"\nistat_code = \"001\"\nstarts_at = \"2026-11-22T08:00:00Z\"\nends_at = \"2026-11-22T09:00:00Z\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("either"), "{e}");
        let e = parse(
            "[[maintenance]]\nsite = \"s1\"\nstarts_at = \"2026-11-22T08:00:00Z\"\nends_at = \"2026-11-22T07:00:00Z\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("after starts_at"), "{e}");
    }
}
