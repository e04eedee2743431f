//! The fleet simulator against a real in-process collector over real mTLS:
//! what it reports must be what the collector stored.

use std::time::Duration;

use crate::fleet::{self, Fleet, Layout, RunConfig, Target};
use anyhow::Result;
use campanile_tests::{TestCollector, TestPki, sample};

fn config(addr: std::net::SocketAddr, agents: usize, reconnect: bool) -> RunConfig {
    RunConfig {
        target: Target {
            addr,
            server_name: "localhost".into(),
            source_addrs: vec![
                "127.0.0.1".parse().expect("ip"),
                "127.0.0.2".parse().expect("ip"),
            ],
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        },
        agents,
        interval: Duration::from_secs(1),
        jitter: Duration::from_millis(100),
        ramp: Duration::ZERO,
        duration: Duration::from_secs(4),
        warmup: Duration::from_secs(1),
        seed: 5,
        reconnect_each_report: reconnect,
        inventory_change_per_million: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_simulated_agent_is_a_host_of_the_generated_territory() -> Result<()> {
    let pki = TestPki::new()?;
    let layout = Layout::new(60, 5);
    let register = pki.path().join("register.toml");
    std::fs::write(&register, layout.register_toml())?;
    let c = TestCollector::start_with(
        &pki,
        &format!("[territory]\nregister_path = \"{}\"", register.display()),
    )
    .await?;
    let fleet = Fleet::prepare(layout, pki.path())?;
    let summary = fleet::run(&fleet, &config(c.running.grpc_addr, 60, false), false).await?;

    assert!(summary.errors.is_empty(), "errors: {:?}", summary.errors);
    // Every agent reports 3 or 4 times in 4 s at 1 s (±100 ms jitter).
    assert!(
        (180..=240).contains(&summary.reports_acked),
        "acked {}",
        summary.reports_acked
    );
    assert_eq!(
        summary.full_inventories_sent, 60,
        "one full inventory each, then hashes"
    );
    assert!(summary.latency.count > 0 && summary.latency.p99_ms > 0.0);
    let metrics = c.metrics().await?;
    assert_eq!(
        sample(&metrics, "campanile_ingest_reports_accepted_total"),
        Some(summary.reports_acked as f64)
    );
    let hosts = c.running.store.host_states();
    assert_eq!(hosts.len(), 60);
    // Hosts fill their sites in order: 25 per site, all planned sites known.
    assert!(
        hosts
            .iter()
            .any(|h| h.host_id == "sim-000025" && h.site == "site-00001")
    );
    c.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_agents_keep_their_own_identity() -> Result<()> {
    let pki = TestPki::new()?;
    let c = TestCollector::start(&pki).await?;
    let fleet = Fleet::prepare(Layout::new(10, 9), pki.path())?;
    let summary = fleet::run(&fleet, &config(c.running.grpc_addr, 10, true), false).await?;
    assert!(summary.errors.is_empty(), "errors: {:?}", summary.errors);
    assert!(summary.reports_acked >= 30);
    // Refused identities would show as errors; the store holds each host once.
    assert_eq!(c.running.store.host_states().len(), 10);
    c.stop().await?;
    Ok(())
}

#[tokio::test]
async fn the_simulator_refuses_targets_off_loopback() -> Result<()> {
    let pki = TestPki::new()?;
    let fleet = Fleet::prepare(Layout::new(1, 1), pki.path())?;
    let err = fleet::run(&fleet, &config("192.0.2.1:4317".parse()?, 1, false), false)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("loopback"), "{err}");
    Ok(())
}

/// A fleet whose connections the collector closes once idle reconnects at
/// each report as the real agent does: by resuming its TLS session, not
/// with a full handshake (which costs both sides a signature).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_of_an_idle_closing_collector_resume_their_sessions() -> Result<()> {
    let pki = TestPki::new()?;
    let c = TestCollector::start_tuned(&pki, |c| {
        c.grpc.idle_timeout = Some(Duration::from_millis(500));
    })
    .await?;
    let fleet = Fleet::prepare(Layout::new(5, 3), pki.path())?;
    let mut cfg = config(c.running.grpc_addr, 5, false);
    cfg.interval = Duration::from_secs(2);
    cfg.duration = Duration::from_secs(7);
    let summary = fleet::run(&fleet, &cfg, false).await?;
    assert!(summary.errors.is_empty(), "errors: {:?}", summary.errors);
    let metrics = c.metrics().await?;
    let full = sample(&metrics, r#"campanile_tls_handshakes_total{kind="full"}"#).unwrap_or(0.0);
    let resumed = sample(
        &metrics,
        r#"campanile_tls_handshakes_total{kind="resumed"}"#,
    )
    .unwrap_or(0.0);
    assert_eq!(full, 5.0, "one full handshake per agent:\n{metrics}");
    assert!(
        resumed >= 5.0,
        "then resumptions, got {resumed}:\n{metrics}"
    );
    c.stop().await?;
    Ok(())
}
