//! The collector's ingest rate beside a bare tonic mTLS server that decodes
//! the same requests and does nothing else (`bare-ingest`). The fleet
//! simulator runs closed loop (each agent sends its next report as soon as
//! the last is answered), in turns against each, so both see the same
//! machine.

use std::time::Duration;

use anyhow::{Context, Result};

use super::{Binaries, CollectorProcess, Figure, Section};
use crate::fleet::{self, Fleet, Layout, RunConfig, Summary, Target};
use campanile_tests::{ChildGuard, TestPki};

pub struct Options {
    pub agents: usize,
    pub seconds: u64,
    pub rounds: usize,
}

pub async fn run(bins: &Binaries, opts: &Options) -> Result<Section> {
    let pki = TestPki::new()?;
    let layout = Layout::new(opts.agents, 11);
    let register = pki.path().join("register.toml");
    std::fs::write(&register, layout.register_toml())?;
    let fleet = Fleet::prepare(layout, pki.path())?;
    let collector = CollectorProcess::start(
        &bins.collector,
        &pki,
        &format!("[territory]\nregister_path = \"{}\"", register.display()),
    )
    .await?;
    let mut bare = std::process::Command::new(&bins.bare_ingest)
        .arg(pki.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("start bare-ingest")?;
    let addr = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(bare.stdout.take().context("bare-ingest stdout")?)
            .read_line(&mut line)?;
        line.trim().parse().context("bare-ingest address")?
    };
    let _bare = ChildGuard(bare);

    let round = |addr| RunConfig {
        target: Target {
            addr,
            server_name: "localhost".into(),
            source_addrs: crate::fleet::connect::loopback_sources(opts.agents),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        },
        agents: opts.agents,
        interval: Duration::ZERO,
        jitter: Duration::ZERO,
        ramp: Duration::ZERO,
        duration: Duration::from_secs(opts.seconds),
        warmup: Duration::from_secs(opts.seconds / 4),
        seed: 11,
        reconnect_each_report: false,
        inventory_change_per_million: 0,
    };
    let (mut best_c, mut best_b): (Option<Summary>, Option<Summary>) = (None, None);
    let better = |best: Option<Summary>, s: Summary| match best {
        Some(b) if b.achieved_rate >= s.achieved_rate => Some(b),
        _ => Some(s),
    };
    for _ in 0..opts.rounds {
        let c = fleet::run(&fleet, &round(collector.grpc), false).await?;
        anyhow::ensure!(c.error_count() == 0, "collector errors: {:?}", c.errors);
        best_c = better(best_c, c);
        let b = fleet::run(&fleet, &round(addr), false).await?;
        anyhow::ensure!(b.error_count() == 0, "bare server errors: {:?}", b.errors);
        best_b = better(best_b, b);
    }
    let (c, b) = (best_c.context("no round")?, best_b.context("no round")?);
    let ratio = c.achieved_rate / b.achieved_rate;
    let mut s = Section::new(
        "Ingest beside a bare tonic server",
        format!(
            "{} simulated agents (own certificate each, one connection each, 25 per loopback \
             source address) send closed loop \
             for {} s (rate measured after {} s), alternately against the release collector \
             (validation, identity checks, group commit to SQLite with fsync) and against \
             `bare-ingest` (tonic's own mTLS, decode, ack). Best of {} rounds each; steady \
             hash-only reports with health and probes ({:.0} B per request).",
            opts.agents,
            opts.seconds,
            opts.seconds / 4,
            opts.rounds,
            c.mean_request_bytes
        ),
    );
    s.figures.push(Figure::goal(
        "reports/s, collector / bare server",
        format!(
            "{:.0} / {:.0} = {ratio:.2}",
            c.achieved_rate, b.achieved_rate
        ),
        "≥ 0.5",
        ratio >= 0.5,
    ));
    s.figures.push(Figure::info(
        "report RPC p50 / p99 at that load, collector",
        format!("{:.1} / {:.1} ms", c.latency.p50_ms, c.latency.p99_ms),
    ));
    s.figures.push(Figure::info(
        "report RPC p50 / p99 at that load, bare server",
        format!("{:.1} / {:.1} ms", b.latency.p50_ms, b.latency.p99_ms),
    ));
    Ok(s)
}
