//! Alerts end to end: real collector, real mTLS deliveries, real HTTP
//! receivers on loopback, a real Alertmanager.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use campanile_proto::v1::{Filesystem, Health, Report};
use campanile_tests::receiver::TestReceiver;
use campanile_tests::{
    ChildGuard, TestCollector, TestPki, deliver, eventually, free_port, http_get_with, init_crypto,
    require_tool, sample,
};

/// Timings short enough for a test: evaluate every second, group in
/// seconds, never repeat within the test.
const FAST: &str = "
evaluation_interval_secs = 1
group_wait_secs = 1
group_interval_secs = 2
repeat_interval_secs = 3600
retry_initial_secs = 1
retry_max_secs = 2
";

fn receiver_toml(name: &str, url: &str, extra: &str) -> String {
    format!("[[alerts.receivers]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n")
}

/// A report whose root filesystem is `used_percent` full.
fn disk_report(host: &str, seq: u64, interval_secs: u32, used_percent: u64) -> Report {
    let size = 100_000_000_000u64;
    Report {
        host_id: host.into(),
        epoch: 1,
        seq,
        collected_at_ms: campanile_agent::now_ms(),
        interval_secs,
        agent_version: "test".into(),
        inventory_sha256: vec![7; 32],
        health: Some(Health {
            filesystems: vec![Filesystem {
                mount_point: "/".into(),
                device: "/dev/sda1".into(),
                fs_type: "ext4".into(),
                size_bytes: size,
                available_bytes: size / 100 * (100 - used_percent),
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Comuni 999001.. with one site each, `site-1`.., no planned assets.
fn register(dir: &Path, sites: usize, wan: Option<&str>) -> Result<std::path::PathBuf> {
    let mut text = String::new();
    for i in 1..=sites {
        text.push_str(&format!(
            "[[comune]]\nistat_code = \"{:06}\"\nname = \"Comune {i}\"\n\n[[site]]\nid = \"site-{i}\"\ncomune = \"{:06}\"\nname = \"Municipio\"\nkind = \"town_hall\"\n{}\n",
            999_000 + i,
            999_000 + i,
            wan.map(|a| format!("wan_address = \"{a}\"")).unwrap_or_default()
        ));
    }
    let p = dir.join("register.toml");
    std::fs::write(&p, text)?;
    Ok(p)
}

fn full_disk_alerts() -> String {
    format!("[alerts]\n{FAST}\n[alerts.rules.filesystem_full]\nfor_secs = 0\nused_percent = 90\n")
}

fn alertnames(payloads: &[serde_json::Value]) -> Vec<String> {
    payloads
        .iter()
        .map(|p| {
            p["groupLabels"]["alertname"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// The receiver's notifications, once there is one.
async fn notified(hook: &TestReceiver, what: &str) -> Result<Vec<serde_json::Value>> {
    eventually(Duration::from_secs(30), what, || async {
        let a = hook.accepted();
        (!a.is_empty()).then_some(a)
    })
    .await
}

fn metric(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_a_while_gets_everything_and_a_400_is_not_retried() -> Result<()> {
    init_crypto();
    let pki = TestPki::new()?;
    let dir = tempfile::tempdir()?;
    let reg = register(dir.path(), 3, None)?;
    let flaky = TestReceiver::start(503).await?;
    let refusing = TestReceiver::start(400).await?;
    let extra = format!(
        "[territory]\nregister_path = \"{}\"\n{}{}{}",
        reg.display(),
        full_disk_alerts(),
        receiver_toml("flaky", &flaky.url(), ""),
        receiver_toml("refusing", &refusing.url(), "")
    );
    let c = TestCollector::start_with(&pki, &extra).await?;
    // One full disk in each of three comuni: three groups, three
    // notifications per receiver.
    for i in 1..=3 {
        deliver(
            &pki,
            c.running.grpc_addr,
            &format!("site-{i}"),
            disk_report(&format!("pc-{i}"), 1, 3600, 95),
        )
        .await?;
    }
    eventually(
        Duration::from_secs(30),
        "three 503s at the flaky receiver",
        || async {
            (flaky
                .requests()
                .iter()
                .filter(|r| r.answered == 503)
                .count()
                >= 3)
                .then_some(())
        },
    )
    .await?;
    flaky.set_status(200);
    let got = eventually(Duration::from_secs(30), "all three delivered", || async {
        let a = flaky.accepted();
        (a.len() >= 3).then_some(a)
    })
    .await?;
    let comuni: BTreeSet<String> = got
        .iter()
        .map(|p| p["groupLabels"]["comune"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(comuni.len(), 3, "one per comune: {comuni:?}");
    assert!(
        alertnames(&got)
            .iter()
            .all(|n| n == "CampanileFilesystemNearlyFull")
    );
    // The refusing receiver saw each notification exactly once.
    eventually(Duration::from_secs(10), "three refusals", || async {
        (refusing.requests().len() >= 3).then_some(())
    })
    .await?;
    // Give a retry loop every chance to show itself: several group
    // intervals and retry delays.
    let before = (flaky.requests().len(), refusing.requests().len());
    let settle = tokio::time::Instant::now() + Duration::from_secs(6);
    while tokio::time::Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(refusing.requests().len(), 3, "a 400 is not retried");
    assert_eq!(flaky.accepted().len(), 3, "delivered once each");
    assert_eq!(
        (flaky.requests().len(), refusing.requests().len()),
        before,
        "nothing more was sent"
    );
    let m = eventually(
        Duration::from_secs(20),
        "outbox empty in /metrics",
        || async {
            let m = c.metrics().await.ok()?;
            (sample(
                &m,
                "campanile_alert_outbox_notifications{receiver=\"flaky\"}",
            ) == Some(0.0))
            .then_some(m)
        },
    )
    .await?;
    let n = |r: &str, o: &str| {
        metric(
            &m,
            &format!("campanile_alert_notifications_total{{outcome=\"{o}\",receiver=\"{r}\"}}"),
        )
    };
    assert_eq!(n("flaky", "delivered"), 3.0);
    assert!(n("flaky", "retried") >= 3.0);
    assert_eq!(n("refusing", "rejected"), 3.0);
    assert_eq!(n("refusing", "retried"), 0.0);
    assert_eq!(
        metric(
            &m,
            "campanile_alerts{alertname=\"CampanileFilesystemNearlyFull\",severity=\"warning\",state=\"firing\"}"
        ),
        3.0
    );
    c.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_silent_hosts_of_a_dark_comune_make_one_notification_and_one_resolve() -> Result<()> {
    init_crypto();
    let pki = TestPki::new()?;
    let dir = tempfile::tempdir()?;
    // The comune's line: a TCP listener the centre's WAN probe reaches.
    let line = std::net::TcpListener::bind("127.0.0.1:0")?;
    let line_port = line.local_addr()?.port();
    let reg = register(dir.path(), 1, Some("127.0.0.1"))?;
    let hook = TestReceiver::start(200).await?;
    // The hosts come back one delivery at a time. Those not back yet are
    // down and no longer inhibited once the first is back (the site is no
    // longer dark), and rightly notified at the next group interval: a
    // longer interval than FAST's lets all fifty return first on a loaded
    // test machine, as they do within a second on a quiet one.
    let alerts = FAST.replace("group_interval_secs = 2", "group_interval_secs = 10");
    let extra = format!(
        "[territory]\nregister_path = \"{}\"\n\
         [probes.wan]\ninterval_secs = 1\nmethod = \"tcp\"\ntcp_port = {line_port}\ntcp_timeout_ms = 300\n\
         [alerts]\n{alerts}\n\
         [alerts.rules.host_down]\nfor_secs = 10\n\
         [alerts.rules.site_dark]\nfor_secs = 0\n{}",
        reg.display(),
        receiver_toml("noc", &hook.url(), "")
    );
    let c = TestCollector::start_with(&pki, &extra).await?;
    let hosts: Vec<String> = (0..50).map(|i| format!("pc-{i:02}")).collect();
    let deliver_all = |seq: u64, interval: u32| {
        let (pki, grpc, hosts) = (&pki, c.running.grpc_addr, &hosts);
        async move {
            for h in hosts {
                deliver(pki, grpc, "site-1", disk_report(h, seq, interval, 10)).await?;
            }
            anyhow::Ok(())
        }
    };
    // Every host reports once with a 1 s interval: silent 3 s later.
    deliver_all(1, 1).await?;
    // The line is cut as the hosts go quiet.
    drop(line);
    let first = notified(&hook, "the site-dark notification").await?;
    assert_eq!(alertnames(&first), ["CampanileSiteDark"]);
    assert_eq!(first[0]["status"], "firing");
    assert_eq!(first[0]["commonLabels"]["severity"], "critical");
    assert_eq!(first[0]["commonLabels"]["comune"], "Comune 1");
    // The hosts' own alerts fire (after 10 s) but stay inhibited.
    eventually(Duration::from_secs(30), "50 inhibited host alerts", || async {
        let m = c.metrics().await.ok()?;
        (sample(
            &m,
            "campanile_alerts{alertname=\"CampanileHostDown\",severity=\"warning\",state=\"inhibited\"}",
        ) == Some(50.0))
        .then_some(())
    })
    .await?;
    // Time passes with the site dark: nothing more is sent.
    let settle = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        hook.accepted().len(),
        1,
        "{:?}",
        alertnames(&hook.accepted())
    );
    // They come back, now reporting hourly.
    deliver_all(2, 3600).await?;
    let all = eventually(Duration::from_secs(30), "the resolve", || async {
        let a = hook.accepted();
        (a.len() >= 2).then_some(a)
    })
    .await?;
    assert_eq!(all[1]["status"], "resolved");
    assert_eq!(alertnames(&all), ["CampanileSiteDark", "CampanileSiteDark"]);
    let settle = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        hook.accepted().len(),
        2,
        "exactly one resolve and nothing about hosts: {:?}",
        alertnames(&hook.accepted())
    );
    c.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_pending_at_a_restart_are_delivered_after_it() -> Result<()> {
    init_crypto();
    let pki = TestPki::new()?;
    let dir = tempfile::tempdir()?;
    let reg = register(dir.path(), 2, None)?;
    let hook = TestReceiver::start(503).await?;
    let extra = format!(
        "[territory]\nregister_path = \"{}\"\n{}{}",
        reg.display(),
        full_disk_alerts(),
        receiver_toml("noc", &hook.url(), "")
    );
    let db = dir.path().join("campanile.db");
    let cfg = pki.collector_config_with(&db, &extra)?;
    let running = campanile_collector::start(cfg.clone()).await?;
    for i in 1..=2 {
        deliver(
            &pki,
            running.grpc_addr,
            &format!("site-{i}"),
            disk_report(&format!("pc-{i}"), 1, 3600, 97),
        )
        .await?;
    }
    // Both wait in the outbox; the first has been refused (delivery keeps
    // order per receiver, so the second waits behind it).
    let metrics_url = format!("http://{}/metrics", running.http_addr);
    eventually(
        Duration::from_secs(30),
        "two notifications pending",
        || async {
            let m = campanile_tests::http_get(&metrics_url).await.ok()?;
            (sample(&m, "campanile_alert_outbox_notifications{receiver=\"noc\"}") == Some(2.0)
                && !hook.requests().is_empty())
            .then_some(())
        },
    )
    .await?;
    running.shutdown().await?;
    assert!(hook.accepted().is_empty());
    hook.set_status(200);
    let running = campanile_collector::start(cfg).await?;
    let got = eventually(
        Duration::from_secs(30),
        "delivery after the restart",
        || async {
            let a = hook.accepted();
            (a.len() >= 2).then_some(a)
        },
    )
    .await?;
    let settle = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        hook.accepted().len(),
        2,
        "each notification once, none re-made by the restarted collector: {got:?}"
    );
    running.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_payload_verifies_and_a_tampered_one_does_not() -> Result<()> {
    init_crypto();
    let pki = TestPki::new()?;
    let dir = tempfile::tempdir()?;
    let reg = register(dir.path(), 1, None)?;
    let secret = "s3cret-shared-with-the-receiver";
    let secret_path = dir.path().join("hook.secret");
    std::fs::write(&secret_path, format!("{secret}\n"))?;
    let hook = TestReceiver::start(200).await?;
    let extra = format!(
        "[territory]\nregister_path = \"{}\"\n{}{}",
        reg.display(),
        full_disk_alerts(),
        receiver_toml(
            "signed",
            &hook.url(),
            &format!("signing_secret_file = \"{}\"", secret_path.display())
        )
    );
    let c = TestCollector::start_with(&pki, &extra).await?;
    deliver(
        &pki,
        c.running.grpc_addr,
        "site-1",
        disk_report("pc-1", 1, 3600, 95),
    )
    .await?;
    let req = eventually(Duration::from_secs(30), "a signed notification", || async {
        hook.requests().into_iter().next()
    })
    .await?;
    let ts = req
        .header("x-campanile-timestamp")
        .context("timestamp header")?;
    let sig = req
        .header("x-campanile-signature")
        .context("signature header")?;
    let age = campanile_agent::now_ms() / 1000 - ts.parse::<i64>()?;
    assert!((0..60).contains(&age), "timestamp is now: {age} s");
    // What a receiver does, written independently of the collector's code.
    let verify = |body: &[u8]| {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let mut msg = ts.as_bytes().to_vec();
        msg.push(b'.');
        msg.extend_from_slice(body);
        let expected: String = ring::hmac::sign(&key, &msg)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        sig == format!("sha256={expected}")
    };
    assert!(verify(&req.body), "the signature verifies");
    let mut tampered = req.body.to_vec();
    let at = tampered
        .windows(6)
        .position(|w| w == b"firing")
        .context("payload says firing")?;
    tampered[at..at + 6].copy_from_slice(b"FIRING");
    assert!(!verify(&tampered), "a tampered body fails");
    assert_eq!(req.json()["version"], "4");
    c.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_alertmanager_accepts_alerts_from_the_sink() -> Result<()> {
    init_crypto();
    let am_bin = require_tool("prometheus-alertmanager")?;
    let pki = TestPki::new()?;
    let dir = tempfile::tempdir()?;
    let am_cfg = dir.path().join("alertmanager.yml");
    std::fs::write(
        &am_cfg,
        "route:\n  receiver: blackhole\n  group_by: [alertname, comune]\nreceivers:\n  - name: blackhole\n",
    )?;
    let port = free_port()?;
    let mut child = Command::new(am_bin);
    child
        .arg(format!("--config.file={}", am_cfg.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("am-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _am = ChildGuard(child.spawn().context("start alertmanager")?);
    let am_url = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(30), "alertmanager ready", || async {
        reqwest::get(format!("{am_url}/-/ready"))
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await?;
    let reg = register(dir.path(), 1, None)?;
    let extra = format!(
        "[territory]\nregister_path = \"{}\"\n{}\n[[alerts.alertmanager]]\nurl = \"{am_url}\"\nresend_interval_secs = 1\n",
        reg.display(),
        full_disk_alerts(),
    );
    let c = TestCollector::start_with(&pki, &extra).await?;
    deliver(
        &pki,
        c.running.grpc_addr,
        "site-1",
        disk_report("pc-1", 1, 3600, 96),
    )
    .await?;
    let alerts = eventually(
        Duration::from_secs(30),
        "the alert in alertmanager",
        || async {
            let body = reqwest::get(format!("{am_url}/api/v2/alerts"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            let list = v.as_array()?.clone();
            (!list.is_empty()).then_some(list)
        },
    )
    .await?;
    let a = &alerts[0];
    assert_eq!(a["labels"]["alertname"], "CampanileFilesystemNearlyFull");
    assert_eq!(a["labels"]["host"], "pc-1");
    assert_eq!(a["labels"]["comune"], "Comune 1");
    assert_eq!(a["labels"]["mountpoint"], "/");
    assert_eq!(a["status"]["state"], "active");
    assert!(
        a["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("96%")),
        "{a}"
    );
    assert!(
        a["generatorURL"]
            .as_str()
            .is_some_and(|u| u.starts_with(&format!("http://{}", c.running.http_addr))),
        "{a}"
    );
    let m = c.metrics().await?;
    assert!(
        metric(
            &m,
            &format!(
                "campanile_alertmanager_posts_total{{alertmanager=\"{am_url}\",outcome=\"delivered\"}}"
            )
        ) >= 1.0
    );
    c.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maintenance_window_silences_a_site_until_it_ends() -> Result<()> {
    init_crypto();
    let pki = TestPki::new()?;
    let dir = tempfile::tempdir()?;
    let reg = register(dir.path(), 2, None)?;
    let hook = TestReceiver::start(200).await?;
    let (reader, maintainer) = ("reader-token-0123456789", "maintainer-token-0123456789");
    let sha = |t: &str| -> String {
        ring::digest::digest(&ring::digest::SHA256, t.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let extra = format!(
        "[territory]\nregister_path = \"{}\"\n\
         [api]\n[[api.tokens]]\nname = \"noc\"\nsha256 = \"{}\"\n\
         [[api.tokens]]\nname = \"tech\"\nsha256 = \"{}\"\nrole = \"maintain\"\n{}{}",
        reg.display(),
        sha(reader),
        sha(maintainer),
        full_disk_alerts(),
        receiver_toml("noc", &hook.url(), "")
    );
    let c = TestCollector::start_with(&pki, &extra).await?;
    let client = reqwest::Client::new();
    let post = |token: &str, body: serde_json::Value| {
        client
            .post(c.url("/api/v1/maintenance"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    // A read-only token may not set windows; unknown sites are refused.
    let r = post(
        reader,
        serde_json::json!({"site": "site-1", "duration_secs": 8}),
    )
    .await?;
    assert_eq!(r.status().as_u16(), 403);
    let r = post(
        maintainer,
        serde_json::json!({"site": "nowhere", "duration_secs": 8}),
    )
    .await?;
    assert_eq!(r.status().as_u16(), 422);
    let r = post(
        maintainer,
        serde_json::json!({"site": "site-1", "duration_secs": 8, "reason": "disk swap"}),
    )
    .await?;
    assert_eq!(r.status().as_u16(), 201);
    let window: serde_json::Value = serde_json::from_str(&r.text().await?)?;
    assert_eq!(window["created_by"], "tech");
    assert_eq!(window["active"], true);
    let set_at = tokio::time::Instant::now();
    // Both sites get a full disk; only site-2 is notified now.
    for i in 1..=2 {
        deliver(
            &pki,
            c.running.grpc_addr,
            &format!("site-{i}"),
            disk_report(&format!("pc-{i}"), 1, 3600, 95),
        )
        .await?;
    }
    let first = notified(&hook, "site-2 notified").await?;
    assert_eq!(first[0]["commonLabels"]["site"], "site-2");
    let (_, listed) = http_get_with(&c.url("/api/v1/alerts?site=site-1"), Some(reader)).await?;
    let listed: serde_json::Value = serde_json::from_str(&listed)?;
    assert_eq!(listed["alerts"][0]["silenced_by"], window["id"]);
    assert_eq!(listed["alerts"][0]["state"], "firing");
    // Until the window ends, site-1 stays quiet.
    while set_at.elapsed() < Duration::from_secs(7) {
        assert_eq!(hook.accepted().len(), 1, "silenced during the window");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all = eventually(
        Duration::from_secs(30),
        "site-1 notified after the window",
        || async {
            let a = hook.accepted();
            (a.len() >= 2).then_some(a)
        },
    )
    .await?;
    assert_eq!(all[1]["commonLabels"]["site"], "site-1");
    assert_eq!(all[1]["status"], "firing");
    assert!(
        set_at.elapsed() >= Duration::from_secs(7),
        "not before the window ended"
    );
    c.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_a_far_clock_or_an_expiring_certificate_is_alerted_by_name() -> Result<()> {
    init_crypto();
    let pki = TestPki::new()?;
    let dir = tempfile::tempdir()?;
    let reg = register(dir.path(), 1, None)?;
    let extra = format!(
        "[territory]\nregister_path = \"{}\"\n[alerts]\n{FAST}\n\
         [alerts.rules.clock_skew]\nfor_secs = 0\nmax_offset_secs = 60\n\
         [alerts.rules.certificate_expiry]\nwithin_days = 30\n",
        reg.display()
    );
    let c = TestCollector::start_with(&pki, &extra).await?;
    let request = |host: &str, skew_ms: i64| campanile_proto::v1::DeliverRequest {
        reports: vec![disk_report(host, 1, 3600, 10)],
        agent_stats: None,
        sent_unix_ms: campanile_agent::now_ms() + skew_ms,
    };
    let grpc = c.running.grpc_addr;
    // Two minutes fast; a certificate with ten days left; one fine agent.
    campanile_tests::deliver_raw(&pki, grpc, "site-1", 365, request("pc-fast", 120_000)).await?;
    campanile_tests::deliver_raw(&pki, grpc, "site-1", 10, request("pc-expiring", 0)).await?;
    campanile_tests::deliver_raw(&pki, grpc, "site-1", 365, request("pc-fine", -2_000)).await?;
    let firing = eventually(Duration::from_secs(30), "both alerts firing", || async {
        let view = c.running.alerts.view();
        let names: Vec<(String, String)> = view
            .alerts
            .iter()
            .filter(|a| a.state() == campanile_collector::alerts::engine::State::Firing)
            .map(|a| (a.name().to_owned(), a.labels["host"].clone()))
            .collect();
        (names.len() >= 2).then_some(names)
    })
    .await?;
    let set: BTreeSet<(String, String)> = firing.into_iter().collect();
    assert_eq!(
        set,
        [
            ("CampanileAgentClockSkew".to_owned(), "pc-fast".to_owned()),
            (
                "CampanileAgentCertificateExpiring".to_owned(),
                "pc-expiring".to_owned()
            ),
        ]
        .into()
    );
    let m = c.metrics().await?;
    let offset = metric(
        &m,
        "campanile_site_agent_clock_offset_max_seconds{site=\"site-1\"}",
    );
    assert!((110.0..=130.0).contains(&offset), "{offset}");
    let expiry = metric(
        &m,
        "campanile_site_agent_certificate_expiry_min_timestamp_seconds{site=\"site-1\"}",
    );
    let days_left = (expiry - (campanile_agent::now_ms() / 1000) as f64) / 86_400.0;
    assert!((9.0..=10.1).contains(&days_left), "{days_left}");
    c.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evaluation_due_at_a_scrape_reads_the_scrapes_snapshot() -> Result<()> {
    init_crypto();
    let pki = TestPki::new()?;
    let dir = tempfile::tempdir()?;
    let reg = register(dir.path(), 1, None)?;
    let hook = TestReceiver::start(200).await?;
    let extra = format!(
        "[territory]\nregister_path = \"{}\"\n\
         [alerts]\nevaluation_interval_secs = 4\ngroup_wait_secs = 1\ngroup_interval_secs = 2\n\
         [alerts.rules.filesystem_full]\nfor_secs = 0\nused_percent = 90\n{}",
        reg.display(),
        receiver_toml("noc", &hook.url(), "")
    );
    let c = TestCollector::start_with(&pki, &extra).await?;
    deliver(
        &pki,
        c.running.grpc_addr,
        "site-1",
        disk_report("pc-1", 1, 3600, 95),
    )
    .await?;
    // Scraped as Prometheus would, only more often: each evaluation falls
    // due within half an interval of some scrape.
    let scrape = r#"campanile_alert_evaluations_total{snapshot="scrape"}"#;
    let text = eventually(
        Duration::from_secs(30),
        "an evaluation on a scrape's snapshot",
        || async {
            let (_, text) = http_get_with(&c.url("/metrics"), None).await.ok()?;
            (metric(&text, scrape) >= 2.0).then_some(text)
        },
    )
    .await?;
    assert!(
        metric(
            &text,
            r#"campanile_alert_evaluations_total{snapshot="own"}"#
        ) >= 1.0,
        "the first evaluation, before any scrape, reads its own:\n{text}"
    );
    // What the scrape's snapshot held is what fired.
    let sent = notified(&hook, "the full disk notified").await?;
    assert!(
        alertnames(&sent).contains(&"CampanileFilesystemNearlyFull".to_owned()),
        "{sent:?}"
    );
    c.stop().await?;
    Ok(())
}
