//! The agents' own health, per site: what waits in their spools, how old
//! it is, and what they had to drop. Per site rather than per host to keep
//! the per-host series bounded; `/api/v1/hosts/{id}` has each agent's own
//! figures.
//!
//! Gauges (spool depth, bytes, oldest age) count only up hosts: a silent
//! host's last figures are stale. Counters sum every host of the site, so
//! they do not fall when a host goes silent.

use std::collections::BTreeMap;

use crate::exposition::family::Family;
use crate::exposition::scrape::Scrape;
use campanile_territory::evaluate::Presence;

#[derive(Default)]
struct SiteAgents {
    spool_reports: u64,
    spool_bytes: u64,
    oldest_unsent_age_seconds: u64,
    dropped_spool_full: u64,
    dropped_expired: u64,
    dropped_invalid: u64,
    dropped_corrupt: u64,
    send_failures: u64,
    spool_resets: u64,
}

/// Drop reasons, as the `reason` label says them.
pub const DROP_REASONS: [&str; 4] = ["spool_full", "expired", "invalid", "corrupt"];

pub(super) fn families(scrape: &Scrape<'_>) -> Vec<Family> {
    let mut sites: BTreeMap<&str, SiteAgents> = BTreeMap::new();
    for (h, hv) in scrape.hosts.iter().zip(&scrape.view.hosts) {
        let Some(st) = &h.agent_stats else { continue };
        let s = sites.entry(hv.site.as_str()).or_default();
        // Saturating: the collector refuses figures beyond any agent's,
        // but a store from before that may hold them.
        if h.is_up(scrape.now_ms) {
            s.spool_reports = s.spool_reports.saturating_add(st.queue_depth);
            s.spool_bytes = s.spool_bytes.saturating_add(st.spool_bytes);
            s.oldest_unsent_age_seconds = s
                .oldest_unsent_age_seconds
                .max(st.oldest_unsent_age_seconds);
        }
        // Agents older than the spool report drops only as a total.
        let itemised = st
            .dropped_spool_full_total
            .saturating_add(st.dropped_expired_total)
            .saturating_add(st.dropped_invalid_total)
            .saturating_add(st.dropped_corrupt_total);
        let add = |sum: &mut u64, v: u64| *sum = sum.saturating_add(v);
        add(
            &mut s.dropped_spool_full,
            st.dropped_spool_full_total
                .saturating_add(st.dropped_reports_total.saturating_sub(itemised)),
        );
        add(&mut s.dropped_expired, st.dropped_expired_total);
        add(&mut s.dropped_invalid, st.dropped_invalid_total);
        add(&mut s.dropped_corrupt, st.dropped_corrupt_total);
        add(&mut s.send_failures, st.send_failures_total);
        add(&mut s.spool_resets, st.spool_resets_total);
    }
    let mut reports = Family::gauge(
        "campanile_site_agent_spool_reports",
        "Reports waiting in the spools of the site's up agents.",
    );
    let mut bytes = Family::gauge(
        "campanile_site_agent_spool_bytes",
        "Encoded size of the reports waiting in the spools of the site's up agents.",
    );
    let mut oldest = Family::gauge(
        "campanile_site_agent_oldest_unsent_age_seconds",
        "Age of the oldest report still unacknowledged among the site's up agents.",
    );
    let mut dropped = Family::counter(
        "campanile_site_agent_reports_dropped_total",
        "Reports the site's agents dropped: spool_full (oldest dropped to make room), \
         expired (older than the spool's age bound), invalid (refused by the collector), \
         corrupt (damaged on disk).",
    );
    let mut failures = Family::counter(
        "campanile_site_agent_send_failures_total",
        "Deliver calls of the site's agents that failed (network, TLS, timeout, refusal).",
    );
    let mut resets = Family::counter(
        "campanile_site_agent_spool_resets_total",
        "Times an agent of the site found its spool file damaged and started a new one.",
    );
    for (site, s) in &sites {
        let l = [("site", *site)];
        reports.push(&l, s.spool_reports as f64);
        bytes.push(&l, s.spool_bytes as f64);
        oldest.push(&l, s.oldest_unsent_age_seconds as f64);
        let counts = [
            s.dropped_spool_full,
            s.dropped_expired,
            s.dropped_invalid,
            s.dropped_corrupt,
        ];
        for (reason, n) in DROP_REASONS.iter().zip(counts) {
            dropped.push(&[l[0], ("reason", reason)], n as f64);
        }
        failures.push(&l, s.send_failures as f64);
        resets.push(&l, s.spool_resets as f64);
    }
    let (clock, cert) = peer_families(scrape);
    [
        reports, bytes, oldest, dropped, failures, resets, clock, cert,
    ]
    .into()
}

/// What the collector sees of the agents themselves, per site: the clock
/// furthest from its own (up hosts) and the certificate that expires first
/// (hosts not yet stale). The alerts name the host; these say where to look.
fn peer_families(scrape: &Scrape<'_>) -> (Family, Family) {
    let mut clock = Family::gauge(
        "campanile_site_agent_clock_offset_max_seconds",
        "Largest distance between an up agent's clock and the collector's at the site \
         (absolute; measured at each request, so it reads a little high by the transit time).",
    );
    let mut cert = Family::gauge(
        "campanile_site_agent_certificate_expiry_min_timestamp_seconds",
        "When the first agent certificate of the site expires (agents not yet stale).",
    );
    let mut offsets: BTreeMap<&str, u64> = BTreeMap::new();
    let mut expiries: BTreeMap<&str, i64> = BTreeMap::new();
    for (h, hv) in scrape.hosts.iter().zip(&scrape.view.hosts) {
        if let Some(o) = h.peer.clock_offset_ms
            && hv.presence == Presence::Up
        {
            let e = offsets.entry(hv.site.as_str()).or_default();
            *e = (*e).max(o.unsigned_abs());
        }
        if let Some(t) = h.peer.cert_not_after_ms
            && hv.presence != Presence::Stale
        {
            let e = expiries.entry(hv.site.as_str()).or_insert(t);
            *e = (*e).min(t);
        }
    }
    for (site, ms) in offsets {
        clock.push(&[("site", site)], ms as f64 / 1000.0);
    }
    for (site, ms) in expiries {
        cert.push(&[("site", site)], (ms / 1000) as f64);
    }
    (clock, cert)
}
