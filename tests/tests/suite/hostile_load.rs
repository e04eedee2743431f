//! Load a hostile peer can make without a certificate, or with one, does
//! not keep the territory's agents out or take the collector's memory.
//!
//! The floods come from other loopback addresses (127.0.0.2 and up: all of
//! 127/8 is loopback on Linux) than the good agents (127.0.0.1), as an
//! attacker's would come from elsewhere than the comuni's links.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use campanile_agent::transport::Transport;
use campanile_proto::v1::{AgentStats, Report};
use campanile_tests::{TestCollector, TestPki, procs, sample};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The longest a good agent may wait for its delivery while a flood runs.
const GOOD_AGENT_BUDGET: Duration = Duration::from_secs(2);

fn flood_source(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + n))
}

/// Opens a TCP connection to `to` from `from` (any port).
async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// Opens `count` connections from `sources` in turn, each sending `first`
/// (nothing, or the start of a ClientHello) and then nothing more; returns
/// the ones that connected, to be held open.
async fn open_silent(
    to: SocketAddr,
    sources: &[IpAddr],
    count: usize,
    first: &'static [u8],
) -> Vec<TcpStream> {
    let mut opening = JoinSet::new();
    for i in 0..count {
        let from = sources[i % sources.len()];
        opening.spawn(async move {
            let mut s = tokio::time::timeout(Duration::from_secs(5), connect_from(from, to))
                .await
                .ok()?
                .ok()?;
            if !first.is_empty() {
                s.write_all(first).await.ok()?;
            }
            Some(s)
        });
    }
    let mut held = Vec::new();
    while let Some(done) = opening.join_next().await {
        if let Ok(Some(s)) = done {
            held.push(s);
        }
    }
    held
}

fn report(host: &str) -> Report {
    Report {
        host_id: host.into(),
        epoch: 1,
        seq: 1,
        collected_at_ms: campanile_agent::now_ms(),
        interval_secs: 60,
        agent_version: "test".into(),
        inventory_sha256: vec![7; 32],
        ..Default::default()
    }
}

/// A good agent on a new connection (its own certificate, from 127.0.0.1)
/// delivers one report; returns how long the delivery took, handshake
/// included.
async fn good_agent_delivers(pki: &TestPki, grpc: SocketAddr, host: &str) -> Result<Duration> {
    let cfg = pki.agent_config(host, "site-good", grpc, 60)?;
    let mut transport = Transport::new(&cfg.collector)?;
    let started = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(20),
        transport.deliver(vec![report(host)], AgentStats::default()),
    )
    .await
    .context("the delivery hung")?
    .map_err(|e| anyhow::anyhow!("{host} could not deliver: {e:?}"))?;
    Ok(started.elapsed())
}

/// Good agents, one every `every` until `until`, each on a new connection;
/// returns each one's wait (or its error).
async fn good_agents_meanwhile(
    pki: &TestPki,
    grpc: SocketAddr,
    every: Duration,
    until: Instant,
) -> Vec<Result<Duration>> {
    let mut waits = Vec::new();
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        let next = Instant::now() + every;
        waits.push(good_agent_delivers(pki, grpc, &format!("good-{n:03}")).await);
        tokio::time::sleep_until(next).await;
    }
    waits
}

fn judge(waits: &[Result<Duration>], what: &str) -> Result<()> {
    let slowest = waits
        .iter()
        .filter_map(|w| w.as_ref().ok())
        .max()
        .copied()
        .unwrap_or_default();
    let failed: Vec<String> = waits
        .iter()
        .filter_map(|w| w.as_ref().err().map(|e| e.to_string()))
        .collect();
    let late = waits
        .iter()
        .filter(|w| matches!(w, Ok(d) if *d > GOOD_AGENT_BUDGET))
        .count();
    eprintln!(
        "{what}: {} good agents, {} failed, {late} over {GOOD_AGENT_BUDGET:?}, slowest {slowest:?}",
        waits.len(),
        failed.len()
    );
    if waits.is_empty() || !failed.is_empty() || late > 0 {
        bail!(
            "{what}: of {} good agents {} failed and {late} waited over {GOOD_AGENT_BUDGET:?} \
             (slowest {slowest:?}); failures: {failed:?}",
            waits.len(),
            failed.len()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_by_the_thousand_do_not_keep_good_agents_out() -> Result<()> {
    procs::raise_open_files_limit()?;
    let pki = TestPki::new()?;
    let c = TestCollector::start(&pki).await?;
    let grpc = c.running.grpc_addr;
    let sources: Vec<IpAddr> = (0..4).map(flood_source).collect();

    // 600 connections that never say a word, held for the whole test...
    let mut held = open_silent(grpc, &sources, 600, b"").await;
    let until = Instant::now() + Duration::from_secs(30);
    let flood = {
        let sources = sources.clone();
        tokio::spawn(async move {
            // ... and 300 more every 4 s.
            while Instant::now() < until {
                let next = Instant::now() + Duration::from_secs(4);
                held.extend(open_silent(grpc, &sources, 300, b"").await);
                tokio::time::sleep_until(next).await;
            }
            held.len()
        })
    };
    let waits = good_agents_meanwhile(&pki, grpc, Duration::from_millis(1000), until).await;
    let opened = flood.await?;
    eprintln!("idle flood: {opened} silent connections opened");
    judge(&waits, "idle flood")?;
    let metrics = c.metrics().await?;
    let shed = sample(
        &metrics,
        r#"campanile_grpc_connections_shed_total{reason="hello_timeout"}"#,
    );
    assert!(
        shed.is_some_and(|n| n >= 600.0),
        "the silent ones closed, counted: {shed:?}"
    );
    c.stop().await?;
    Ok(())
}

/// The first bytes of a ClientHello: a handshake record of 512 bytes, of
/// which only the record header and the message header ever come.
const PARTIAL_CLIENT_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_partial_client_hellos_from_one_address_does_not_delay_others() -> Result<()> {
    procs::raise_open_files_limit()?;
    let pki = TestPki::new()?;
    let c = TestCollector::start(&pki).await?;
    let grpc = c.running.grpc_addr;
    let source = [flood_source(0)];

    let until = Instant::now() + Duration::from_secs(15);
    let flood = tokio::spawn(async move {
        let mut held = Vec::new();
        while Instant::now() < until {
            let next = Instant::now() + Duration::from_millis(500);
            held.extend(open_silent(grpc, &source, 200, PARTIAL_CLIENT_HELLO).await);
            tokio::time::sleep_until(next).await;
        }
        held.len()
    });
    // Once the flood has filled what it can.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waits = good_agents_meanwhile(&pki, grpc, Duration::from_millis(700), until).await;
    let opened = flood.await?;
    eprintln!("partial hello flood: {opened} partial ClientHellos sent");
    judge(&waits, "partial hello flood")?;
    let metrics = c.metrics().await?;
    for reason in ["hello_timeout", "source_limit"] {
        let shed = sample(
            &metrics,
            &format!(r#"campanile_grpc_connections_shed_total{{reason="{reason}"}}"#),
        );
        assert!(shed.is_some_and(|n| n > 0.0), "{reason}: {shed:?}");
    }
    c.stop().await?;
    Ok(())
}

/// An HTTP/2 connection over mTLS as the agent `host`, speaking h2
/// directly: to do what no tonic client does.
async fn raw_h2(
    pki: &TestPki,
    grpc: SocketAddr,
    host: &str,
) -> Result<h2::client::SendRequest<bytes::Bytes>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = pki.agent(host, "site-evil")?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(pki.path().join("ca.pem"))? {
        roots.add(ca?)?;
    }
    let mut tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            CertificateDer::pem_file_iter(&cert)?.collect::<Result<Vec<_>, _>>()?,
            PrivateKeyDer::from_pem_file(&key)?,
        )?;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(grpc).await?;
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect("localhost".try_into()?, tcp)
        .await?;
    let (send, conn) = h2::client::handshake(tls).await?;
    tokio::spawn(conn);
    Ok(send)
}

/// Opens a Deliver stream, sends a gRPC message header announcing
/// `declared` bytes and `sent` of them, then stalls; returns the gRPC
/// status the collector ended the stream with (or the h2 error).
async fn stalled_stream(
    send: h2::client::SendRequest<bytes::Bytes>,
    declared: u32,
    sent: usize,
) -> String {
    let request = http::Request::post("https://localhost/campanile.v1.Ingest/Deliver")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("a valid request");
    let (response, mut body) = match send.ready().await {
        Ok(mut ready) => match ready.send_request(request, false) {
            Ok(r) => r,
            Err(e) => return format!("h2: {e}"),
        },
        Err(e) => return format!("h2: {e}"),
    };
    let sending = async move {
        let mut data = bytes::BytesMut::with_capacity(5 + sent);
        data.extend_from_slice(&[0]);
        data.extend_from_slice(&declared.to_be_bytes());
        data.resize(5 + sent, 0x55);
        let mut data = data.freeze();
        while !data.is_empty() {
            body.reserve_capacity(data.len());
            let granted = match std::future::poll_fn(|cx| body.poll_capacity(cx)).await {
                Some(Ok(n)) => n,
                _ => return body,
            };
            if body
                .send_data(data.split_to(granted.min(data.len())), false)
                .is_err()
            {
                return body;
            }
        }
        // Stalled: the rest never comes. Held so the stream stays open.
        body
    };
    let (_body, answer) = tokio::join!(sending, response);
    match answer {
        Ok(resp) => resp
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| "no grpc-status".into(), |s| format!("grpc-status {s}")),
        Err(e) => format!("h2: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_streams_of_authenticated_agents_stay_within_the_memory_budget() -> Result<()> {
    const BUDGET: usize = 24 << 20;
    const MESSAGE: u32 = 4 << 20;
    let pki = TestPki::new()?;
    let dir = tempfile::tempdir()?;
    let (grpc_port, http_port) = (campanile_tests::free_port()?, campanile_tests::free_port()?);
    let toml = pki
        .collector_toml(&dir.path().join("campanile.db"), grpc_port, http_port, "")
        .replace(
            "max_message_bytes = 1048576",
            &format!(
                "max_message_bytes = {MESSAGE}\nrequest_body_timeout_secs = 3\n\
                 max_inflight_request_bytes = {BUDGET}"
            ),
        );
    let config = dir.path().join("collector.toml");
    std::fs::write(&config, toml)?;
    let log = std::fs::File::create(dir.path().join("collector.log"))?;
    let collector = campanile_tests::ChildGuard(
        std::process::Command::new(campanile_tests::collector_binary()?)
            .args(["run", "--config"])
            .arg(&config)
            .stderr(log)
            .spawn()?,
    );
    let pid = collector.0.id();
    let grpc: SocketAddr = format!("127.0.0.1:{grpc_port}").parse()?;
    let metrics_url = format!("http://127.0.0.1:{http_port}/metrics");
    campanile_tests::eventually(Duration::from_secs(20), "the collector", || async {
        campanile_tests::http_get(&metrics_url).await.ok()
    })
    .await?;
    // Warm: a good agent's delivery, as before any attack.
    good_agent_delivers(&pki, grpc, "good-000").await?;
    let baseline = procs::rss_bytes(pid).context("collector RSS")?;

    // Four compromised agents, each with a connection of 60 streams,
    // each stream stalled 64 KiB short of the message limit.
    let mut attack = JoinSet::new();
    for evil in 0..4 {
        let send = raw_h2(&pki, grpc, &format!("evil-{evil}")).await?;
        for _ in 0..60 {
            let send = send.clone();
            attack.spawn(stalled_stream(
                send,
                MESSAGE - 1024,
                (MESSAGE - (64 << 10)) as usize,
            ));
        }
    }
    let until = Instant::now() + Duration::from_secs(10);
    let mut peak = baseline;
    let mut waits = Vec::new();
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        waits.push(good_agent_delivers(&pki, grpc, &format!("good-{n:03}")).await);
        for _ in 0..5 {
            peak = peak.max(procs::rss_bytes(pid).unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Streams end one after another as the deadline resets them.
    let mut ended = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Ok(Some(done)) = tokio::time::timeout_at(deadline, attack.join_next()).await {
        ended.push(done?);
    }
    attack.abort_all();
    let metrics = campanile_tests::http_get(&metrics_url).await?;
    let rejected = |reason: &str| {
        sample(
            &metrics,
            &format!(r#"campanile_ingest_requests_rejected_total{{reason="{reason}"}}"#),
        )
        .unwrap_or(0.0)
    };
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "stalled streams: RSS {} MiB at rest, peak {} MiB (+{} MiB, budget {} MiB); \
         {} streams ended ({:?}); rejected body_timeout={} connection_buffer={} memory_budget={}",
        baseline >> 20,
        peak >> 20,
        growth >> 20,
        BUDGET >> 20,
        ended.len(),
        ended.iter().take(3).collect::<Vec<_>>(),
        rejected("body_timeout"),
        rejected("connection_buffer"),
        rejected("memory_budget"),
    );
    judge(&waits, "stalled streams")?;
    // The budget, and what HTTP/2 flow control lets the peers send ahead
    // (a 1 MiB connection window each) and the allocator's slack.
    assert!(
        growth <= (BUDGET + (16 << 20)) as u64,
        "RSS grew {} MiB under a budget of {} MiB",
        growth >> 20,
        BUDGET >> 20
    );
    assert!(
        rejected("body_timeout") > 0.0,
        "stalled bodies reset at the deadline"
    );
    assert!(
        ended.iter().any(|s| s == "grpc-status 4"),
        "a stream ended with DEADLINE_EXCEEDED: {ended:?}"
    );
    drop(collector);
    Ok(())
}

#[tokio::test]
async fn a_third_connection_of_one_certificate_identity_replaces_the_oldest() -> Result<()> {
    let pki = TestPki::new()?;
    let c = TestCollector::start(&pki).await?;
    let grpc = c.running.grpc_addr;
    let first = raw_h2(&pki, grpc, "copied-pc").await?;
    let second = raw_h2(&pki, grpc, "copied-pc").await?;
    let other = raw_h2(&pki, grpc, "other-pc").await?;
    campanile_tests::eventually(Duration::from_secs(10), "three connections", || async {
        (c.running.telemetry.grpc_connections.get() == 3).then_some(())
    })
    .await?;
    let _third = raw_h2(&pki, grpc, "copied-pc").await?;
    campanile_tests::eventually(Duration::from_secs(10), "the oldest to close", || {
        let mut first = first.clone();
        async move {
            std::future::poll_fn(|cx| first.poll_ready(cx))
                .await
                .is_err()
                .then_some(())
        }
    })
    .await?;
    for (name, mut conn) in [("second", second), ("other host's", other)] {
        tokio::time::timeout(
            Duration::from_secs(5),
            std::future::poll_fn(|cx| conn.poll_ready(cx)),
        )
        .await
        .with_context(|| format!("the {name} connection"))?
        .with_context(|| format!("the {name} connection is still open"))?;
    }
    let shed = c
        .running
        .telemetry
        .connections_shed
        .with_label_values(&["identity_limit"])
        .get();
    assert_eq!(shed, 1);
    c.stop().await?;
    Ok(())
}
