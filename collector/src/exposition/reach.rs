//! Reachability series: the agents' probes per site and target, the
//! agentless devices, the centre's WAN probes and each site's state.
//!
//! Targets are the names in `probes.targets` (bounded by config, never
//! invented by agents), devices come from the register: the series count
//! grows with the territory, not with what agents send.

use std::collections::HashMap;

use crate::exposition::family::Family;
use crate::exposition::scrape::Scrape;
use crate::reach::classify::{Reachability, classify};

pub(super) fn families(scrape: &Scrape<'_>) -> Vec<Family> {
    let mut out = Vec::new();
    out.extend(target_families(scrape));
    out.extend(site_families(scrape));
    out.extend(device_families(scrape));
    out
}

fn target_families(scrape: &Scrape<'_>) -> Vec<Family> {
    let mut hosts = Family::gauge(
        "campanile_site_probe_hosts",
        "Up hosts of the site whose latest report probed the target.",
    );
    let mut success = Family::gauge(
        "campanile_site_probe_success_ratio",
        "Share of those hosts whose latest probe of the target got through.",
    );
    let mut loss = Family::gauge(
        "campanile_site_probe_loss_ratio",
        "ICMP echo requests lost in the latest cycle, over those sent, across the site's up hosts.",
    );
    let mut rtt = Family::gauge(
        "campanile_site_probe_rtt_seconds",
        "Mean over the site's up hosts of the latest ICMP average round trip, TCP connect or DNS answer time.",
    );
    for ((site, target), t) in &scrape.probes.targets {
        let l = [("site", site.as_str()), ("target", target.as_str())];
        hosts.push(&l, f64::from(t.hosts));
        success.push_opt(&l, t.success_ratio());
        loss.push_opt(&l, t.loss_ratio());
        rtt.push_opt(&l, t.rtt_seconds());
    }
    let mut sent = Family::counter(
        "campanile_site_probe_packets_sent_total",
        "ICMP echo requests the site's agents sent to the target.",
    );
    let mut lost = Family::counter(
        "campanile_site_probe_packets_lost_total",
        "ICMP echo requests to the target that got no reply.",
    );
    let mut checks = Family::counter(
        "campanile_site_probe_checks_total",
        "TCP connects and DNS queries the site's agents made to the target.",
    );
    let mut failures = Family::counter(
        "campanile_site_probe_check_failures_total",
        "TCP connects and DNS queries to the target that failed.",
    );
    for c in scrape.probe_counters {
        let l = [("site", c.site.as_str()), ("target", c.target.as_str())];
        if c.packets_sent > 0 {
            sent.push(&l, c.packets_sent as f64);
            lost.push(&l, c.packets_lost as f64);
        }
        if c.checks > 0 {
            checks.push(&l, c.checks as f64);
            failures.push(&l, c.check_failures as f64);
        }
    }
    [hosts, success, loss, rtt, sent, lost, checks, failures].into()
}

fn site_families(scrape: &Scrape<'_>) -> Vec<Family> {
    let names: HashMap<&str, &str> = scrape
        .register
        .comuni
        .iter()
        .map(|c| (c.istat_code.as_str(), c.name.as_str()))
        .collect();
    let mut state = Family::gauge(
        "campanile_site_reachability",
        "1 for the site's current state: ok, some_hosts_silent, all_hosts_silent_line_up, dark, all_hosts_silent_line_unknown, no_hosts.",
    );
    let mut no_icmp = Family::gauge(
        "campanile_site_hosts_icmp_unavailable",
        "Up hosts of the site that cannot send ICMP (no CAP_NET_RAW, outside ping_group_range).",
    );
    for s in &scrape.view.sites {
        let code = s.istat_code.as_deref().unwrap_or_default();
        let comune = names.get(code).copied().unwrap_or_default();
        let now = classify(&s.counts, scrape.wan.site_up(&s.id));
        for r in Reachability::ALL {
            state.push(
                &[
                    ("site", &s.id),
                    ("comune", comune),
                    ("istat_code", code),
                    ("state", r.as_str()),
                ],
                f64::from(u8::from(r == now)),
            );
        }
        no_icmp.push(
            &[("site", &s.id)],
            f64::from(
                scrape
                    .probes
                    .icmp_unavailable
                    .get(&s.id)
                    .copied()
                    .unwrap_or(0),
            ),
        );
    }
    let mut wan_up = Family::gauge(
        "campanile_site_wan_up",
        "1 if the collector reached the site's WAN address at its latest probe.",
    );
    let mut wan_rtt = Family::gauge(
        "campanile_site_wan_rtt_seconds",
        "Round trip (or TCP connect) time from the collector to the site's WAN address.",
    );
    let mut wan_sent = Family::counter(
        "campanile_site_wan_packets_sent_total",
        "Probes the collector sent to the site's WAN address since it started.",
    );
    let mut wan_lost = Family::counter(
        "campanile_site_wan_packets_lost_total",
        "Probes to the site's WAN address that got no answer.",
    );
    for (site, w) in &scrape.wan.sites {
        let l = [("site", site.as_str())];
        wan_up.push(&l, f64::from(u8::from(w.up)));
        wan_rtt.push_opt(&l, w.rtt_seconds);
        wan_sent.push(&l, w.packets_sent_total as f64);
        wan_lost.push(&l, w.packets_lost_total as f64);
    }
    let mut available = Family::gauge(
        "campanile_wan_probes_available",
        "1 if the collector can probe WAN addresses (ICMP permitted, or TCP method).",
    );
    if scrape.wan.enabled {
        available.push(
            &[],
            f64::from(u8::from(scrape.wan.icmp_unavailable.is_none())),
        );
    }
    [
        state, no_icmp, wan_up, wan_rtt, wan_sent, wan_lost, available,
    ]
    .into()
}

fn device_families(scrape: &Scrape<'_>) -> Vec<Family> {
    let mut up = Family::gauge(
        "campanile_device_up",
        "1 if at least one agent of the site reached the agentless device in its latest cycle.",
    );
    let mut agents = Family::gauge(
        "campanile_device_probe_agents",
        "Up agents whose latest report probed the device (0: nobody watches it).",
    );
    let mut rtt = Family::gauge(
        "campanile_device_rtt_seconds",
        "Best round trip (or TCP connect) time to the device among its probing agents.",
    );
    for d in &scrape.probes.devices {
        let l = [("site", d.site.as_str()), ("device", d.device.as_str())];
        agents.push(&l, f64::from(d.agents));
        if let Some(is_up) = d.up {
            up.push(
                &[
                    ("site", d.site.as_str()),
                    ("device", d.device.as_str()),
                    ("kind", d.kind.as_str()),
                ],
                f64::from(u8::from(is_up)),
            );
        }
        rtt.push_opt(&l, d.rtt_seconds);
    }
    [up, agents, rtt].into()
}
