//! `/metrics`, rendered from the store's current state at scrape time.
//!
//! Series per host are bounded: 15 host series, 2 per filesystem and 6 per
//! interface, with filesystems and interfaces capped by
//! [`ExpositionConfig`] (defaults 6 and 2: at most 39 series per host).
//! The territory adds 5 series per site and 6 per comune; reachability adds
//! 11 per site (6 of them the one-hot state), up to 8 per site and probe
//! target, and 3 per agentless device; the agents' own health adds 9 per
//! site (11 with the clock and certificate figures); alerts add one series
//! per alert name, severity and state and 6 per receiver. Long lists stay
//! in the inventory API, never in labels.

mod agents;
mod alerts;
pub mod config;
mod family;
mod reach;
pub mod scrape;

use prometheus::{Encoder, TextEncoder};

use crate::exposition::config::ExpositionConfig;
use crate::exposition::family::Family;
pub use crate::exposition::scrape::Scrape;
use crate::telemetry::Telemetry;
use campanile_territory::evaluate::{ComuneView, Counts};

/// Renders the text exposition format (hosts, the territory's gaps and the
/// collector's own metrics) as consecutive parts of the body, one per
/// metric family or more, so that a large territory's body is never held twice: the HTTP side sends
/// the parts one after the other.
pub fn render_parts(
    scrape: &Scrape<'_>,
    cfg: &ExpositionConfig,
    telemetry: &Telemetry,
) -> Vec<String> {
    let mut families = host_families(scrape, cfg);
    families.extend(territory_families(scrape));
    families.extend(reach::families(scrape));
    families.extend(agents::families(scrape));
    families.extend(alerts::families(scrape));
    families.extend(collector_families(scrape));
    let mut parts: Vec<String> = families
        .into_iter()
        .filter(|f| !f.is_empty())
        .flat_map(Family::into_parts)
        .collect();
    // The collector's own counters and histograms: a few dozen series, kept
    // in the `prometheus` crate's registry where ingest updates them.
    let mut own = Vec::with_capacity(16 * 1024);
    TextEncoder::new()
        .encode(&telemetry.registry.gather(), &mut own)
        .expect("text encoding into a Vec cannot fail");
    parts.push(String::from_utf8(own).expect("text exposition is UTF-8"));
    parts
}

fn host_families(scrape: &Scrape<'_>, cfg: &ExpositionConfig) -> Vec<Family> {
    let Scrape {
        hosts,
        view,
        now_ms,
        ..
    } = scrape;
    let mut up = Family::gauge(
        "campanile_host_up",
        "1 if the host reported within the last 3 of its intervals, else 0.",
    );
    let mut last = Family::gauge(
        "campanile_host_last_report_timestamp_seconds",
        "When the collector committed the host's last report (collector clock).",
    );
    let mut info = Family::gauge(
        "campanile_host_info",
        "Host software facts from the inventory; always 1. Empty label = not collected.",
    );
    let mut cpu = Family::gauge(
        "campanile_host_cpu_usage_ratio",
        "CPU busy share over the agent's last interval.",
    );
    let mut load1 = Family::gauge("campanile_host_load1", "1-minute load average.");
    let mut load5 = Family::gauge("campanile_host_load5", "5-minute load average.");
    let mut load15 = Family::gauge("campanile_host_load15", "15-minute load average.");
    let mut mem_total = Family::gauge("campanile_host_memory_total_bytes", "Physical memory.");
    let mut mem_avail = Family::gauge(
        "campanile_host_memory_available_bytes",
        "Memory available for new work.",
    );
    let mut swap_total = Family::gauge("campanile_host_swap_total_bytes", "Swap space.");
    let mut swap_free = Family::gauge("campanile_host_swap_free_bytes", "Free swap space.");
    let mut uptime = Family::gauge(
        "campanile_host_uptime_seconds",
        "Host uptime at its last report.",
    );
    let mut procs = Family::gauge("campanile_host_processes", "Processes at the last report.");
    let mut failed = Family::gauge(
        "campanile_host_systemd_units_failed",
        "Failed systemd units (absent where systemd does not run).",
    );
    let mut fs_size = Family::gauge("campanile_filesystem_size_bytes", "Filesystem size.");
    let mut fs_avail = Family::gauge(
        "campanile_filesystem_avail_bytes",
        "Filesystem space available to unprivileged users.",
    );
    let mut rx = Family::counter(
        "campanile_network_receive_bytes_total",
        "Bytes received since boot.",
    );
    let mut tx = Family::counter(
        "campanile_network_transmit_bytes_total",
        "Bytes sent since boot.",
    );
    let mut rx_err = Family::counter(
        "campanile_network_receive_errors_total",
        "Receive errors since boot.",
    );
    let mut tx_err = Family::counter(
        "campanile_network_transmit_errors_total",
        "Transmit errors since boot.",
    );
    let mut rx_drop = Family::counter(
        "campanile_network_receive_drop_total",
        "Received packets dropped since boot.",
    );
    let mut tx_drop = Family::counter(
        "campanile_network_transmit_drop_total",
        "Outgoing packets dropped since boot.",
    );
    let mut eol = Family::gauge(
        "campanile_host_os_eol_timestamp_seconds",
        "When the host's OS release reaches end of life (start of that day, UTC); days left: \
         (this - time()) / 86400. Absent when the release is not in the catalog.",
    );

    for (h, hv) in hosts.iter().zip(&view.hosts) {
        // The assigned site: the register's, else the certificate's.
        let l: [(&str, &str); 2] = [("host", &h.host_id), ("site", &hv.site)];
        up.push(&l, if h.is_up(*now_ms) { 1.0 } else { 0.0 });
        if let Some(os) = &hv.os {
            eol.push(&l, os.eol_timestamp_secs as f64);
        }
        last.push(&l, h.last_report_ms as f64 / 1000.0);
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        let (hostname, os, os_version, kernel, arch) = (
            s(&h.hostname),
            s(&h.os_name),
            s(&h.os_version),
            s(&h.kernel),
            s(&h.arch),
        );
        info.push(
            &[
                l[0],
                l[1],
                ("hostname", &hostname),
                ("os", &os),
                ("os_version", &os_version),
                ("kernel", &kernel),
                ("arch", &arch),
                ("agent_version", &h.agent_version),
                ("istat_code", hv.istat_code.as_deref().unwrap_or_default()),
                ("planned", if hv.planned { "true" } else { "false" }),
            ],
            1.0,
        );
        let Some(health) = &h.health else { continue };
        cpu.push_opt(&l, health.cpu_usage_ratio);
        load1.push_opt(&l, health.load1);
        load5.push_opt(&l, health.load5);
        load15.push_opt(&l, health.load15);
        let b = |v: Option<u64>| v.map(|x| x as f64);
        mem_total.push_opt(&l, b(health.memory_total_bytes));
        mem_avail.push_opt(&l, b(health.memory_available_bytes));
        swap_total.push_opt(&l, b(health.swap_total_bytes));
        swap_free.push_opt(&l, b(health.swap_free_bytes));
        uptime.push_opt(&l, b(health.uptime_seconds));
        procs.push_opt(&l, health.process_count);
        failed.push_opt(&l, health.failed_units.as_ref().map(|f| f.count));
        // The same mount point twice (bind mounts) would make duplicate series.
        let mut seen = std::collections::HashSet::new();
        for fs in health
            .filesystems
            .iter()
            .filter(|f| seen.insert(f.mount_point.as_str()))
            .take(cfg.max_filesystems_per_host)
        {
            let fl = [
                l[0],
                l[1],
                ("mountpoint", fs.mount_point.as_str()),
                ("fstype", fs.fs_type.as_str()),
            ];
            fs_size.push(&fl, fs.size_bytes as f64);
            fs_avail.push(&fl, fs.available_bytes as f64);
        }
        let mut seen = std::collections::HashSet::new();
        for i in health
            .interfaces
            .iter()
            .filter(|i| seen.insert(i.name.as_str()))
            .take(cfg.max_interfaces_per_host)
        {
            let il = [l[0], l[1], ("interface", i.name.as_str())];
            rx.push(&il, i.rx_bytes as f64);
            tx.push(&il, i.tx_bytes as f64);
            rx_err.push_opt(&il, b(i.rx_errors));
            tx_err.push_opt(&il, b(i.tx_errors));
            rx_drop.push_opt(&il, b(i.rx_dropped));
            tx_drop.push_opt(&il, b(i.tx_dropped));
        }
    }

    [
        up, last, info, eol, cpu, load1, load5, load15, mem_total, mem_avail, swap_total,
        swap_free, uptime, procs, failed, fs_size, fs_avail, rx, tx, rx_err, tx_err, rx_drop,
        tx_drop,
    ]
    .into()
}

/// Name, help and how to read the value.
type Reading<T> = (&'static str, &'static str, fn(&T) -> f64);

fn territory_families(scrape: &Scrape<'_>) -> Vec<Family> {
    let names: std::collections::HashMap<&str, &str> = scrape
        .register
        .comuni
        .iter()
        .map(|c| (c.istat_code.as_str(), c.name.as_str()))
        .collect();
    let site_gauges: [Reading<Counts>; 5] = [
        (
            "campanile_site_hosts_expected",
            "Assets the register plans at the site.",
            |c| c.expected as f64,
        ),
        (
            "campanile_site_hosts_reporting",
            "Hosts assigned to the site that are up.",
            |c| c.reporting as f64,
        ),
        (
            "campanile_site_hosts_offline",
            "Hosts assigned to the site that reported within missing_after_days but are not up.",
            |c| c.offline as f64,
        ),
        (
            "campanile_site_hosts_missing",
            "Planned assets that never reported, or not for missing_after_days.",
            |c| c.missing as f64,
        ),
        (
            "campanile_site_hosts_unplanned",
            "Hosts reporting from the site that match no planned asset.",
            |c| c.unplanned as f64,
        ),
    ];
    let mut out = Vec::new();
    for (name, help, get) in site_gauges {
        let mut f = Family::gauge(name, help);
        for s in &scrape.view.sites {
            let code = s.istat_code.as_deref().unwrap_or_default();
            let comune = names.get(code).copied().unwrap_or_default();
            f.push(
                &[("site", &s.id), ("comune", comune), ("istat_code", code)],
                get(&s.counts),
            );
        }
        out.push(f);
    }
    let comune_gauges: [Reading<ComuneView>; 6] = [
        (
            "campanile_comune_hosts",
            "Hosts of the comune that are up or offline (the base of the ratios).",
            |c| c.counts.hosts as f64,
        ),
        (
            "campanile_comune_hosts_os_eol",
            "Hosts whose OS is past end of life.",
            |c| c.counts.os_eol as f64,
        ),
        (
            "campanile_comune_hosts_os_unknown",
            "Hosts whose OS is not in the end-of-life catalog (unknown, not supported).",
            |c| c.counts.os_unknown as f64,
        ),
        (
            "campanile_comune_hosts_under_spec",
            "Hosts short of RAM or system disk, too old, or unable to run Windows 11.",
            |c| c.counts.under_spec as f64,
        ),
        (
            "campanile_comune_hosts_nearly_full",
            "Hosts with a filesystem above nearly_full_percent.",
            |c| c.counts.nearly_full as f64,
        ),
        (
            "campanile_comune_gap_score",
            "Weighted share of gaps, 0 (none) to 1; see the README for the formula.",
            |c| c.gap_score,
        ),
    ];
    for (name, help, get) in comune_gauges {
        let mut f = Family::gauge(name, help);
        for c in &scrape.view.comuni {
            f.push(
                &[("comune", &c.name), ("istat_code", &c.istat_code)],
                get(c),
            );
        }
        out.push(f);
    }
    out
}

fn collector_families(scrape: &Scrape<'_>) -> Vec<Family> {
    let mut hosts_known = Family::gauge(
        "campanile_hosts",
        "Hosts the collector has ever received a report from.",
    );
    hosts_known.push(&[], scrape.hosts.len() as f64);
    let mut store_size = Family::gauge(
        "campanile_store_size_bytes",
        "Size of the SQLite store (database and WAL).",
    );
    store_size.push(&[], scrape.store_size_bytes as f64);
    let health = scrape.store_health;
    let mut problems = Family::gauge(
        "campanile_store_integrity_problems",
        "Problems PRAGMA quick_check found in the store when the collector started (0: none; \
         at most 20 are counted).",
    );
    problems.push(&[], health.integrity_problems as f64);
    let mut lost = Family::gauge(
        "campanile_store_hosts_lost_at_start",
        "1 if the store held fewer than half the hosts of the last run when the collector \
         started (the store file was replaced, truncated or restored from an old backup).",
    );
    lost.push(&[], f64::from(u8::from(health.hosts_lost)));
    let mut last_run = Family::gauge(
        "campanile_store_hosts_last_run",
        "Hosts the store held at the end of the last run, as its census file says.",
    );
    if let Some(n) = health.hosts_last_run {
        last_run.push(&[], n as f64);
    }
    let mut damaged = Family::counter(
        "campanile_store_damaged_rows_total",
        "Stored values found undecodable since the start, set aside in damaged_rows; the \
         host's next report replaces them.",
    );
    damaged.push(&[], health.damaged_rows as f64);
    let mut reload_ok = Family::gauge(
        "campanile_register_last_reload_successful",
        "1 if the last reload of the register and catalog succeeded; 0: the previous one is in force.",
    );
    reload_ok.push(&[], f64::from(u8::from(scrape.reload.last_successful)));
    let mut reload_ts = Family::gauge(
        "campanile_register_last_reload_success_timestamp_seconds",
        "When the register in force was loaded.",
    );
    reload_ts.push(&[], scrape.reload.last_success_ms as f64 / 1000.0);
    let mut entries = Family::gauge(
        "campanile_register_entries",
        "Entries of the register in force, by kind.",
    );
    for (kind, n) in [
        ("comuni", scrape.register.comuni.len()),
        ("sites", scrape.register.sites.len()),
        ("assets", scrape.register.assets.len()),
        ("devices", scrape.register.devices.len()),
    ] {
        entries.push(&[("kind", kind)], n as f64);
    }
    [
        hosts_known,
        store_size,
        problems,
        lost,
        last_run,
        damaged,
        reload_ok,
        reload_ts,
        entries,
    ]
    .into()
}
