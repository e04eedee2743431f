//! Agent footprint benchmark (`make bench`): runs the real release agent
//! binary against an in-process collector over mTLS and measures
//! - steady-state RSS of the agent process,
//! - CPU time per collection cycle (in-process, many cycles),
//! - encoded size of a steady (hash-only) report and of a full one,
//! - stripped size of the release binary.
//!
//! Prints its section of the `make bench` record: Markdown, or JSON with
//! `--json` (how `benchmarks` runs it).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use campanile_agent::collect::HostCollector;
use campanile_agent::config::CollectConfig;
use campanile_agent::report::ReportBuilder;
use campanile_bench::harness::{Figure, Section};
use campanile_tests::{ChildGuard, TestCollector, TestPki, sample};
use prost::Message;

fn cpu_seconds_of(pid: u32) -> Result<f64> {
    campanile_tests::procs::cpu_seconds(pid)
}

fn rss_kib(pid: u32) -> Result<u64> {
    campanile_tests::procs::rss_bytes(pid)
        .map(|b| b / 1024)
        .context("VmRSS")
}

fn main() -> Result<()> {
    let json = std::env::args().any(|a| a == "--json");
    let agent_bin = std::env::args()
        .skip(1)
        .find(|a| a != "--json")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(campanile_bench::harness::SHIPPED_AGENT));
    if !agent_bin.is_file() {
        bail!(
            "{} not found: build it with `cargo build --profile agent -p campanile-agent`",
            agent_bin.display()
        );
    }
    let binary_bytes = std::fs::metadata(&agent_bin)?.len();

    // CPU per cycle and report sizes, in this process.
    let cfg = CollectConfig {
        systemd_units: true,
        ..CollectConfig::default()
    };
    let mut collector = HostCollector::new(cfg);
    collector.prime();
    let mut builder = ReportBuilder::new("bench-host".into());
    let warm = collector.health();
    let inv = collector.inventory();
    let full = builder.build(campanile_agent::now_ms(), 60, warm, inv, None);
    let cycles = 200;
    let cpu0 = cpu_seconds_of(std::process::id())?;
    let t0 = Instant::now();
    let mut steady = None;
    for _ in 0..cycles {
        let h = collector.health();
        let i = collector.inventory();
        let stats = campanile_proto::v1::AgentStats {
            queue_depth: 1,
            ..Default::default()
        };
        let r = builder.build(campanile_agent::now_ms(), 60, h, i, Some(stats));
        std::hint::black_box(r.encode_to_vec());
        steady = Some(r);
    }
    let cpu_per_cycle_ms =
        (cpu_seconds_of(std::process::id())? - cpu0) * 1000.0 / f64::from(cycles);
    let wall_per_cycle_ms = t0.elapsed().as_secs_f64() * 1000.0 / f64::from(cycles);
    let steady = steady.context("no cycle ran")?;
    if steady.inventory.is_some() {
        bail!("steady report unexpectedly carries the full inventory");
    }
    let packages = full
        .inventory
        .as_ref()
        .and_then(|i| i.packages.as_ref())
        .map_or(0, |p| p.items.len());

    // Steady RSS of the real agent process.
    let rt = tokio::runtime::Runtime::new()?;
    let (rss_kib, agent_cpu_per_cycle_ms, reports) = rt.block_on(async {
        let pki = TestPki::new()?;
        let c = TestCollector::start(&pki).await?;
        let cfg_dir = tempfile::tempdir()?;
        let (cert, key) = pki.agent("footprint", "bench")?;
        let cfg_path = cfg_dir.path().join("agent.toml");
        std::fs::write(
            &cfg_path,
            format!(
                "[identity]\nhost_id = \"footprint\"\n[collector]\nendpoint = \"https://127.0.0.1:{}\"\n\
                 server_name = \"localhost\"\nca_cert_path = \"{}\"\ncert_path = \"{}\"\nkey_path = \"{}\"\n\
                 [collect]\ninterval_secs = 1\nsystemd_units = true\n\
                 [probes]\nauto_gateway = false\nauto_dns = false\nauto_collector = true\n\
                 icmp_count = 2\nicmp_interval_ms = 100\nicmp_timeout_ms = 300\n\
                 tcp_timeout_ms = 500\ndns_timeout_ms = 500\n\
                 [spool]\npath = \"{}\"\n",
                c.running.grpc_addr.port(),
                pki.path().join("ca.pem").display(),
                cert.display(),
                key.display(),
                // Its own spool, not the system agent's default path.
                cfg_dir.path().join("spool.redb").display()
            ),
        )?;
        let child = Command::new(&agent_bin)
            .args(["run", "--config"])
            .arg(&cfg_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let pid = child.id();
        let guard = ChildGuard(child);
        let accepted = || async {
            let text = c.metrics().await.ok()?;
            sample(&text, "campanile_ingest_reports_accepted_total")
        };
        // Warm up, then measure over 30 one-second cycles.
        let deadline = Instant::now() + Duration::from_secs(120);
        while accepted().await.unwrap_or(0.0) < 5.0 {
            if Instant::now() > deadline {
                bail!("agent did not deliver");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (n0, cpu0) = (accepted().await.unwrap_or(0.0), cpu_seconds_of(pid)?);
        let mut max_rss = 0;
        while accepted().await.unwrap_or(0.0) < n0 + 30.0 {
            max_rss = max_rss.max(rss_kib(pid)?);
            if Instant::now() > deadline {
                bail!("agent stalled");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let n1 = accepted().await.unwrap_or(0.0);
        let cpu = cpu_seconds_of(pid)? - cpu0;
        drop(guard);
        c.stop().await?;
        Ok::<_, anyhow::Error>((max_rss, cpu * 1000.0 / (n1 - n0), n1 - n0))
    })?;

    let mut section = Section::new(
        "The agent's own cost",
        format!(
            "The release agent reports every second to an in-process collector over mTLS, probing \
             only the collector on loopback, measured over {reports:.0} cycles after a warm-up; and \
             {cycles} collection cycles in this process ({packages} packages installed here)."
        ),
    );
    let mib = rss_kib as f64 / 1024.0;
    section.figures = vec![
        Figure::goal(
            "agent RSS, steady state (max over the cycles)",
            format!("{mib:.1} MiB"),
            "≤ 7 MiB",
            mib <= 7.0,
        ),
        Figure::info(
            "agent CPU per cycle, real process (collect + probe + send)",
            format!("{agent_cpu_per_cycle_ms:.2} ms"),
        ),
        Figure::info(
            "agent CPU per cycle, in-process collect + encode",
            format!("{cpu_per_cycle_ms:.2} ms (wall {wall_per_cycle_ms:.2} ms)"),
        ),
        Figure::goal(
            "release binary (as built, stripped)",
            format!("{:.2} MiB", binary_bytes as f64 / 1_048_576.0),
            "≤ 6 MiB",
            binary_bytes <= 6 * 1_048_576,
        ),
        Figure::goal(
            "steady report (hash only), encoded",
            format!("{} bytes", steady.encoded_len()),
            "≤ 1 KiB",
            steady.encoded_len() <= 1024,
        ),
        Figure::info(
            "report with the full inventory, encoded",
            format!("{} bytes", full.encoded_len()),
        ),
    ];
    section.print(json)
}
