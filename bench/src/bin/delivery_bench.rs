//! Delivery benchmark (`make bench`), the figures of the no-loss issue:
//! - reports per second one collector commits with group commit versus one
//!   SQLite transaction per report (the real store file, fsync on commit);
//! - RSS of the real release agent running on a full spool with the
//!   collector down, then while it drains the spool;
//! - time for 1,000 agents (real `Agent`s with their own certificates and
//!   spools, over mTLS to an in-process collector) to drain a one-hour
//!   backlog each (60 reports at a 60 s interval) after an outage.
//!
//! Usage: `delivery-bench [--json] <path to the release campanile-agent>`.
//! Prints its section of the `make bench` record: Markdown, or JSON with
//! `--json` (how `benchmarks` runs it).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use campanile_agent::spool::Spool;
use campanile_agent::{Agent, AgentConfig, SendOutcome};
use campanile_bench::harness::{Figure, Section};
use campanile_collector::store::Store;
use campanile_collector::store::commit::{self, Committer};
use campanile_collector::telemetry::Telemetry;
use campanile_proto::identity::HostIdentity;
use campanile_tests::{ChildGuard, TestCollector, TestPki, sample, steady_report};

/// Reports committed per second over `duration`, `writers` concurrent
/// requests of one report each (as concurrent gRPC handlers hand them over).
async fn commit_rate(max_group_reports: usize, duration: Duration) -> Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(Store::open(&dir.path().join("bench.db"))?);
    let telemetry = Arc::new(Telemetry::new());
    let (committer, thread) = Committer::start(
        store,
        Arc::new(BTreeSet::from(["gateway".to_owned(), "centre".to_owned()])),
        telemetry.clone(),
        max_group_reports,
    );
    let base = steady_report("bench").await;
    let committed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let writers = 200;
    let hosts_per_writer = 5;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let (committer, committed, base) = (committer.clone(), committed.clone(), base.clone());
        tasks.spawn(async move {
            let ids: Vec<HostIdentity> = (0..hosts_per_writer)
                .map(|h| {
                    HostIdentity::new(&format!("bench-{w:03}-{h}"), &format!("site-{}", w % 50))
                        .expect("valid id")
                })
                .collect();
            let mut seq = 0u64;
            while Instant::now() < deadline {
                seq += 1;
                for id in &ids {
                    let mut r = base.clone();
                    r.host_id = id.host_id.clone();
                    r.epoch = 1;
                    r.seq = seq;
                    r.collected_at_ms += seq as i64 * 60_000;
                    let request = commit::Request {
                        identity: id.clone(),
                        reports: vec![r],
                        agent_stats: None,
                        received_ms: campanile_agent::now_ms(),
                        site: id.site.clone(),
                        peer: Default::default(),
                    };
                    committer.commit(request).await.expect("commit");
                    committed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let started = Instant::now();
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    drop(committer);
    tokio::task::spawn_blocking(move || thread.join()).await?;
    let n = committed.load(Ordering::Relaxed) as f64;
    let groups = telemetry.commit_reports.get_sample_count() as f64;
    Ok((n / elapsed, n / groups.max(1.0)))
}

fn rss_kib(pid: u32) -> u64 {
    campanile_tests::procs::rss_bytes(pid).unwrap_or(0) / 1024
}

fn peak_rss_kib(pid: u32) -> u64 {
    campanile_tests::procs::peak_rss_bytes(pid).unwrap_or(0) / 1024
}

struct SpoolFigures {
    spool_reports: u64,
    spool_bytes: u64,
    rss_down_kib: u64,
    peak_down_kib: u64,
    peak_draining_kib: u64,
    drain_secs: f64,
}

/// The release agent on a full default spool (32 MiB), collector down,
/// then up.
async fn full_spool(agent_bin: &Path) -> Result<SpoolFigures> {
    let pki = TestPki::new()?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("campanile.db");
    let (text, port) = pki.offline_agent_toml("rss-pc", "site-rss", 5)?;
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, &text)?;
    let cfg = AgentConfig::parse(&text, &config)?;
    let (spool_reports, spool_bytes, last, epoch) = {
        let mut spool = Spool::open(&cfg.send.spool)?;
        let base = steady_report("rss-pc").await;
        let size = {
            let mut r = base.clone();
            r.epoch = spool.epoch();
            r.seq = 1 << 20;
            prost::Message::encoded_len(&r) as u64
        };
        let target = cfg.send.spool.max_bytes - 64 * size;
        let mut t = base.collected_at_ms - 7 * 86_400_000;
        while spool.bytes() < target {
            let n = ((target - spool.bytes()) / size).clamp(1, 5000);
            let chunk = (0..n)
                .map(|_| {
                    let mut r = base.clone();
                    t += 60_000;
                    r.collected_at_ms = t.min(base.collected_at_ms);
                    r
                })
                .collect();
            spool.append_many(chunk)?;
        }
        (
            spool.len(),
            spool.bytes(),
            spool.next_seq() - 1,
            spool.epoch(),
        )
    };
    let child = Command::new(agent_bin)
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let agent = ChildGuard(child);
    let pid = agent.0.id();
    // Three collection cycles against a closed port: each appends to the
    // full spool (dropping the oldest) and fails to send.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let rss_down_kib = rss_kib(pid);
    let peak_down_kib = peak_rss_kib(pid);
    let c = TestCollector::start_on(&pki, &db, port).await?;
    let started = Instant::now();
    loop {
        if c.running
            .store
            .delivered_seq("rss-pc", epoch)?
            .is_some_and(|s| s >= last)
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the full spool did not drain in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain_secs = started.elapsed().as_secs_f64();
    let peak_draining_kib = peak_rss_kib(pid);
    drop(agent);
    c.stop().await?;
    Ok(SpoolFigures {
        spool_reports,
        spool_bytes,
        rss_down_kib,
        peak_down_kib,
        peak_draining_kib,
        drain_secs,
    })
}

/// 1,000 agents, each with an hour of reports spooled, come back at once.
async fn drain_fleet(agents: usize, backlog: usize) -> Result<(f64, f64)> {
    let pki = TestPki::new()?;
    let c = TestCollector::start(&pki).await?;
    let base = steady_report("fleet").await;
    let mut fleet = Vec::with_capacity(agents);
    for i in 0..agents {
        let host = format!("fleet-{i:04}");
        let cfg = pki.agent_config(&host, &format!("site-{}", i % 50), c.running.grpc_addr, 60)?;
        {
            let mut spool = Spool::open(&cfg.send.spool)?;
            let reports = (0..backlog)
                .map(|k| {
                    let mut r = base.clone();
                    r.host_id = host.clone();
                    r.collected_at_ms = base.collected_at_ms - ((backlog - k) as i64) * 60_000;
                    r
                })
                .collect();
            spool.append_many(reports)?;
        }
        fleet.push(Agent::new(cfg)?);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut agent in fleet {
        tasks.spawn(async move {
            loop {
                match agent.send().await {
                    SendOutcome::Drained => return Ok(()),
                    SendOutcome::More => {}
                    SendOutcome::RetryAfter(d) => tokio::time::sleep(d).await,
                }
                if started.elapsed() > Duration::from_secs(900) {
                    bail!("agent did not drain in 15 minutes");
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let secs = started.elapsed().as_secs_f64();
    let text = c.metrics().await?;
    let accepted = sample(&text, "campanile_ingest_reports_accepted_total").unwrap_or(0.0);
    let expected = (agents * backlog) as f64;
    if accepted != expected {
        bail!("collector accepted {accepted} reports, expected {expected}");
    }
    c.stop().await?;
    Ok((secs, expected / secs))
}

#[tokio::main]
async fn main() -> Result<()> {
    campanile_tests::init_crypto();
    let agent_bin = std::env::args()
        .skip(1)
        .find(|a| a != "--json")
        .context("usage: delivery-bench [--json] <path to the release campanile-agent>")?;
    let per_report = commit_rate(1, Duration::from_secs(10)).await?;
    let grouped = commit_rate(
        campanile_collector::GROUP_COMMIT_MAX_REPORTS,
        Duration::from_secs(10),
    )
    .await?;
    let spool = full_spool(Path::new(&agent_bin)).await?;
    let (drain_secs, drain_rate) = drain_fleet(1000, 60).await?;

    let mut section = Section::new(
        "Delivery",
        "Commit rates on the real store file (WAL, `synchronous=FULL`) with 200 concurrent \
         one-report requests from 1,000 hosts; a full default spool filled while the collector \
         is down, then drained by the real release agent; 1,000 real agents (own certificate, \
         own spool, own mTLS connection) and the collector in one process draining an hour's \
         backlog all at once (`delivery-bench`, release build).",
    );
    let info = |what: &str, measured: String| Figure::info(what, measured);
    section.figures = vec![
        info(
            "commits, one transaction per report",
            format!("{:.0} reports/s", per_report.0),
        ),
        info(
            "commits, group commit",
            format!(
                "{:.0} reports/s ({:.1} reports per transaction): {:.1}×",
                grouped.0,
                grouped.1,
                grouped.0 / per_report.0
            ),
        ),
        info(
            "full default spool",
            format!(
                "{} reports, {:.1} MiB",
                spool.spool_reports,
                spool.spool_bytes as f64 / 1048576.0
            ),
        ),
        info(
            "release agent RSS on the full spool, collector down",
            format!(
                "{:.1} MiB (peak {:.1} MiB)",
                spool.rss_down_kib as f64 / 1024.0,
                spool.peak_down_kib as f64 / 1024.0
            ),
        ),
        info(
            "release agent peak RSS while draining it",
            format!("{:.1} MiB", spool.peak_draining_kib as f64 / 1024.0),
        ),
        info(
            "that full spool drained, one agent",
            format!(
                "{:.1} s ({:.0} reports/s)",
                spool.drain_secs,
                spool.spool_reports as f64 / spool.drain_secs
            ),
        ),
        info(
            "1,000 agents drain a 1-hour backlog (60,000 reports)",
            format!("{drain_secs:.1} s ({drain_rate:.0} reports/s)"),
        ),
    ];
    section.print(std::env::args().any(|a| a == "--json"))
}
