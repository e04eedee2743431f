//! An agent reports to a collector over real mTLS; the collector stores it
//! in a real SQLite file and `/metrics` shows what the agent collected.

use std::time::Duration;

use anyhow::Result;
use campanile_agent::{Agent, SendOutcome};
use campanile_tests::{TestCollector, TestPki, eventually, sample};

#[tokio::test]
async fn agent_report_shows_in_metrics_with_collected_values() -> Result<()> {
    let pki = TestPki::new()?;
    let collector = TestCollector::start(&pki).await?;
    let mut agent =
        Agent::new(pki.agent_config("pc-01", "municipio-a", collector.running.grpc_addr, 60)?)?;

    agent.collect().await;
    let sent = agent.spooled()?.remove(0);
    assert_eq!(agent.send().await, SendOutcome::Drained);

    let text = collector.metrics().await?;
    let l = r#"{host="pc-01",site="municipio-a"}"#;
    assert_eq!(
        sample(&text, &format!("campanile_host_up{l}")),
        Some(1.0),
        "{text}"
    );
    let health = sent.health.expect("health collected");
    let mem = health
        .memory_total_bytes
        .expect("memory collected on Linux") as f64;
    assert_eq!(
        sample(&text, &format!("campanile_host_memory_total_bytes{l}")),
        Some(mem)
    );
    assert_eq!(
        sample(&text, &format!("campanile_host_load15{l}")),
        health.load15,
        "load15 as collected"
    );
    let fs = &health.filesystems[0];
    let fs_series = format!(
        r#"campanile_filesystem_size_bytes{{host="pc-01",site="municipio-a",mountpoint="{}",fstype="{}"}}"#,
        fs.mount_point, fs.fs_type
    );
    assert_eq!(
        sample(&text, &fs_series),
        Some(fs.size_bytes as f64),
        "{text}"
    );
    let inv = sent
        .inventory
        .expect("first report carries the full inventory");
    let os = inv.os_name.clone().unwrap_or_default();
    assert!(
        text.lines()
            .any(|l| l.starts_with("campanile_host_info{") && l.contains(&format!(r#"os="{os}""#))),
        "host_info with os {os:?} missing"
    );
    let last = sample(
        &text,
        &format!("campanile_host_last_report_timestamp_seconds{l}"),
    )
    .unwrap();
    assert!((last - campanile_agent::now_ms() as f64 / 1000.0).abs() < 60.0);
    assert_eq!(
        sample(&text, "campanile_ingest_reports_accepted_total"),
        Some(1.0)
    );
    let healthz =
        campanile_tests::http_get(&format!("http://{}/healthz", collector.running.http_addr))
            .await?;
    assert_eq!(healthz, "ok\n");

    // The store holds the inventory the agent sent.
    let stored = collector
        .running
        .store
        .inventory("pc-01")?
        .expect("inventory stored");
    assert_eq!(stored.inventory.hostname, inv.hostname);
    assert_eq!(stored.sha256, sent.inventory_sha256);
    collector.stop().await?;
    Ok(())
}

#[tokio::test]
async fn second_report_with_unchanged_inventory_carries_only_the_hash() -> Result<()> {
    let pki = TestPki::new()?;
    let collector = TestCollector::start(&pki).await?;
    let mut agent =
        Agent::new(pki.agent_config("pc-02", "site-b", collector.running.grpc_addr, 60)?)?;

    agent.collect().await;
    let first = agent.spooled()?.remove(0);
    assert_eq!(agent.send().await, SendOutcome::Drained);
    agent.collect().await;
    let second = agent.spooled()?.remove(0);
    assert_eq!(agent.send().await, SendOutcome::Drained);

    assert!(first.inventory.is_some());
    assert!(
        second.inventory.is_none(),
        "unchanged inventory must travel as its hash only"
    );
    assert_eq!(first.inventory_sha256, second.inventory_sha256);
    assert_eq!(second.seq, first.seq + 1);
    // The collector accepted both, kept the inventory, and logged one change
    // (the first inventory) rather than a change per report.
    let text = collector.metrics().await?;
    assert_eq!(
        sample(&text, "campanile_ingest_reports_accepted_total"),
        Some(2.0)
    );
    assert_eq!(collector.running.store.inventory_changes("pc-02")?.len(), 1);
    collector.stop().await?;
    Ok(())
}

#[tokio::test]
async fn running_agent_delivers_on_its_own_interval() -> Result<()> {
    let pki = TestPki::new()?;
    let collector = TestCollector::start(&pki).await?;
    let agent = Agent::new(pki.agent_config("pc-03", "site-c", collector.running.grpc_addr, 1)?)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(async move {
        let _ = stop_rx.await;
    }));
    let url = collector.metrics_url();
    eventually(
        Duration::from_secs(20),
        "two reports from the running agent",
        || {
            let url = url.clone();
            async move {
                let text = campanile_tests::http_get(&url).await.ok()?;
                (sample(&text, "campanile_ingest_reports_accepted_total")? >= 2.0).then_some(())
            }
        },
    )
    .await?;
    let _ = stop_tx.send(());
    task.await?;
    collector.stop().await?;
    Ok(())
}

#[tokio::test]
async fn hosts_and_inventory_survive_a_collector_restart() -> Result<()> {
    let pki = TestPki::new()?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("campanile.db");
    let collector = TestCollector::start_at(&pki, &db).await?;
    let mut agent =
        Agent::new(pki.agent_config("pc-04", "site-d", collector.running.grpc_addr, 60)?)?;
    agent.collect().await;
    assert_eq!(agent.send().await, SendOutcome::Drained);
    let before = collector.running.store.inventory("pc-04")?.expect("stored");
    collector.stop().await?;
    drop(agent);

    let collector = TestCollector::start_at(&pki, &db).await?;
    let text = collector.metrics().await?;
    assert!(
        text.contains(r#"campanile_host_up{host="pc-04",site="site-d"} 1"#),
        "host missing after restart:\n{text}"
    );
    let after = collector
        .running
        .store
        .inventory("pc-04")?
        .expect("inventory after restart");
    assert_eq!(after.sha256, before.sha256);
    assert_eq!(after.inventory, before.inventory);
    assert_eq!(collector.running.store.inventory_changes("pc-04")?.len(), 1);

    // The agent, pointed at the new port, carries on with hash-only reports
    // and the collector does not ask for the inventory again.
    let mut agent =
        Agent::new(pki.agent_config("pc-04", "site-d", collector.running.grpc_addr, 60)?)?;
    agent.collect().await;
    assert_eq!(agent.send().await, SendOutcome::Drained);
    collector.stop().await?;
    Ok(())
}

/// An agent's connection lasts for hours: a `date` in every answer would
/// be a new value for the connection's header table each second, held by
/// the collector for every agent (9 KiB each once the table is full).
#[tokio::test]
async fn answers_carry_no_date_header() -> Result<()> {
    let pki = TestPki::new()?;
    let collector = TestCollector::start(&pki).await?;
    let mut report = campanile_tests::steady_report("pc-date").await;
    report.seq = 1;
    let request = campanile_proto::v1::DeliverRequest {
        reports: vec![report],
        agent_stats: None,
        sent_unix_ms: campanile_agent::now_ms(),
    };
    let resp = campanile_tests::deliver_raw_response(
        &pki,
        collector.running.grpc_addr,
        "site-a",
        365,
        request,
    )
    .await?;
    let headers = resp.metadata().clone().into_headers();
    assert_eq!(
        headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/grpc"[..]),
        "{headers:?}"
    );
    assert!(headers.get("date").is_none(), "{headers:?}");
    assert_eq!(resp.into_inner().committed_seq, 1);
    collector.stop().await?;
    Ok(())
}
