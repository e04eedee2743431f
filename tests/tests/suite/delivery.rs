//! No report lost: the agent's durable spool, the collector's idempotent
//! group-committed ingest, and both surviving kill -9.
//!
//! How "every report once, in order" is checked: the collector drops any
//! report whose seq is not above its cursor for that (host, epoch) as a
//! duplicate. So when the cursor reaches the agent's last seq and the
//! collector accepted exactly (last - first + 1) reports, each seq arrived
//! once and in order; a loss, a reorder or a double count changes that
//! number. Where the collector restarts, the probe counters (one TCP check
//! per report, stored durably) give the same count across restarts.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use campanile_agent::config::{CollectConfig, ProbeConfig};
use campanile_agent::spool::Spool;
use campanile_agent::{Agent, AgentConfig, SendOutcome};
use campanile_collector::store::Store;
use campanile_proto::v1::Report;
use campanile_tests::{
    ChildGuard, SlowProxy, TestCollector, TestPki, eventually, free_port, sample, spool_path,
    steady_report,
};

fn agent_config(text: &str) -> Result<AgentConfig> {
    Ok(AgentConfig::parse(text, Path::new("/test/agent.toml"))?)
}

/// The `i`th copy of `base`, ~1 KB, collected `i` ms after it.
fn padded(base: &Report, i: i64) -> Report {
    let mut r = base.clone();
    r.collected_at_ms = base.collected_at_ms + i;
    r.agent_version = format!("{}+{}", base.agent_version, "x".repeat(700));
    r
}

/// Agent TOML with `[spool]` settings added.
fn with_spool(text: &str, settings: &str) -> String {
    text.replacen("[spool]\n", &format!("[spool]\n{settings}\n"), 1)
}

/// Sends until the spool is empty, riding out the channel's reconnect.
async fn drain(agent: &mut Agent) -> Result<()> {
    for _ in 0..50 {
        match agent.send().await {
            SendOutcome::Drained => return Ok(()),
            SendOutcome::More => {}
            SendOutcome::RetryAfter(d) => {
                tokio::time::sleep(d.min(Duration::from_millis(200))).await
            }
        }
    }
    bail!("spool not drained: {} reports left", agent.spool().len())
}

#[tokio::test]
async fn reports_spooled_while_the_collector_is_down_arrive_once_and_in_order() -> Result<()> {
    let pki = TestPki::new()?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("campanile.db");
    let port = free_port()?;
    let c = TestCollector::start_on(&pki, &db, port).await?;
    let mut agent =
        Agent::new(pki.agent_config("down-pc", "site-down", c.running.grpc_addr, 60)?)?;
    agent.collect().await;
    assert_eq!(agent.send().await, SendOutcome::Drained);
    c.stop().await?;

    for _ in 0..5 {
        agent.collect().await;
        assert!(matches!(agent.send().await, SendOutcome::RetryAfter(_)));
    }
    assert_eq!(
        agent.spool().len(),
        5,
        "the spool holds what could not be sent"
    );
    assert!(agent.spool().counters().send_failures >= 5);

    let c = TestCollector::start_on(&pki, &db, port).await?;
    drain(&mut agent).await?;
    let epoch = agent.spool().epoch();
    assert_eq!(c.running.store.delivered_seq("down-pc", epoch)?, Some(6));
    let text = c.metrics().await?;
    assert_eq!(
        sample(&text, "campanile_ingest_reports_accepted_total"),
        Some(5.0)
    );
    assert_eq!(
        sample(&text, "campanile_ingest_reports_duplicate_total"),
        Some(0.0)
    );
    // The agent's failed sends travel with the next request and show per site.
    let failures = sample(
        &text,
        r#"campanile_site_agent_send_failures_total{site="site-down"}"#,
    )
    .context("agent send failures in /metrics")?;
    assert!(failures >= 5.0, "{failures}");
    c.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_full_spool_drops_exactly_the_oldest_and_counts_them() -> Result<()> {
    let pki = TestPki::new()?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("campanile.db");
    let (text, port) = pki.offline_agent_toml("full-pc", "site-full", 60)?;
    let cfg = agent_config(&with_spool(&text, "max_bytes = 1048576"))?;
    let mut agent = Agent::new(cfg)?;
    let base = steady_report("full-pc").await;
    // About 2.5 MiB of reports into a 1 MiB spool, the collector down.
    let total = 3000u64;
    for i in 0..total {
        agent.enqueue(padded(&base, i as i64));
    }
    let kept = agent.spool().len();
    let dropped = agent.spool().counters().dropped_spool_full;
    assert!(dropped > 0 && kept > 0, "kept {kept}, dropped {dropped}");
    assert_eq!(kept + dropped, total, "every report is kept or counted");
    let seqs: Vec<u64> = agent.spooled()?.iter().map(|r| r.seq).collect();
    let expected: Vec<u64> = (dropped + 1..=total).collect();
    assert_eq!(seqs, expected, "exactly the oldest were dropped");

    let c = TestCollector::start_on(&pki, &db, port).await?;
    drain(&mut agent).await?;
    let text = c.metrics().await?;
    assert_eq!(
        sample(&text, "campanile_ingest_reports_accepted_total"),
        Some(kept as f64)
    );
    assert_eq!(
        c.running
            .store
            .delivered_seq("full-pc", agent.spool().epoch())?,
        Some(total)
    );
    assert_eq!(
        sample(
            &text,
            r#"campanile_site_agent_reports_dropped_total{site="site-full",reason="spool_full"}"#
        ),
        Some(dropped as f64)
    );
    c.stop().await?;
    Ok(())
}

/// Logs (stdout and stderr) of a process into one file.
fn log_to(path: &Path) -> Result<(Stdio, Stdio)> {
    let f = std::fs::File::create(path)?;
    Ok((Stdio::from(f.try_clone()?), Stdio::from(f)))
}

fn spawn_agent(config: &Path, log: &Path) -> Result<ChildGuard> {
    let (out, err) = log_to(log)?;
    let child = Command::new(campanile_tests::agent_binary()?)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(out)
        .stderr(err)
        .spawn()
        .context("starting campanile-agent")?;
    Ok(ChildGuard(child))
}

fn kill_9(mut guard: ChildGuard) -> Result<()> {
    guard.0.kill()?;
    guard.0.wait()?;
    Ok(())
}

#[tokio::test]
async fn agent_killed_with_a_full_spool_delivers_it_in_order_after_restart() -> Result<()> {
    let pki = TestPki::new()?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("campanile.db");
    let (text, port) = pki.offline_agent_toml("kill-agent-pc", "site-ka", 1)?;
    let text = with_spool(&text, "max_bytes = 1048576");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, &text)?;
    // Fill the spool to its bound while the collector is down.
    {
        let cfg = agent_config(&text)?;
        let mut spool = Spool::open(&cfg.send.spool)?;
        let base = steady_report("kill-agent-pc").await;
        let mut i = 0;
        while spool.counters().dropped_spool_full == 0 {
            spool.append(padded(&base, i), base.collected_at_ms + i)?;
            i += 1;
        }
    }
    // The agent runs on the full spool (each new report pushes out the
    // oldest) and is killed mid-run.
    let log = dir.path().join("agent.log");
    let agent = spawn_agent(&config, &log)?;
    let spool_file = spool_path(pki.path(), "kill-agent-pc");
    eventually(
        Duration::from_secs(20),
        "the agent to append to its spool",
        || async {
            // The log says the spool opened and a report was dropped to make room.
            let log = std::fs::read_to_string(&log).ok()?;
            log.contains("oldest reports dropped").then_some(())
        },
    )
    .await?;
    kill_9(agent)?;

    let cfg = agent_config(&text)?;
    let (first, last, kept, epoch, dropped_before) = {
        let mut spool = Spool::open(&cfg.send.spool)?;
        let seqs: Vec<u64> = spool
            .batch(usize::MAX, u64::MAX)?
            .iter()
            .map(|r| r.seq)
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "contiguous after kill -9"
        );
        let dropped = spool.counters().dropped_total();
        (
            seqs[0],
            *seqs.last().unwrap(),
            seqs.len() as u64,
            spool.epoch(),
            dropped,
        )
    };
    assert!(spool_file.exists());

    let c = TestCollector::start_on(&pki, &db, port).await?;
    let agent = spawn_agent(&config, &dir.path().join("agent2.log"))?;
    let store = c.running.store.clone();
    let reached = eventually(Duration::from_secs(60), "the spool to be delivered", || {
        let store = store.clone();
        async move {
            store
                .delivered_seq("kill-agent-pc", epoch)
                .ok()?
                .filter(|&s| s >= last)
        }
    })
    .await?;
    kill_9(agent)?;
    let text = c.metrics().await?;
    let accepted = sample(&text, "campanile_ingest_reports_accepted_total").unwrap_or(0.0);
    let cursor = store.delivered_seq("kill-agent-pc", epoch)?.unwrap_or(0);
    assert!(cursor >= reached);
    // The restarted agent's first report carries the full inventory and,
    // the spool being full, pushes out the oldest few before they can be
    // sent: counted by the spool, and they are the lowest seqs.
    let dropped_after = Spool::open(&cfg.send.spool)?.counters().dropped_total() - dropped_before;
    assert_eq!(
        accepted,
        (cursor - (first + dropped_after) + 1) as f64,
        "every seq from {first} + {dropped_after} dropped to {cursor} accepted once, in order \
         ({kept} were spooled)"
    );
    c.stop().await?;
    Ok(())
}

/// Every log the test's processes wrote, for a failure message.
fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- {}\n", path.display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

/// Counted TCP checks of the "centre" target for a site: one per report
/// the collector committed, across its restarts.
fn centre_checks(store: &Store, site: &str) -> Result<u64> {
    Ok(store
        .probe_counters()?
        .into_iter()
        .find(|c| c.site == site && c.target == "centre")
        .map_or(0, |c| c.checks))
}

#[tokio::test]
async fn collector_killed_repeatedly_loses_no_acknowledged_report() -> Result<()> {
    let pki = TestPki::new()?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("campanile.db");
    let (grpc, http) = (free_port()?, free_port()?);
    let collector_toml = dir.path().join("collector.toml");
    std::fs::write(&collector_toml, pki.collector_toml(&db, grpc, http, ""))?;
    let collector_bin = campanile_tests::collector_binary()?;
    let start_collector = |n: usize| -> Result<ChildGuard> {
        let (out, err) = log_to(&dir.path().join(format!("collector{n}.log")))?;
        Ok(ChildGuard(
            Command::new(&collector_bin)
                .args(["run", "--config"])
                .arg(&collector_toml)
                .stdout(out)
                .stderr(err)
                .spawn()
                .context("starting campanile-collector")?,
        ))
    };
    // The probe target every report checks once.
    let centre = std::net::TcpListener::bind("127.0.0.1:0")?;
    let probes = format!(
        "[probes]\nauto_gateway = false\nauto_dns = false\nauto_collector = false\n\
         icmp_count = 1\nicmp_timeout_ms = 500\ntcp_timeout_ms = 500\ndns_timeout_ms = 500\n\
         [[probes.tcp]]\nname = \"centre\"\naddress = \"{}\"",
        centre.local_addr()?
    );
    let hosts = ["kc-1", "kc-2", "kc-3"];
    let mut agents: Vec<ChildGuard> = Vec::new();
    let mut configs = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let text = pki.probing_agent_toml(
            host,
            &format!("site-kc{i}"),
            format!("127.0.0.1:{grpc}").parse()?,
            1,
            &probes,
        )?;
        let path = dir.path().join(format!("{host}.toml"));
        std::fs::write(&path, &text)?;
        agents.push(spawn_agent(&path, &dir.path().join(format!("{host}.log")))?);
        configs.push(text);
    }
    let metrics_url = format!("http://127.0.0.1:{http}/metrics");
    let accepted = || async {
        let text = campanile_tests::http_get(&metrics_url).await.ok()?;
        sample(&text, "campanile_ingest_reports_accepted_total")
    };
    for round in 0..4 {
        let collector = start_collector(round)?;
        // Mid-stream: the restarted collector has taken new reports.
        eventually(
            Duration::from_secs(30),
            "reports after a restart",
            || async { accepted().await.filter(|&n| n >= 4.0) },
        )
        .await
        .with_context(|| logs(dir.path()))?;
        kill_9(collector)?;
    }
    let collector = start_collector(9)?;
    eventually(
        Duration::from_secs(30),
        "reports after the last restart",
        || async { accepted().await.filter(|&n| n >= 6.0) },
    )
    .await?;
    // Stop the agents gracefully; what they could not send stays spooled.
    for a in &agents {
        campanile_tests::terminate(&a.0)?;
    }
    for mut a in agents {
        a.0.wait()?;
    }
    campanile_tests::terminate(&collector.0)?;
    let mut collector = collector;
    let status = collector.0.wait()?;
    assert!(status.success(), "collector exit on SIGTERM: {status}");

    let store = Store::open(&db)?;
    for (i, (host, text)) in hosts.iter().zip(&configs).enumerate() {
        let spool = Spool::open(&agent_config(text)?.send.spool)?;
        let produced = spool.next_seq() - 1;
        let pending = spool.len();
        assert_eq!(spool.counters().dropped_total(), 0, "{host}");
        let committed = store.delivered_seq(host, spool.epoch())?.unwrap_or(0);
        assert_eq!(
            committed + pending,
            produced,
            "{host}: committed + still spooled"
        );
        assert_eq!(
            centre_checks(&store, &format!("site-kc{i}"))?,
            committed,
            "{host}: each committed report counted exactly once"
        );
        assert!(produced >= 6, "{host} produced {produced}");
    }
    Ok(())
}

#[tokio::test]
async fn a_slow_collector_leaves_the_backlog_in_the_spool_not_in_memory() -> Result<()> {
    let pki = TestPki::new()?;
    let c = TestCollector::start(&pki).await?;
    let proxy = SlowProxy::start(c.running.grpc_addr, 256 * 1024).await?;
    let text = pki.probing_agent_toml(
        "slow-pc",
        "site-slow",
        proxy.addr,
        1,
        "[probes]\nenabled = false",
    )?;
    let text = with_spool(&text, "max_bytes = 67108864");
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, &text)?;
    // A backlog of ~60 MiB: full inventories, as after a long outage with
    // software changing.
    let backlog_bytes;
    let last;
    let epoch;
    {
        let cfg = agent_config(&text)?;
        let mut spool = Spool::open(&cfg.send.spool)?;
        let collect = CollectConfig {
            systemd_units: false,
            ..Default::default()
        };
        let mut base =
            campanile_agent::collect_once("slow-pc", &collect, &ProbeConfig::disabled(), "").await;
        let inventory = base.inventory.get_or_insert_with(Default::default);
        // Pad the inventory to ~40 KB so the backlog is large in few writes.
        let packages = inventory.packages.get_or_insert_with(Default::default);
        while packages.items.len() < 400 {
            packages.items.push(campanile_proto::v1::Package {
                name: format!("pkg-{}", packages.items.len()),
                version: "1.0.0-1".repeat(8),
                ..Default::default()
            });
        }
        let mut a = None;
        while spool.bytes() < 60 * 1024 * 1024 {
            a = Some(spool.append(base.clone(), base.collected_at_ms)?);
            base.collected_at_ms += 1;
        }
        backlog_bytes = spool.bytes();
        last = a.map_or(0, |a| a.seq);
        epoch = spool.epoch();
    }
    let agent = spawn_agent(&config, &dir.path().join("agent.log"))?;
    let pid = agent.0.id();
    let store = c.running.store.clone();
    let mut peak = 0;
    let result = eventually(
        Duration::from_secs(240),
        "the backlog through the slow link",
        || {
            let store = store.clone();
            peak = peak.max(campanile_tests::peak_rss_bytes(pid).unwrap_or(0));
            async move {
                store
                    .delivered_seq("slow-pc", epoch)
                    .ok()?
                    .filter(|&s| s >= last)
            }
        },
    )
    .await;
    peak = peak.max(campanile_tests::peak_rss_bytes(pid).unwrap_or(0));
    kill_9(agent)?;
    result.with_context(|| {
        std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default()
    })?;
    assert!(peak > 0, "could not read the agent's memory");
    // The backlog never sat in memory: holding it would take the agent past
    // its size; streaming it a batch at a time keeps the peak well below.
    // (A debug build idles near 20 MiB; the release agent far less.)
    assert!(
        peak < backlog_bytes / 4 * 3,
        "agent peak RSS {peak} B against a backlog of {backlog_bytes} B"
    );
    drop(proxy);
    c.stop().await?;
    Ok(())
}

/// Where the test runs as root: the agent sits in its own network
/// namespace, routed through a gateway namespace that runs the collector;
/// nftables first drops the agent's traffic to the collector (a dead line:
/// timeouts), then resets it (a flapping line: refused connections), then
/// lets it through. Everything collected meanwhile arrives, once.
#[test]
fn a_partitioned_link_dropped_then_reset_ends_in_full_delivery() -> Result<()> {
    use campanile_tests::netns::Lan;
    if !campanile_tests::is_root() {
        campanile_tests::skipped("network namespaces need root");
        return Ok(());
    }
    let lan = Lan::new()?;
    let collector_ip = format!("10.{}.0.1", lan.n);
    let pki = TestPki::new()?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("campanile.db");
    let (grpc, http) = (free_port()?, free_port()?);
    let collector_toml = pki
        .collector_toml(&db, grpc, http, "")
        .replace("127.0.0.1:", &format!("{collector_ip}:"));
    std::fs::write(dir.path().join("collector.toml"), collector_toml)?;
    let (out, err) = log_to(&dir.path().join("collector.log"))?;
    let mut collector = ChildGuard(
        lan.gateway
            .command(&campanile_tests::collector_binary()?)
            .args(["run", "--config"])
            .arg(dir.path().join("collector.toml"))
            .stdout(out)
            .stderr(err)
            .spawn()?,
    );
    // One TCP check per report, to the collector's HTTP port (the partition
    // blocks only gRPC): the durable count of committed reports.
    let probes = format!(
        "[probes]\nauto_gateway = false\nauto_dns = false\nauto_collector = false\n\
         icmp_count = 1\nicmp_timeout_ms = 500\ntcp_timeout_ms = 500\ndns_timeout_ms = 500\n\
         [[probes.tcp]]\nname = \"centre\"\naddress = \"{collector_ip}:{http}\""
    );
    let text = pki
        .probing_agent_toml(
            "part-pc",
            "site-part",
            format!("127.0.0.1:{grpc}").parse()?,
            1,
            &probes,
        )?
        .replace("https://127.0.0.1:", &format!("https://{collector_ip}:"))
        .replace("connect_timeout_secs = 5", "connect_timeout_secs = 2")
        .replace("request_timeout_secs = 10", "request_timeout_secs = 3");
    std::fs::write(dir.path().join("agent.toml"), &text)?;
    let (out, err) = log_to(&dir.path().join("agent.log"))?;
    let mut agent = ChildGuard(
        lan.client
            .command(&campanile_tests::agent_binary()?)
            .args(["run", "--config"])
            .arg(dir.path().join("agent.toml"))
            .env("RUST_LOG", "info")
            .stdout(out)
            .stderr(err)
            .spawn()?,
    );
    let store = Store::open(&db).with_context(|| logs(dir.path()))?;
    let seq = |at_least: u64, what: &str| -> Result<u64> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((_, s)) = store.latest_delivery("part-pc")?
                && s >= at_least
            {
                return Ok(s);
            }
            if std::time::Instant::now() > deadline {
                bail!("timed out waiting for {what}\n{}", logs(dir.path()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let before = seq(2, "the first reports")?;
    let rules = |verdict: &str| {
        format!(
            "table inet campanile_part {{}}\ndelete table inet campanile_part\n\
             table inet campanile_part {{
                chain output {{
                    type filter hook output priority 0; policy accept;
                    ip daddr {collector_ip} tcp dport {grpc} {verdict}
                }}
            }}"
        )
    };
    lan.client.nft(&rules("drop"))?;
    std::thread::sleep(Duration::from_secs(6));
    lan.client.nft(&rules("reject with tcp reset"))?;
    std::thread::sleep(Duration::from_secs(4));
    let during = store.latest_delivery("part-pc")?.map_or(0, |(_, s)| s);
    assert!(
        during <= before + 2,
        "reports got through the partition: {before} -> {during}"
    );
    lan.client
        .nft("table inet campanile_part {}\ndelete table inet campanile_part")?;
    // Ten seconds of reports were held back; all of them, then more.
    seq(during + 12, "the backlog after the partition")?;

    campanile_tests::terminate(&agent.0)?;
    agent.0.wait()?;
    campanile_tests::terminate(&collector.0)?;
    collector.0.wait()?;
    let spool = Spool::open(&agent_config(&text)?.send.spool)?;
    let produced = spool.next_seq() - 1;
    let committed = store.delivered_seq("part-pc", spool.epoch())?.unwrap_or(0);
    assert_eq!(spool.counters().dropped_total(), 0);
    assert!(spool.counters().send_failures > 0, "the partition was felt");
    assert_eq!(committed + spool.len(), produced);
    assert_eq!(
        centre_checks(&store, "site-part")?,
        committed,
        "each report once"
    );
    Ok(())
}

#[tokio::test]
async fn an_invalid_report_is_dropped_and_counted_not_retried() -> Result<()> {
    let pki = TestPki::new()?;
    let c = TestCollector::start(&pki).await?;
    let mut agent = Agent::new(pki.agent_config("inv-pc", "site-inv", c.running.grpc_addr, 60)?)?;
    let base = steady_report("inv-pc").await;
    let mut bad = padded(&base, 1);
    bad.health = Some(campanile_proto::v1::Health {
        memory_total_bytes: Some(1),
        memory_available_bytes: Some(2),
        ..Default::default()
    });
    agent.enqueue(padded(&base, 0));
    agent.enqueue(bad);
    agent.enqueue(padded(&base, 2));
    assert_eq!(agent.send().await, SendOutcome::Drained);
    assert_eq!(agent.spool().counters().dropped_invalid, 1);
    let text = c.metrics().await?;
    assert_eq!(
        sample(&text, "campanile_ingest_reports_accepted_total"),
        Some(2.0)
    );
    assert_eq!(
        c.running
            .store
            .delivered_seq("inv-pc", agent.spool().epoch())?,
        Some(3)
    );
    // The count reaches the collector with the next call.
    agent.enqueue(padded(&base, 3));
    assert_eq!(agent.send().await, SendOutcome::Drained);
    let text = c.metrics().await?;
    assert_eq!(
        sample(
            &text,
            r#"campanile_site_agent_reports_dropped_total{site="site-inv",reason="invalid"}"#
        ),
        Some(1.0)
    );
    c.stop().await?;
    Ok(())
}

#[tokio::test]
async fn batches_too_large_for_the_collector_are_split_until_they_fit() -> Result<()> {
    let pki = TestPki::new()?;
    let dir = tempfile::tempdir()?;
    let mut cfg = pki.collector_config(&dir.path().join("campanile.db"))?;
    // 200 KB per request (decompressed): the agent's first batch, 500
    // reports of ~1.2 KB, is refused as OUT_OF_RANGE; without splitting
    // it would be retried forever and the drain below would fail.
    cfg.grpc.max_message_bytes = 200_000;
    let running = campanile_collector::start(cfg).await?;
    let text = pki.probing_agent_toml(
        "big-pc",
        "site-big",
        running.grpc_addr,
        60,
        "[probes]\nenabled = false",
    )?;
    let cfg = agent_config(&with_spool(
        &text,
        "batch_max_reports = 500\nbatch_max_bytes = 16777216",
    ))?;
    let mut agent = Agent::new(cfg)?;
    let base = steady_report("big-pc").await;
    for i in 0..1500 {
        agent.enqueue(padded(&base, i));
    }
    drain(&mut agent).await?;
    assert_eq!(running.telemetry.reports_accepted.get(), 1500);
    assert_eq!(agent.spool().counters().dropped_total(), 0);
    running.shutdown().await?;
    Ok(())
}
