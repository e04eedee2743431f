//! Territory scale benchmark (`make bench`; `territory-scale [hosts]`): a
//! store with 10,000 hosts (or the number given) in 500 sites and 100 comuni (each host with 6 filesystems and 2 interfaces,
//! the per-host maximum), a register planning most of them, then
//! - series on `/metrics`, per host and for the site and comune aggregates,
//!   with every host probing its gateway, resolver and the collector and
//!   two agentless devices per site (reachability series),
//! - time to take the hosts' state, evaluate the territory and render
//!   `/metrics` with a quarter of the hosts reported since the last scrape
//!   (and to evaluate with none judged before, as the first scrape does),
//!   and to open the store (every host loaded into memory),
//! - time to build `/api/v1/gaps`,
//! - the process's peak memory.
//!
//! Prints its section of the `make bench` record: Markdown, or JSON with
//! `--json` (how `benchmarks` runs it, as a process of its own so that its
//! peak memory is its own).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use campanile_bench::harness::{Figure, Section};
use campanile_collector::exposition::config::ExpositionConfig;
use campanile_collector::exposition::{self, Scrape};
use campanile_collector::http::config::ApiConfig;
use campanile_collector::http::state::HttpState;
use campanile_collector::reach::aggregate;
use campanile_collector::reach::config::ProbesConfig;
use campanile_collector::reach::{Reach, WanState};
use campanile_collector::store::{ProbeCounting, Store};
use campanile_collector::telemetry::Telemetry;
use campanile_proto::identity::HostIdentity;
use campanile_proto::v1::{
    Disk, DiskList, Dmi, Filesystem, Health, IcmpResult, Inventory, NetInterface, Nic, NicList,
    Probes, Report, TcpResult,
};
use campanile_territory::config::TerritoryConfig;
use campanile_territory::evaluate;
use campanile_territory::state::Territory;

/// Hosts: the first argument, 10,000 by default; 20 hosts a site and 5
/// sites a comune, as in the default run.
static SCALE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

fn hosts() -> usize {
    *SCALE.get_or_init(|| {
        std::env::args()
            .skip(1)
            .find_map(|a| a.parse().ok())
            .filter(|&n: &usize| n >= 1_000 && n.is_multiple_of(100))
            .unwrap_or(10_000)
    })
}

fn sites() -> usize {
    hosts() / 20
}

fn comuni() -> usize {
    sites() / 5
}
const RUNS: usize = 5;

fn report(i: usize, now_ms: i64, seq: u64) -> Report {
    let inventory = Inventory {
        hostname: Some(format!("PC-{i:05}")),
        os_name: Some(
            if i.is_multiple_of(3) {
                "Windows"
            } else {
                "Debian GNU/Linux"
            }
            .into(),
        ),
        os_version: Some(
            if i.is_multiple_of(3) {
                "10 (19045)"
            } else {
                "12"
            }
            .into(),
        ),
        os_edition: i.is_multiple_of(3).then(|| "Windows 10 Pro".into()),
        arch: Some("x86_64".into()),
        cpu_model: Some("Intel(R) Core(TM) i5-6500 CPU @ 3.20GHz".into()),
        memory_total_bytes: Some(if i.is_multiple_of(7) { 4 } else { 16 } << 30),
        disks: Some(DiskList {
            items: vec![Disk {
                name: "sda".into(),
                size_bytes: Some(256_000_000_000),
                ..Default::default()
            }],
        }),
        nics: Some(NicList {
            items: vec![Nic {
                name: "eth0".into(),
                mac: Some(format!(
                    "52:54:00:{:02x}:{:02x}:{:02x}",
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255
                )),
                addresses: vec![],
            }],
        }),
        dmi: Some(Dmi {
            product_serial: Some(format!("SN{i:06}")),
            bios_date: Some("03/15/2017".into()),
            ..Default::default()
        }),
        agent_version: "bench".into(),
        ..Default::default()
    };
    let fs = |n: usize| Filesystem {
        mount_point: if n == 0 {
            "/".into()
        } else {
            format!("/data{n}")
        },
        device: format!("/dev/sda{n}"),
        fs_type: "ext4".into(),
        size_bytes: 100 << 30,
        available_bytes: if i.is_multiple_of(11) {
            5 << 30
        } else {
            50 << 30
        },
    };
    let nic = |n: usize| NetInterface {
        name: format!("eth{n}"),
        rx_bytes: 1 << 30,
        tx_bytes: 1 << 29,
        rx_errors: Some(0),
        tx_errors: Some(0),
        rx_dropped: Some(0),
        tx_dropped: Some(0),
    };
    Report {
        host_id: format!("pc-{i:05}"),
        epoch: 1,
        seq,
        collected_at_ms: now_ms,
        interval_secs: 60,
        agent_version: "bench".into(),
        inventory_sha256: campanile_proto::inventory_sha256(&inventory).to_vec(),
        inventory: Some(inventory),
        health: Some(Health {
            cpu_usage_ratio: Some(0.1),
            load1: Some(0.1),
            load5: Some(0.1),
            load15: Some(0.1),
            memory_total_bytes: Some(16 << 30),
            memory_available_bytes: Some(8 << 30),
            swap_total_bytes: Some(1 << 30),
            swap_free_bytes: Some(1 << 30),
            uptime_seconds: Some(3600),
            process_count: Some(200),
            failed_units: Some(Default::default()),
            filesystems: (0..6).map(fs).collect(),
            interfaces: (0..2).map(nic).collect(),
            ..Default::default()
        }),
        agent_stats: None,
        probes: Some(probes(i)),
        probe_duty_sha256: Vec::new(),
    }
}

/// What a real agent's cycle looks like: ICMP to the gateway, a resolver
/// and the collector; the site's two devices for the agent on duty.
fn probes(i: usize) -> Probes {
    let icmp = |target: &str, device: &str| IcmpResult {
        target: target.into(),
        device: device.into(),
        address: "192.0.2.1".into(),
        sent: 5,
        lost: u32::from(i.is_multiple_of(10)),
        rtt_min_seconds: Some(0.001),
        rtt_avg_seconds: Some(0.002),
        rtt_max_seconds: Some(0.004),
        rtt_stddev_seconds: Some(0.001),
        error: None,
    };
    let mut out = Probes {
        icmp: vec![icmp("gateway", ""), icmp("dns1", ""), icmp("collector", "")],
        tcp: vec![TcpResult {
            target: "centre".into(),
            address: "192.0.2.80:443".into(),
            success: true,
            seconds: 0.02,
            ..Default::default()
        }],
        ..Default::default()
    };
    if i < sites() {
        let s = i % sites();
        out.icmp.push(icmp("", &format!("router-{s:03}")));
        out.icmp.push(icmp("", &format!("switch-{s:03}")));
    }
    out
}

/// 100 comuni of 5 sites; 9,800 hosts planned (by serial, MAC or hostname
/// in turn), 200 planned assets that never report; the last 200 hosts are
/// unplanned.
fn register() -> String {
    let mut out = String::new();
    for c in 0..comuni() {
        out += &format!(
            "[[comune]]\nistat_code = \"{:06}\"\nname = \"Comune {c}\"\nprovince = \"BO\"\n\n",
            900_000 + c
        );
    }
    for s in 0..sites() {
        out += &format!(
            "[[site]]\nid = \"site-{s:03}\"\ncomune = \"{:06}\"\nname = \"Sede {s}\"\nkind = \"town_hall\"\nwan_address = \"192.0.2.1\"\n\n\
             [[device]]\nid = \"router-{s:03}\"\nsite = \"site-{s:03}\"\naddress = \"192.0.2.1\"\nkind = \"router\"\n\n\
             [[device]]\nid = \"switch-{s:03}\"\nsite = \"site-{s:03}\"\naddress = \"192.0.2.2\"\nkind = \"switch\"\n\n",
            900_000 + s / (sites() / comuni())
        );
    }
    for i in 0..hosts() - 200 {
        let key = match i % 3 {
            0 => format!("serial = \"SN{i:06}\""),
            1 => format!(
                "mac = \"52:54:00:{:02x}:{:02x}:{:02x}\"",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            ),
            _ => format!("hostname = \"pc-{i:05}\""),
        };
        out += &format!("[[asset]]\nsite = \"site-{:03}\"\n{key}\n\n", i % sites());
    }
    for m in 0..200 {
        out += &format!(
            "[[asset]]\nsite = \"site-{:03}\"\nhostname = \"never-{m}\"\n\n",
            m % sites()
        );
    }
    out
}

fn peak_rss_mib() -> Result<f64> {
    let bytes = campanile_tests::procs::peak_rss_bytes(std::process::id()).context("VmHWM")?;
    Ok(bytes as f64 / (1024.0 * 1024.0))
}

fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let register_path = dir.path().join("register.toml");
    std::fs::write(&register_path, register())?;
    let db = dir.path().join("campanile.db");
    let store = Store::open(&db)?;
    let now = campanile_agent::now_ms();
    let probes_cfg = ProbesConfig::default();
    let started = Instant::now();
    let ingest = |store: &Store, i: usize, seq: u64| -> Result<()> {
        let site = format!("site-{:03}", i % sites());
        let id = HostIdentity::new(&format!("pc-{i:05}"), &site)?;
        let counting = ProbeCounting {
            site: &site,
            targets: &probes_cfg.targets,
        };
        store.ingest(&id, &[report(i, now, seq)], now, &counting)?;
        Ok(())
    };
    for i in 0..hosts() {
        ingest(&store, i, 1)?;
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    // As a collector restarts: every host read from the file into memory.
    drop(store);
    let opened = Instant::now();
    let store = Arc::new(Store::open(&db)?);
    let open_ms = opened.elapsed().as_secs_f64() * 1e3;

    let territory = Arc::new(Territory::load(
        TerritoryConfig {
            register_path: Some(register_path),
            ..TerritoryConfig::default()
        },
        now,
    )?);
    let state = HttpState {
        background: campanile_collector::read::background::Background::start()?,
        store: store.clone(),
        telemetry: Arc::new(Telemetry::new()),
        exposition: ExpositionConfig::default(),
        territory: territory.clone(),
        api: Arc::new(ApiConfig::default()),
        reach: Arc::new(Reach::new(probes_cfg.clone())),
        alerts: campanile_collector::alerts::Alerts::open(
            campanile_collector::alerts::AlertsConfig::defaults(
                &dir.path().join("campanile.db"),
                "127.0.0.1:9471".parse()?,
            ),
        )?
        .0,
        enrollment: None,
    };

    let (mut read_ms, mut eval_ms, mut render_ms, mut gaps_ms) = (vec![], vec![], vec![], vec![]);
    let mut parts = Vec::new();
    let mut gap_count = 0;
    let mut cold_eval_ms = 0.0;
    let mut anew_ms = Vec::new();
    for run in 0..RUNS {
        if run > 0 {
            // Between two scrapes 15 s apart, a quarter of the agents on a
            // 60 s interval report: their states are new, the rest as the
            // last evaluation judged them.
            for i in (0..hosts()).filter(|i| i % 4 == run % 4) {
                ingest(&store, i, 1 + run as u64)?;
            }
        }
        let t0 = Instant::now();
        let hosts = store.host_states();
        let read = t0.elapsed();
        if run > 0 {
            // The same hosts judged anew, as every evaluation did before
            // the territory kept its judgements: the comparison, same data,
            // same minute.
            let fresh = Instant::now();
            let loaded = territory.current();
            std::hint::black_box(evaluate::evaluate(
                &loaded.register,
                &loaded.catalog,
                territory.config(),
                &hosts,
                now,
            ));
            anew_ms.push(fresh.elapsed().as_secs_f64() * 1e3);
        }
        let t1 = Instant::now();
        let (loaded, view) = territory.evaluate(&hosts, now);
        let probes =
            aggregate::aggregate(&view, &hosts, &loaded.register, &probes_cfg.targets, now);
        let counters = store.probe_counters()?;
        let t2 = Instant::now();
        // The parts a scrape sends, one after the other.
        parts = exposition::render_parts(
            &Scrape {
                hosts: &hosts,
                view: &view,
                register: &loaded.register,
                reload: &territory.status(),
                now_ms: now,
                store_size_bytes: store.size_bytes(),
                store_health: Default::default(),
                probes: &probes,
                probe_counters: &counters,
                wan: &WanState::default(),
                alerts: None,
            },
            &state.exposition,
            &state.telemetry,
        );
        let t3 = Instant::now();
        gap_count = evaluate::gaps(&view, &loaded.register).len();
        let body = serde_json::to_vec(&evaluate::gaps(&view, &loaded.register))?;
        let t4 = Instant::now();
        std::hint::black_box(body);
        read_ms.push(read.as_secs_f64() * 1e3);
        if run == 0 {
            cold_eval_ms = (t2 - t1).as_secs_f64() * 1e3;
        } else {
            eval_ms.push((t2 - t1).as_secs_f64() * 1e3);
        }
        render_ms.push((t3 - t2).as_secs_f64() * 1e3);
        gaps_ms.push((t4 - t3).as_secs_f64() * 1e3 / 2.0);
    }
    // Before the body is joined below for counting.
    let peak_mib = peak_rss_mib()?;
    let text = parts.concat();
    drop(parts);
    // One more through the HTTP state's own path, as a scrape does it.
    let snap = state.snapshot();
    assert_eq!(snap.hosts.len(), hosts());

    let series: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    let host_series = series.iter().filter(|l| l.contains("{host=\"")).count();
    let site_series = series
        .iter()
        .filter(|l| l.starts_with("campanile_site_"))
        .count();
    let comune_series = series
        .iter()
        .filter(|l| l.starts_with("campanile_comune_"))
        .count();
    let probe_series = series
        .iter()
        .filter(|l| l.starts_with("campanile_site_probe_"))
        .count();
    let device_series = series
        .iter()
        .filter(|l| l.starts_with("campanile_device_"))
        .count();
    let mut per_host = std::collections::HashMap::<&str, usize>::new();
    for l in &series {
        if let Some(rest) = l.split_once("{host=\"").map(|x| x.1)
            && let Some((h, _)) = rest.split_once('"')
        {
            *per_host.entry(h).or_default() += 1;
        }
    }
    let max_per_host = per_host.values().copied().max().unwrap_or(0);
    let read = campanile_bench::stats::median(read_ms);
    let eval = campanile_bench::stats::median(eval_ms);
    let render = campanile_bench::stats::median(render_ms);

    let mut section = Section::new(
        "Territory scale",
        format!(
            "A store of {} hosts in {} sites and {} comuni, each host with 6 filesystems and 2 \
             interfaces (the per-host maximum) and 4 probe targets, {} agentless devices, most \
             hosts planned in the register and some planned assets never reporting; medians of \
             {RUNS} scrapes, a quarter of the hosts reporting between two, in this process \
             (`territory-scale`, release build).",
            hosts(),
            sites(),
            comuni(),
            2 * sites()
        ),
    );
    let info = |what: &str, measured: String| Figure::info(what, measured);
    section.figures = vec![
        info("series on `/metrics`", series.len().to_string()),
        Figure::goal(
            "host series (max per host)",
            format!("{host_series} ({max_per_host})"),
            "≤ 40 per host",
            max_per_host <= 40,
        ),
        info(
            "site series / comune series",
            format!("{site_series} / {comune_series}"),
        ),
        info(
            "of the site series, probe targets (4 targets)",
            probe_series.to_string(),
        ),
        info("device series", device_series.to_string()),
        info(
            "`/metrics` body",
            format!("{:.1} MiB", text.len() as f64 / (1024.0 * 1024.0)),
        ),
        info(
            "one scrape: take hosts + evaluate + render",
            format!(
                "{read:.0} + {eval:.0} + {render:.0} = {:.0} ms",
                read + eval + render
            ),
        ),
        info(
            "evaluate with no host judged before (the first scrape)",
            format!("{cold_eval_ms:.0} ms"),
        ),
        info(
            "evaluate judging every host anew (the same hosts)",
            format!("{:.0} ms", campanile_bench::stats::median(anew_ms)),
        ),
        info(
            &format!("`/api/v1/gaps` ({gap_count} gaps)"),
            format!("{:.0} ms", campanile_bench::stats::median(gaps_ms)),
        ),
        info(
            "peak RSS of the benchmark process",
            format!("{peak_mib:.0} MiB"),
        ),
        info(
            "store opened, every host loaded into memory",
            format!("{open_ms:.0} ms"),
        ),
        info(
            "(setup: one ingest per host)",
            format!("{ingest_secs:.1} s"),
        ),
    ];
    section.print(std::env::args().any(|a| a == "--json"))
}
