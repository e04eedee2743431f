//! Checks a delivered batch before anything is stored. Every refusal says
//! which report and why, so a technician can act on the agent's log line.

use campanile_proto::config::ConfigError;
use campanile_proto::identity::{HostIdentity, validate_id};
use campanile_proto::v1::{AgentStats, DeliverRequest, Health, Inventory, Probes, Report};
use serde::Deserialize;

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
    /// How old a report may be when sent, by the agent's own clock (its
    /// collection time against the request's send time), so an agent
    /// whose clock is off is judged by its own reckoning.
    pub max_report_age_secs: u64,
    /// How far an agent's clock may be from the collector's, as its send
    /// time shows; beyond, the offset is recorded as this bound.
    pub max_clock_offset_secs: u64,
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
            // Far beyond the agent spool's default age bound (8 days).
            max_report_age_secs: 366 * 86_400,
            max_clock_offset_secs: 366 * 86_400,
        }
    }
}

impl Limits {
    /// Refuses limits no request could meet; `invalid` names the field.
    pub fn validated(
        self,
        invalid: &impl Fn(&'static str, String) -> ConfigError,
    ) -> Result<Self, ConfigError> {
        if self.max_reports_per_request == 0 {
            return Err(invalid(
                "limits.max_reports_per_request",
                "must be positive".into(),
            ));
        }
        for (field, v) in [
            ("limits.max_report_age_secs", self.max_report_age_secs),
            ("limits.max_clock_offset_secs", self.max_clock_offset_secs),
        ] {
            // Beyond, the millisecond arithmetic would saturate.
            if !(60..=100 * 366 * 86_400).contains(&v) {
                return Err(invalid(
                    field,
                    format!("{v} is out of range: 60 s to 100 years"),
                ));
            }
        }
        Ok(self)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("report seq={seq} claims host {claimed:?} but the certificate is for {actual:?}")]
    WrongHost {
        seq: u64,
        claimed: String,
        actual: String,
    },
    #[error("empty request: no reports")]
    Empty,
    #[error("{count} reports in one request; at most {max} are accepted")]
    TooManyReports { count: usize, max: usize },
    #[error("report seq={seq}: {reason}")]
    Invalid { seq: u64, reason: String },
}

impl Refusal {
    /// The `reason` label of the rejection counter.
    pub fn reason_label(&self) -> &'static str {
        match self {
            Refusal::WrongHost { .. } => "wrong_host",
            Refusal::Empty | Refusal::TooManyReports { .. } => "bad_request",
            Refusal::Invalid { .. } => "invalid_report",
        }
    }
}

/// Validates a whole request for the host of `identity` at collector time
/// `now_ms`; `clock` is [`clock_offset_ms`] of its send time.
pub fn request(
    req: &DeliverRequest,
    identity: &HostIdentity,
    limits: &Limits,
    now_ms: i64,
    clock: Option<ClockOffset>,
) -> Result<(), Refusal> {
    if req.reports.is_empty() {
        return Err(Refusal::Empty);
    }
    if req.reports.len() > limits.max_reports_per_request {
        return Err(Refusal::TooManyReports {
            count: req.reports.len(),
            max: limits.max_reports_per_request,
        });
    }
    // Identity first: a report for another host is refused whatever else it holds.
    for r in &req.reports {
        if r.host_id != identity.host_id {
            return Err(Refusal::WrongHost {
                seq: r.seq,
                claimed: r.host_id.clone(),
                actual: identity.host_id.clone(),
            });
        }
    }
    // Report ages by the agent's clock when its send time is believable.
    let sent_ms = clock
        .filter(|o| !o.clamped)
        .map_or(now_ms, |_| req.sent_unix_ms);
    let mut prev: Option<(u64, u64)> = None;
    for r in &req.reports {
        report(r, limits, now_ms, sent_ms)
            .map_err(|reason| Refusal::Invalid { seq: r.seq, reason })?;
        if let Some((epoch, seq)) = prev
            && epoch == r.epoch
            && r.seq <= seq
        {
            return Err(Refusal::Invalid {
                seq: r.seq,
                reason: format!(
                    "sequence numbers must increase within a request ({seq} then {})",
                    r.seq
                ),
            });
        }
        prev = Some((r.epoch, r.seq));
    }
    Ok(())
}

fn report(r: &Report, limits: &Limits, now_ms: i64, sent_ms: i64) -> Result<(), String> {
    if r.seq == 0 {
        return Err("seq must start at 1".into());
    }
    if r.collected_at_ms <= 0 {
        return Err(format!(
            "collected_at_ms {} is not a valid time",
            r.collected_at_ms
        ));
    }
    let max_age_ms = secs_to_ms(limits.max_report_age_secs);
    let age_ms = sent_ms.saturating_sub(r.collected_at_ms);
    if age_ms > max_age_ms {
        return Err(format!(
            "collected_at_ms {} is {} days before the request was sent (limit {} days): \
             check the agent's clock",
            r.collected_at_ms,
            age_ms / 86_400_000,
            limits.max_report_age_secs / 86_400
        ));
    }
    let skew_ms = secs_to_ms(limits.max_future_skew_secs);
    if r.collected_at_ms > now_ms.saturating_add(skew_ms) {
        return Err(format!(
            "collected_at_ms {} is {} s in the future (limit {} s): check the agent's clock",
            r.collected_at_ms,
            (r.collected_at_ms - now_ms) / 1000,
            limits.max_future_skew_secs
        ));
    }
    if r.interval_secs == 0 || r.interval_secs > 86_400 {
        return Err(format!(
            "interval_secs {} is outside 1..=86400",
            r.interval_secs
        ));
    }
    text("agent_version", &r.agent_version, limits)?;
    if r.inventory_sha256.len() != 32 {
        return Err(format!(
            "inventory_sha256 has {} bytes, expected 32",
            r.inventory_sha256.len()
        ));
    }
    if let Some(h) = &r.health {
        health(h, limits)?;
    }
    if let Some(inv) = &r.inventory {
        inventory(inv, limits)?;
    }
    if let Some(p) = &r.probes {
        probes(p, limits)?;
    }
    if !r.probe_duty_sha256.is_empty() && r.probe_duty_sha256.len() != 32 {
        return Err(format!(
            "probe_duty_sha256 has {} bytes, expected 32 or none",
            r.probe_duty_sha256.len()
        ));
    }
    Ok(())
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// The agent's clock offset as its send time shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockOffset {
    /// Agent clock minus collector clock, within ±`max_clock_offset_secs`.
    pub ms: i64,
    /// The send time was farther off than that, and the offset is the bound.
    pub clamped: bool,
}

/// The clock offset of a request sent at `sent_unix_ms` (agent clock),
/// received at `now_ms`; `None` when the agent did not say (0).
pub fn clock_offset_ms(sent_unix_ms: i64, now_ms: i64, limits: &Limits) -> Option<ClockOffset> {
    if sent_unix_ms <= 0 {
        return None;
    }
    let bound = secs_to_ms(limits.max_clock_offset_secs);
    let raw = sent_unix_ms.saturating_sub(now_ms);
    Some(ClockOffset {
        ms: raw.clamp(-bound, bound),
        clamped: !(-bound..=bound).contains(&raw),
    })
}

/// Counts past any agent's: 2^40 reports is one a second for 34,000 years.
const MAX_AGENT_COUNT: u64 = 1 << 40;
/// A spool of a pebibyte.
const MAX_SPOOL_BYTES: u64 = 1 << 50;

/// Checks the agent's figures about itself; refused ones are set aside
/// (the reports with them are still taken) and counted.
pub fn agent_stats(s: &AgentStats) -> Result<(), String> {
    for (name, v, max) in [
        ("queue_depth", s.queue_depth, MAX_AGENT_COUNT),
        (
            "dropped_reports_total",
            s.dropped_reports_total,
            MAX_AGENT_COUNT,
        ),
        (
            "send_failures_total",
            s.send_failures_total,
            MAX_AGENT_COUNT,
        ),
        (
            "dropped_spool_full_total",
            s.dropped_spool_full_total,
            MAX_AGENT_COUNT,
        ),
        (
            "dropped_expired_total",
            s.dropped_expired_total,
            MAX_AGENT_COUNT,
        ),
        (
            "dropped_invalid_total",
            s.dropped_invalid_total,
            MAX_AGENT_COUNT,
        ),
        (
            "dropped_corrupt_total",
            s.dropped_corrupt_total,
            MAX_AGENT_COUNT,
        ),
        ("spool_resets_total", s.spool_resets_total, MAX_AGENT_COUNT),
        ("spool_bytes", s.spool_bytes, MAX_SPOOL_BYTES),
        // A century.
        (
            "oldest_unsent_age_seconds",
            s.oldest_unsent_age_seconds,
            100 * 366 * 86_400,
        ),
    ] {
        if v > max {
            return Err(format!("{name} {v} is beyond any agent's (at most {max})"));
        }
    }
    Ok(())
}

fn health(h: &Health, limits: &Limits) -> Result<(), String> {
    if let Some(c) = h.cpu_usage_ratio
        && !(0.0..=1.0).contains(&c)
    {
        return Err(format!("cpu_usage_ratio {c} is not between 0 and 1"));
    }
    for (name, v) in [("load1", h.load1), ("load5", h.load5), ("load15", h.load15)] {
        if let Some(v) = v
            && (!v.is_finite() || v < 0.0)
        {
            return Err(format!("{name} {v} is not a finite non-negative number"));
        }
    }
    not_above(
        "memory_available_bytes",
        h.memory_available_bytes,
        "memory_total_bytes",
        h.memory_total_bytes,
    )?;
    not_above(
        "swap_free_bytes",
        h.swap_free_bytes,
        "swap_total_bytes",
        h.swap_total_bytes,
    )?;
    if h.filesystems.len() > limits.max_filesystems {
        return Err(format!(
            "{} filesystems; at most {}",
            h.filesystems.len(),
            limits.max_filesystems
        ));
    }
    for fs in &h.filesystems {
        text("filesystem mount_point", &fs.mount_point, limits)?;
        text("filesystem device", &fs.device, limits)?;
        text("filesystem fs_type", &fs.fs_type, limits)?;
        if fs.available_bytes > fs.size_bytes {
            return Err(format!(
                "filesystem {:?}: available {} > size {}",
                fs.mount_point, fs.available_bytes, fs.size_bytes
            ));
        }
    }
    if h.interfaces.len() > limits.max_interfaces {
        return Err(format!(
            "{} interfaces; at most {}",
            h.interfaces.len(),
            limits.max_interfaces
        ));
    }
    for i in &h.interfaces {
        text("interface name", &i.name, limits)?;
    }
    if let Some(f) = &h.failed_units {
        if f.names.len() > 16 {
            return Err(format!("{} failed unit names; at most 16", f.names.len()));
        }
        for n in &f.names {
            text("failed unit name", n, limits)?;
        }
    }
    Ok(())
}

fn inventory(inv: &Inventory, limits: &Limits) -> Result<(), String> {
    for (name, v) in [
        ("hostname", &inv.hostname),
        ("machine_id", &inv.machine_id),
        ("os_name", &inv.os_name),
        ("os_version", &inv.os_version),
        ("kernel_version", &inv.kernel_version),
        ("os_edition", &inv.os_edition),
        ("arch", &inv.arch),
        ("cpu_model", &inv.cpu_model),
    ] {
        if let Some(v) = v {
            text(name, v, limits)?;
        }
    }
    if let Some(p) = &inv.packages {
        if p.items.len() > limits.max_packages {
            return Err(format!(
                "{} packages; at most {}",
                p.items.len(),
                limits.max_packages
            ));
        }
        for pkg in &p.items {
            text("package name", &pkg.name, limits)?;
            text("package version", &pkg.version, limits)?;
        }
    }
    if let Some(d) = &inv.disks
        && d.items.len() > limits.max_disks
    {
        return Err(format!(
            "{} disks; at most {}",
            d.items.len(),
            limits.max_disks
        ));
    }
    if let Some(n) = &inv.nics
        && n.items.len() > limits.max_nics
    {
        return Err(format!(
            "{} nics; at most {}",
            n.items.len(),
            limits.max_nics
        ));
    }
    Ok(())
}

/// Results of each kind one report may carry (own targets plus duty).
pub const MAX_PROBE_RESULTS: usize = 64;

fn probes(p: &Probes, limits: &Limits) -> Result<(), String> {
    if let Some(reason) = &p.icmp_unavailable {
        text("icmp_unavailable", reason, limits)?;
    }
    for (kind, n) in [
        ("icmp", p.icmp.len()),
        ("tcp", p.tcp.len()),
        ("dns", p.dns.len()),
    ] {
        if n > MAX_PROBE_RESULTS {
            return Err(format!(
                "{n} {kind} probe results; at most {MAX_PROBE_RESULTS}"
            ));
        }
    }
    for r in &p.icmp {
        let who = owner("icmp", &r.target, &r.device)?;
        text("probe address", &r.address, limits)?;
        if r.lost > r.sent || r.sent > 1000 {
            return Err(format!(
                "{who}: {} lost of {} sent (at most 1000 per cycle, lost <= sent)",
                r.lost, r.sent
            ));
        }
        for (name, v) in [
            ("rtt_min_seconds", r.rtt_min_seconds),
            ("rtt_avg_seconds", r.rtt_avg_seconds),
            ("rtt_max_seconds", r.rtt_max_seconds),
            ("rtt_stddev_seconds", r.rtt_stddev_seconds),
        ] {
            if let Some(v) = v {
                seconds(&who, name, v)?;
            }
        }
        if let Some(e) = &r.error {
            text("probe error", e, limits)?;
        }
    }
    for r in &p.tcp {
        let who = owner("tcp", &r.target, &r.device)?;
        text("probe address", &r.address, limits)?;
        seconds(&who, "seconds", r.seconds)?;
        if let Some(e) = &r.error {
            text("probe error", e, limits)?;
        }
    }
    for r in &p.dns {
        let who = owner("dns", &r.target, "")?;
        text("dns probe name", &r.name, limits)?;
        text("dns probe resolver", &r.resolver, limits)?;
        seconds(&who, "seconds", r.seconds)?;
        if let Some(e) = &r.error {
            text("probe error", e, limits)?;
        }
    }
    Ok(())
}

/// "icmp target gateway" / "tcp device printer-1"; exactly one must be set.
fn owner(kind: &str, target: &str, device: &str) -> Result<String, String> {
    match (target.is_empty(), device.is_empty()) {
        (false, true) if campanile_probe::valid_target_name(target) => {
            Ok(format!("{kind} target {target}"))
        }
        (false, true) => Err(format!(
            "{kind} probe target {target:?} is not 1-32 of [a-z0-9_-]"
        )),
        (true, false) => validate_id("device", device)
            .map(|()| format!("{kind} device {device}"))
            .map_err(|e| format!("{kind} probe: {e}")),
        _ => Err(format!(
            "{kind} probe result must name exactly one of target and device"
        )),
    }
}

fn seconds(who: &str, name: &str, v: f64) -> Result<(), String> {
    if !(v.is_finite() && (0.0..=3600.0).contains(&v)) {
        return Err(format!("{who}: {name} {v} is not between 0 and 3600"));
    }
    Ok(())
}

fn not_above(a: &str, av: Option<u64>, b: &str, bv: Option<u64>) -> Result<(), String> {
    match (av, bv) {
        (Some(x), Some(y)) if x > y => Err(format!("{a} {x} > {b} {y}")),
        _ => Ok(()),
    }
}

fn text(name: &str, v: &str, limits: &Limits) -> Result<(), String> {
    if v.len() > limits.max_string_bytes {
        return Err(format!(
            "{name} is {} bytes long; at most {}",
            v.len(),
            limits.max_string_bytes
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use campanile_proto::v1::Filesystem;

    fn ok_report() -> Report {
        Report {
            host_id: "pc-1".into(),
            epoch: 7,
            seq: 1,
            collected_at_ms: 1_700_000_000_000,
            interval_secs: 60,
            agent_version: "0.1.0".into(),
            inventory_sha256: vec![0; 32],
            health: Some(Health::default()),
            ..Default::default()
        }
    }

    fn check(r: Report) -> Result<(), Refusal> {
        let id = HostIdentity::new("pc-1", "s").unwrap();
        request(
            &DeliverRequest {
                reports: vec![r],
                agent_stats: None,
                sent_unix_ms: 0,
            },
            &id,
            &Limits::default(),
            1_700_000_000_000,
            None,
        )
    }

    #[test]
    fn accepts_a_plain_report() {
        check(ok_report()).unwrap();
    }

    #[test]
    fn rejects_report_for_another_host() {
        let r = Report {
            host_id: "pc-2".into(),
            ..ok_report()
        };
        assert!(matches!(check(r), Err(Refusal::WrongHost { .. })));
    }

    #[test]
    fn rejects_impossible_values_with_the_reason() {
        let mut nan = ok_report();
        nan.health.as_mut().unwrap().load1 = Some(f64::NAN);
        let mut neg_cpu = ok_report();
        neg_cpu.health.as_mut().unwrap().cpu_usage_ratio = Some(-0.5);
        let mut fs = ok_report();
        fs.health.as_mut().unwrap().filesystems.push(Filesystem {
            mount_point: "/".into(),
            size_bytes: 10,
            available_bytes: 11,
            ..Default::default()
        });
        let mut mem = ok_report();
        let h = mem.health.as_mut().unwrap();
        (h.memory_total_bytes, h.memory_available_bytes) = (Some(1), Some(2));
        let future = Report {
            collected_at_ms: 1_700_000_000_000 + 3_600_000,
            ..ok_report()
        };
        let probe = |p: Probes| Report {
            probes: Some(p),
            ..ok_report()
        };
        let icmp = |target: &str, device: &str, sent, lost| Probes {
            icmp: vec![campanile_proto::v1::IcmpResult {
                target: target.into(),
                device: device.into(),
                sent,
                lost,
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut slow = icmp("gateway", "", 5, 0);
        slow.icmp[0].rtt_avg_seconds = Some(f64::INFINITY);
        let bad_hash = Report {
            probe_duty_sha256: vec![1; 5],
            ..ok_report()
        };
        for (r, needle) in [
            (probe(icmp("gateway", "", 5, 6)), "6 lost of 5 sent"),
            (
                probe(icmp("", "", 5, 0)),
                "exactly one of target and device",
            ),
            (
                probe(icmp("gw", "router-1", 5, 0)),
                "exactly one of target and device",
            ),
            (probe(icmp("Gateway 1", "", 5, 0)), "not 1-32 of"),
            (probe(icmp("", "Router 1", 5, 0)), "icmp probe"),
            (probe(slow), "rtt_avg_seconds inf"),
            (bad_hash, "probe_duty_sha256"),
            (nan, "load1"),
            (neg_cpu, "cpu_usage_ratio"),
            (fs, "available 11 > size 10"),
            (mem, "memory_available_bytes"),
            (future, "future"),
        ] {
            let e = check(r).unwrap_err();
            assert!(e.to_string().contains(needle), "{e} lacks {needle}");
            assert_eq!(e.reason_label(), "invalid_report");
        }
    }
}
