//! `/metrics` stays valid Prometheus text whatever the agents send, and a
//! real Prometheus server scrapes it.

use std::time::Duration;

use anyhow::Result;
use campanile_agent::transport::Transport;
use campanile_agent::{Agent, SendOutcome};
use campanile_proto::v1::{Filesystem, Health, Inventory, NetInterface, Report};
use campanile_tests::{
    TestCollector, TestPki, TestPrometheus, duplicate_series, eventually, promtool_check_metrics,
    sample,
};

const AWKWARD: &str = "Sant'Agata \"sul\" Santerno \\ Forlì\nÈ già «ñ» 東京";

/// Reports with quotes, backslashes, newlines and non-ASCII text in every
/// free-text field that becomes a label; the same mount point twice.
async fn send_awkward_report(pki: &TestPki, c: &TestCollector) -> Result<()> {
    let cfg = pki.agent_config("weird-pc", "sant-agata", c.running.grpc_addr, 60)?;
    let inventory = Inventory {
        hostname: Some(AWKWARD.into()),
        os_name: Some(format!("OS {AWKWARD}")),
        os_version: Some("12 \"bookworm\"".into()),
        kernel_version: Some("6.1\\x".into()),
        arch: Some("x86_64".into()),
        agent_version: "0.1.0".into(),
        ..Default::default()
    };
    let fs = |mp: &str| Filesystem {
        mount_point: mp.into(),
        device: "/dev/sda1".into(),
        fs_type: "ext4".into(),
        size_bytes: 100,
        available_bytes: 40,
    };
    let report = Report {
        host_id: "weird-pc".into(),
        epoch: 1,
        seq: 1,
        collected_at_ms: campanile_agent::now_ms(),
        interval_secs: 60,
        agent_version: "0.1.0 \"dev\"".into(),
        inventory_sha256: campanile_proto::inventory_sha256(&inventory).to_vec(),
        inventory: Some(inventory),
        health: Some(Health {
            cpu_usage_ratio: Some(0.25),
            filesystems: vec![fs(&format!("/mnt/{AWKWARD}")), fs("/dup"), fs("/dup")],
            interfaces: vec![NetInterface {
                name: "eth\"0\\\n".into(),
                rx_bytes: 10,
                tx_bytes: 20,
                ..Default::default()
            }],
            ..Default::default()
        }),
        agent_stats: None,
        ..Default::default()
    };
    Transport::new(&cfg.collector)?
        .deliver(vec![report], Default::default())
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(())
}

#[tokio::test]
async fn awkward_text_still_gives_valid_unique_exposition() -> Result<()> {
    let pki = TestPki::new()?;
    let c = TestCollector::start(&pki).await?;
    send_awkward_report(&pki, &c).await?;
    let mut agent = Agent::new(pki.agent_config("real-pc", "site-r", c.running.grpc_addr, 60)?)?;
    agent.collect().await;
    assert_eq!(agent.send().await, SendOutcome::Drained);

    let text = c.metrics().await?;
    promtool_check_metrics(&text)?;
    assert_eq!(
        duplicate_series(&text),
        Vec::<String>::new(),
        "duplicate series"
    );
    // Escaped as the text format requires: \" \\ \n, UTF-8 kept as is.
    let escaped = AWKWARD
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    assert!(text.contains(&format!("hostname=\"{escaped}\"")), "{text}");
    assert!(text.contains("mountpoint=\"/mnt/"), "{text}");
    let mp = format!(
        r#"campanile_filesystem_avail_bytes{{host="weird-pc",site="sant-agata",mountpoint="/mnt/{escaped}",fstype="ext4"}}"#
    );
    assert_eq!(sample(&text, &mp), Some(40.0), "{text}");
    // Bounded: never more series for a host than the per-host budget.
    let per_host = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(r#"host="real-pc""#))
        .count();
    assert!(per_host <= 40, "{per_host} series for one host");
    c.stop().await?;
    Ok(())
}

#[tokio::test]
async fn real_prometheus_scrapes_the_collector() -> Result<()> {
    let pki = TestPki::new()?;
    let c = TestCollector::start(&pki).await?;
    send_awkward_report(&pki, &c).await?;
    let mut agent =
        Agent::new(pki.agent_config("scraped-pc", "site-s", c.running.grpc_addr, 60)?)?;
    agent.collect().await;
    assert_eq!(agent.send().await, SendOutcome::Drained);

    let prom = TestPrometheus::start(c.running.http_addr)?;
    let up = eventually(
        Duration::from_secs(60),
        "Prometheus to scrape the collector",
        || async {
            let body = prom.query(r#"up{job="campanile"}"#).await.ok()?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            let value = v["data"]["result"][0]["value"][1].as_str()?.to_owned();
            Some(value)
        },
    )
    .await?;
    assert_eq!(up, "1", "scrape failed");
    let body = prom
        .query(r#"campanile_host_up{host="scraped-pc"}"#)
        .await?;
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(v["data"]["result"][0]["value"][1], "1", "{body}");
    // The awkward labels arrived intact through a real parser.
    let body = prom
        .query(r#"campanile_host_info{host="weird-pc"}"#)
        .await?;
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(
        v["data"]["result"][0]["metric"]["hostname"], AWKWARD,
        "{body}"
    );
    c.stop().await?;
    Ok(())
}
