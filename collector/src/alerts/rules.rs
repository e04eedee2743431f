//! The built-in rules: from one snapshot of the territory to the alerts
//! whose condition holds now. Pure: the engine decides pending, firing,
//! resolved, silenced and inhibited.

use std::collections::BTreeMap;

use crate::reach::aggregate::SiteProbes;
use crate::reach::classify::{Reachability, classify};
use crate::reach::wan::WanState;
use crate::read::snapshot::Snapshot;
use campanile_territory::evaluate::{Presence, filesystem_used_percent};
use campanile_territory::gap::GapKind;
use campanile_territory::register::Places;

use super::config::{Rule, Rules};
use super::timefmt::rfc3339;

/// An alert whose condition holds at this evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// How long the condition must hold before the alert fires.
    pub for_ms: i64,
    /// Sent in the daily digest, not on its own.
    pub digest: bool,
    /// A site-wide silence: the site's other alerts are inhibited while it
    /// holds (fifty silent PCs are one dark line, not fifty pages).
    pub inhibits_site: bool,
}

pub struct Inputs<'a> {
    pub snapshot: &'a Snapshot,
    pub probes: &'a SiteProbes,
    pub wan: &'a WanState,
}

/// Where a site sits: the labels every alert about it carries.
struct Place<'a> {
    site: &'a str,
    istat_code: &'a str,
    comune: &'a str,
}

struct Builder<'a> {
    out: Vec<Candidate>,
    external_url: &'a str,
}

impl Builder<'_> {
    fn push(
        &mut self,
        name: &str,
        rule: &Rule,
        place: &Place<'_>,
        extra: &[(&str, &str)],
        summary: String,
        link_path: String,
    ) -> &mut Candidate {
        let mut labels: BTreeMap<String, String> = [
            ("alertname", name),
            ("severity", rule.severity.as_str()),
            ("site", place.site),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        // No empty labels: Alertmanager treats them as absent anyway.
        for (k, v) in [("istat_code", place.istat_code), ("comune", place.comune)]
            .into_iter()
            .chain(extra.iter().copied())
        {
            if !v.is_empty() {
                labels.insert(k.to_owned(), v.to_owned());
            }
        }
        let annotations = [
            ("summary".to_owned(), summary),
            (
                "link".to_owned(),
                format!("{}{link_path}", self.external_url),
            ),
        ]
        .into();
        self.out.push(Candidate {
            labels,
            annotations,
            for_ms: i64::try_from(rule.for_.as_millis()).unwrap_or(i64::MAX),
            digest: false,
            inhibits_site: false,
        });
        self.out.last_mut().expect("just pushed")
    }
}

fn place<'a>(places: &Places<'a>, site: &'a str) -> Place<'a> {
    let (code, name) = places.of(site);
    Place {
        site,
        istat_code: code.unwrap_or_default(),
        comune: name.unwrap_or_default(),
    }
}

fn enc(s: &str) -> String {
    // Ids are restricted to [A-Za-z0-9._-] (see campanile_proto::identity),
    // so only a stray space or slash in a register value needs escaping.
    s.replace('%', "%25")
        .replace(' ', "%20")
        .replace('/', "%2F")
}

pub fn evaluate(inputs: &Inputs<'_>, rules: &Rules, external_url: &str) -> Vec<Candidate> {
    let snap = inputs.snapshot;
    let now = snap.now_ms;
    let register = &snap.loaded.register;
    let places = register.places();
    let mut b = Builder {
        out: Vec::new(),
        external_url,
    };

    for s in &snap.view.sites {
        let state = classify(&s.counts, inputs.wan.site_up(&s.id));
        let p = place(&places, &s.id);
        let (site, comune) = (p.site, p.comune);
        let link = format!("/api/v1/reachability?site={}", enc(&s.id));
        let silent = s.counts.offline;
        match state {
            Reachability::Dark if rules.site_dark.enabled => {
                b.push(
                    "CampanileSiteDark",
                    &rules.site_dark,
                    &p,
                    &[],
                    format!(
                        "Site {site} ({comune}) is dark: all {silent} host(s) silent and its WAN address unreachable from the centre"
                    ),
                    link,
                )
                .inhibits_site = true;
            }
            Reachability::AllHostsSilentLineUp | Reachability::AllHostsSilentLineUnknown
                if rules.site_hosts_silent.enabled =>
            {
                let line = if state == Reachability::AllHostsSilentLineUp {
                    "its line answers: power, switch or LAN on site"
                } else {
                    "the site has no WAN address to tell the line from the LAN"
                };
                b.push(
                    "CampanileSiteHostsSilent",
                    &rules.site_hosts_silent,
                    &p,
                    &[(
                        "line",
                        if state == Reachability::AllHostsSilentLineUp {
                            "up"
                        } else {
                            "unknown"
                        },
                    )],
                    format!("All {silent} host(s) of {site} ({comune}) are silent; {line}"),
                    link,
                )
                .inhibits_site = true;
            }
            _ => {}
        }
    }

    let has_plan = !register.assets.is_empty();
    // The view has one host view per stored host, in the same order.
    for (h, hv) in snap.hosts.iter().zip(&snap.view.hosts) {
        if hv.presence == Presence::Stale {
            continue;
        }
        let p = place(&places, &hv.site);
        let site = p.site;
        let host = hv.host_id.as_str();
        let link = format!("/api/v1/hosts/{}", enc(host));
        let up = hv.presence == Presence::Up;
        if hv.presence == Presence::Offline && rules.host_down.enabled {
            let silent_min = (now - h.last_report_ms) / 60_000;
            b.push(
                "CampanileHostDown",
                &rules.host_down,
                &p,
                &[("host", host)],
                format!("Host {host} ({site}) has not reported for {silent_min} min"),
                link.clone(),
            );
        }
        if up && rules.filesystem_full.enabled {
            for fs in h.health.iter().flat_map(|hl| &hl.filesystems) {
                let Some(used) = filesystem_used_percent(fs) else {
                    continue;
                };
                if used >= rules.filesystem_used_percent {
                    b.push(
                        "CampanileFilesystemNearlyFull",
                        &rules.filesystem_full,
                        &p,
                        &[("host", host), ("mountpoint", &fs.mount_point)],
                        format!(
                            "{} on {host} is {used:.0}% full ({} GB free)",
                            fs.mount_point,
                            fs.available_bytes / 1_000_000_000
                        ),
                        link.clone(),
                    );
                }
            }
        }
        if hv.has(GapKind::OsEol) && rules.os_end_of_life.enabled {
            let os = hv.os.as_ref();
            let release = os.map_or("its OS", |o| o.release.as_str());
            let since = os.map_or(String::new(), |o| format!(" since {}", o.eol));
            b.push(
                "CampanileHostOsPastEndOfLife",
                &rules.os_end_of_life,
                &p,
                &[("host", host)],
                format!("{host} ({site}) runs {release}, past end of life{since}"),
                link.clone(),
            )
            .digest = true;
        }
        if up && has_plan && !hv.planned && rules.unplanned_host.enabled {
            b.push(
                "CampanileHostUnplanned",
                &rules.unplanned_host,
                &p,
                &[("host", host)],
                format!("{host} reports from {site} but matches no planned asset of the register"),
                link.clone(),
            );
        }
        if up
            && rules.clock_skew.enabled
            && let Some(offset) = h.peer.clock_offset_ms
            && offset.unsigned_abs() > rules.clock_max_offset.as_millis() as u64
        {
            let dir = if offset > 0 { "ahead of" } else { "behind" };
            b.push(
                "CampanileAgentClockSkew",
                &rules.clock_skew,
                &p,
                &[("host", host)],
                format!(
                    "The clock of {host} is {} s {dir} the collector's",
                    offset.unsigned_abs() / 1000
                ),
                link.clone(),
            );
        }
        if rules.certificate_expiry.enabled
            && let Some(not_after) = h.peer.cert_not_after_ms
            && not_after - now < rules.certificate_within.as_millis() as i64
        {
            let summary = if not_after <= now {
                format!(
                    "The agent certificate of {host} expired at {}",
                    rfc3339(not_after)
                )
            } else {
                format!(
                    "The agent certificate of {host} expires in {} day(s), at {}",
                    (not_after - now) / 86_400_000,
                    rfc3339(not_after)
                )
            };
            b.push(
                "CampanileAgentCertificateExpiring",
                &rules.certificate_expiry,
                &p,
                &[("host", host)],
                summary,
                link.clone(),
            );
        }
    }

    if rules.link_degraded.enabled {
        for ((site_id, target), t) in &inputs.probes.targets {
            if !rules.link_targets.contains(target) {
                continue;
            }
            let p = place(&places, site_id);
            let site = p.site;
            let link = format!("/api/v1/reachability?site={}", enc(site_id));
            if let Some(loss) = t.loss_ratio()
                && loss > rules.link_max_loss_ratio
            {
                b.push(
                    "CampanileSiteLinkLossy",
                    &rules.link_degraded,
                    &p,
                    &[("target", target)],
                    format!(
                        "{:.0}% of pings from {site} to {target} are lost ({} host(s) measuring)",
                        loss * 100.0,
                        t.hosts
                    ),
                    link.clone(),
                );
            }
            if let Some(rtt) = t.rtt_seconds()
                && rtt > rules.link_max_rtt.as_secs_f64()
            {
                b.push(
                    "CampanileSiteLinkSlow",
                    &rules.link_degraded,
                    &p,
                    &[("target", target)],
                    format!(
                        "Round trip from {site} to {target} is {:.0} ms (limit {:.0} ms)",
                        rtt * 1000.0,
                        rules.link_max_rtt.as_secs_f64() * 1000.0
                    ),
                    link,
                );
            }
        }
    }

    if rules.device_down.enabled {
        for d in &inputs.probes.devices {
            if d.up != Some(false) {
                continue;
            }
            let p = place(&places, &d.site);
            let site = p.site;
            b.push(
                "CampanileDeviceDown",
                &rules.device_down,
                &p,
                &[("device", &d.device), ("kind", &d.kind)],
                format!(
                    "{} {} ({}) at {site} answers none of the {} agent(s) probing it",
                    d.kind, d.device, d.address, d.agents
                ),
                format!("/api/v1/reachability?site={}", enc(&d.site)),
            );
        }
    }
    b.out
}
