//! The agent beside what users would install instead: Debian's
//! `prometheus-node-exporter`, scraped at the agent's interval, both on this
//! machine at the same time.
//!
//! - steady RSS: the largest resident size seen once both are warm;
//! - CPU per collection cycle (agent: collect + probe + send) against CPU
//!   per scrape (node_exporter: collect + render + gzip);
//! - stripped binary size;
//! - bytes on the wire per steady report (TLS records both ways, through
//!   a counting relay, keepalives included) against one gzip scrape
//!   (HTTP both ways, through the same kind of relay, on a kept-alive
//!   connection as Prometheus does it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::relay::CountingRelay;
use super::{Binaries, CollectorProcess, Figure, Section};
use campanile_tests::procs;
use campanile_tests::{ChildGuard, TestPki, free_port, sample};

pub struct Options {
    pub interval_secs: u64,
    /// Cycles measured after the warm-up.
    pub cycles: u64,
}

pub async fn run(bins: &Binaries, opts: &Options) -> Result<Section> {
    let node_exporter = campanile_tests::procs::require_tool("prometheus-node-exporter")?;
    let pki = TestPki::new()?;
    let collector = CollectorProcess::start(&bins.collector, &pki, "").await?;
    let agent_relay = CountingRelay::start(collector.grpc).await?;

    // The agent as installed: every collector on, probes as by default
    // (gateway, resolver, collector, a TCP check of the centre) but all
    // aimed at loopback, never at this machine's real network.
    let dir = tempfile::tempdir()?;
    let (cert, key) = pki.agent("bench-agent", "bench-site")?;
    let agent_cfg = dir.path().join("agent.toml");
    std::fs::write(
        &agent_cfg,
        format!(
            "[identity]\nhost_id = \"bench-agent\"\n\
             [collector]\nendpoint = \"https://{relay}\"\nserver_name = \"localhost\"\n\
             ca_cert_path = \"{ca}\"\ncert_path = \"{cert}\"\nkey_path = \"{key}\"\n\
             [collect]\ninterval_secs = {interval}\n\
             [spool]\npath = \"{spool}\"\n\
             [probes]\nauto_gateway = false\nauto_dns = false\nauto_collector = true\n\
             [[probes.icmp]]\nname = \"lan-gateway\"\naddress = \"127.0.0.1\"\n\
             [[probes.icmp]]\nname = \"resolver\"\naddress = \"127.0.0.1\"\n\
             [[probes.tcp]]\nname = \"centre\"\naddress = \"{http}\"\n",
            relay = agent_relay.addr,
            ca = pki.path().join("ca.pem").display(),
            cert = cert.display(),
            key = key.display(),
            interval = opts.interval_secs,
            spool = dir.path().join("spool.redb").display(),
            http = collector.http,
        ),
    )?;
    let agent = ChildGuard(
        std::process::Command::new(&bins.agent)
            .args(["run", "--config"])
            .arg(&agent_cfg)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .context("start the agent")?,
    );
    let agent_pid = agent.0.id();

    let ne_port = free_port()?;
    let ne = ChildGuard(
        std::process::Command::new(&node_exporter)
            .arg(format!("--web.listen-address=127.0.0.1:{ne_port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("start node_exporter")?,
    );
    let ne_pid = ne.0.id();
    let ne_relay = CountingRelay::start(([127, 0, 0, 1], ne_port).into()).await?;
    let scrapes = Arc::new(AtomicU64::new(0));
    let scraper = {
        let (scrapes, url) = (scrapes.clone(), format!("http://{}/metrics", ne_relay.addr));
        let interval = Duration::from_secs(opts.interval_secs);
        tokio::spawn(async move {
            // One client: the connection is kept alive between scrapes.
            let client = reqwest::Client::new();
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let ok = client
                    .get(&url)
                    // What Prometheus 2.x asks for.
                    .header(
                        "Accept",
                        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                    )
                    .header("Accept-Encoding", "gzip")
                    .send()
                    .await;
                if let Ok(resp) = ok
                    && resp.bytes().await.is_ok()
                {
                    scrapes.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let accepted = || async {
        let (_, text) = collector.scrape().await.ok()?;
        sample(&text, "campanile_ingest_reports_accepted_total")
    };
    // Warm-up: the full inventory goes out first, and the first CPU
    // reading of sysinfo is meaningless; node_exporter's first scrapes set
    // up its collectors.
    let deadline = Instant::now() + Duration::from_secs(opts.interval_secs * 6 + 60);
    while accepted().await.unwrap_or(0.0) < 3.0 || scrapes.load(Ordering::Relaxed) < 3 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "agent or node_exporter did not start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r0 = accepted().await.unwrap_or(0.0);
    let s0 = scrapes.load(Ordering::Relaxed);
    let (a_cpu0, n_cpu0) = (procs::cpu_seconds(agent_pid)?, procs::cpu_seconds(ne_pid)?);
    let (a_bytes0, n_bytes0) = (agent_relay.counts.total(), ne_relay.counts.total());
    let (mut a_rss, mut n_rss) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(opts.interval_secs * (opts.cycles + 10));
    loop {
        a_rss = a_rss.max(procs::rss_bytes(agent_pid).unwrap_or(0));
        n_rss = n_rss.max(procs::rss_bytes(ne_pid).unwrap_or(0));
        let done = accepted().await.unwrap_or(0.0) - r0;
        if done >= opts.cycles as f64 && scrapes.load(Ordering::Relaxed) - s0 >= opts.cycles {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "agent stalled after {done} reports"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let reports = accepted().await.unwrap_or(0.0) - r0;
    let n_scrapes = (scrapes.load(Ordering::Relaxed) - s0) as f64;
    let a_cpu = (procs::cpu_seconds(agent_pid)? - a_cpu0) / reports;
    let n_cpu = (procs::cpu_seconds(ne_pid)? - n_cpu0) / n_scrapes;
    let a_bytes = (agent_relay.counts.total() - a_bytes0) as f64 / reports;
    let n_bytes = (ne_relay.counts.total() - n_bytes0) as f64 / n_scrapes;
    scraper.abort();
    drop(agent);
    drop(ne);
    let a_size = procs::stripped_size(&bins.agent)?;
    let n_size = procs::stripped_size(&node_exporter)?;
    let ne_version = std::process::Command::new(&node_exporter)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines().next().map(str::to_owned)
        })
        .unwrap_or_default();

    let mut s = Section::new(
        "Agent beside node_exporter",
        format!(
            "The agent as it ships (profile `agent`, built for size; `make bench` builds it) and Debian's `{ne_version}` \
             (default collectors) run at the same time on this machine. The agent reports \
             every {i} s to a release collector through a byte-counting relay; node_exporter \
             is scraped every {i} s with gzip on a kept-alive connection through the same kind \
             of relay, as Prometheus does it. Measured over {reports:.0} reports and \
             {n_scrapes:.0} scrapes after a warm-up (the agent's first report carries the full \
             inventory). The agent probes three ICMP targets and one TCP target per cycle, all on loopback.",
            i = opts.interval_secs
        ),
    );
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::INFINITY };
    let r = ratio(a_rss as f64, n_rss as f64);
    s.figures.push(Figure::goal(
        "steady RSS, agent / node_exporter",
        format!("{} / {} = {r:.2}", super::mib(a_rss), super::mib(n_rss)),
        "≤ 0.33",
        r <= 1.0 / 3.0,
    ));
    let r = ratio(a_cpu, n_cpu);
    s.figures.push(Figure::goal(
        "CPU per cycle / per scrape",
        format!("{:.2} ms / {:.2} ms = {r:.2}", a_cpu * 1e3, n_cpu * 1e3),
        "≤ 0.5",
        r <= 0.5,
    ));
    let r = ratio(a_size as f64, n_size as f64);
    s.figures.push(Figure::goal(
        "stripped binary, agent / node_exporter",
        format!("{} / {} = {r:.2}", super::mib(a_size), super::mib(n_size)),
        "≤ 0.3",
        r <= 0.3,
    ));
    let r = ratio(a_bytes, n_bytes);
    s.figures.push(Figure::goal(
        "bytes on the wire, steady report / gzip scrape",
        format!("{a_bytes:.0} B / {n_bytes:.0} B = {r:.3}"),
        "≤ 0.1",
        r <= 0.1,
    ));
    s.figures.push(Figure::info(
        "agent connections opened during the run",
        agent_relay
            .counts
            .connections
            .load(Ordering::Relaxed)
            .to_string(),
    ));
    Ok(s)
}
