//! Whatever a bad peer sends, the collector refuses it with a clear error,
//! counts it, and keeps serving the next valid agent.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use campanile_agent::transport::{SendError, Transport};
use campanile_agent::{Agent, SendOutcome};
use campanile_collector::pki::{self, Ca};
use campanile_proto::identity::HostIdentity;
use campanile_proto::v1::ingest_client::IngestClient;
use campanile_proto::v1::{DeliverRequest, Inventory, Package, PackageList, Report};
use campanile_tests::{TestCollector, TestPki, sample};
use time::OffsetDateTime;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// A valid agent still gets through.
async fn valid_agent_still_delivers(pki: &TestPki, c: &TestCollector) -> Result<()> {
    let mut agent = Agent::new(pki.agent_config("good-pc", "site-ok", c.running.grpc_addr, 60)?)?;
    agent.collect().await;
    match agent.send().await {
        SendOutcome::Drained => Ok(()),
        other => bail!("valid agent could not deliver after a refusal: {other:?}"),
    }
}

fn channel(
    pki: &TestPki,
    c: &TestCollector,
    identity: Option<(&Path, &Path)>,
) -> Result<tonic::transport::Channel> {
    let ca = std::fs::read(pki.path().join("ca.pem"))?;
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(cert)?,
            std::fs::read(key)?,
        ));
    }
    Ok(
        Endpoint::from_shared(format!("https://127.0.0.1:{}", c.running.grpc_addr.port()))?
            .tls_config(tls)?
            .timeout(Duration::from_secs(10))
            .connect_lazy(),
    )
}

fn report(host: &str, seq: u64) -> Report {
    Report {
        host_id: host.into(),
        epoch: 1,
        seq,
        collected_at_ms: campanile_agent::now_ms(),
        interval_secs: 60,
        agent_version: "test".into(),
        inventory_sha256: vec![7; 32],
        ..Default::default()
    }
}

/// Any failure of the first RPC: with TLS 1.3 a refused client certificate
/// surfaces there, not on connect.
async fn first_rpc_fails(channel: tonic::transport::Channel, host: &str) -> Result<tonic::Status> {
    let mut client = IngestClient::new(channel);
    match client
        .deliver(DeliverRequest {
            reports: vec![report(host, 1)],
            agent_stats: None,
            sent_unix_ms: 0,
        })
        .await
    {
        Ok(_) => bail!("the collector accepted a report it must refuse"),
        Err(status) => Ok(status),
    }
}

#[tokio::test]
async fn refuses_connection_without_client_certificate() -> Result<()> {
    let pki = TestPki::new()?;
    let c = TestCollector::start(&pki).await?;
    let status = first_rpc_fails(channel(&pki, &c, None)?, "nobody").await?;
    assert_ne!(status.code(), tonic::Code::Ok);
    let text = c.metrics().await?;
    assert_eq!(
        sample(
            &text,
            r#"campanile_tls_handshake_failures_total{reason="no_client_certificate"}"#
        ),
        Some(1.0),
        "{text}"
    );
    valid_agent_still_delivers(&pki, &c).await?;
    assert!(c.running.store.inventory("nobody")?.is_none());
    c.stop().await?;
    Ok(())
}

#[tokio::test]
async fn refuses_certificate_from_another_ca() -> Result<()> {
    let pki = TestPki::new()?;
    let c = TestCollector::start(&pki).await?;
    let rogue = Ca::generate("Rogue CA", 30)?;
    let issued = rogue.issue_agent(&HostIdentity::new("intruder", "site-x")?, 30)?;
    let dir = tempfile::tempdir()?;
    let (cert, key) = pki::write_issued(dir.path(), "intruder", &issued)?;
    first_rpc_fails(channel(&pki, &c, Some((&cert, &key)))?, "intruder").await?;
    let text = c.metrics().await?;
    assert_eq!(
        sample(
            &text,
            r#"campanile_tls_handshake_failures_total{reason="unknown_issuer"}"#
        ),
        Some(1.0)
    );
    valid_agent_still_delivers(&pki, &c).await?;
    assert!(c.running.store.inventory("intruder")?.is_none());
    c.stop().await?;
    Ok(())
}

#[tokio::test]
async fn refuses_expired_certificate() -> Result<()> {
    let pki = TestPki::new()?;
    let c = TestCollector::start(&pki).await?;
    let now = OffsetDateTime::now_utc();
    let issued = pki.ca.issue_agent_between(
        &HostIdentity::new("old-pc", "site-y")?,
        now - time::Duration::days(400),
        now - time::Duration::days(35),
    )?;
    let dir = tempfile::tempdir()?;
    let (cert, key) = pki::write_issued(dir.path(), "old-pc", &issued)?;
    first_rpc_fails(channel(&pki, &c, Some((&cert, &key)))?, "old-pc").await?;
    let text = c.metrics().await?;
    assert_eq!(
        sample(
            &text,
            r#"campanile_tls_handshake_failures_total{reason="certificate_expired"}"#
        ),
        Some(1.0),
        "{text}"
    );
    valid_agent_still_delivers(&pki, &c).await?;
    c.stop().await?;
    Ok(())
}

#[tokio::test]
async fn rejects_report_for_another_host() -> Result<()> {
    let pki = TestPki::new()?;
    let c = TestCollector::start(&pki).await?;
    // A valid certificate for pc-a, a payload that claims pc-b.
    let (cert, key) = pki.agent("pc-a", "site-a")?;
    let status = first_rpc_fails(channel(&pki, &c, Some((&cert, &key)))?, "pc-b").await?;
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("pc-b") && status.message().contains("pc-a"));
    let text = c.metrics().await?;
    assert_eq!(
        sample(
            &text,
            r#"campanile_ingest_requests_rejected_total{reason="wrong_host"}"#
        ),
        Some(1.0)
    );
    assert!(c.running.store.inventory("pc-b")?.is_none());
    valid_agent_still_delivers(&pki, &c).await?;
    c.stop().await?;
    Ok(())
}

/// Same method path, a body that is not a DeliverRequest: field 1 holds
/// bytes that do not decode as a Report.
#[derive(Clone, PartialEq, prost::Message)]
struct Garbage {
    #[prost(bytes = "vec", tag = "1")]
    junk: Vec<u8>,
}

#[tokio::test]
async fn malformed_bytes_and_oversize_messages_get_an_error_and_the_server_keeps_serving()
-> Result<()> {
    let pki = TestPki::new()?;
    let c = TestCollector::start(&pki).await?;
    let (cert, key) = pki.agent("pc-m", "site-m")?;
    let ch = channel(&pki, &c, Some((&cert, &key)))?;

    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await?;
    let path = http::uri::PathAndQuery::from_static("/campanile.v1.Ingest/Deliver");
    let codec = tonic_prost::ProstCodec::<Garbage, campanile_proto::v1::DeliverResponse>::default();
    let junk = Garbage {
        junk: vec![0xff, 0xff, 0xff, 0x0f, 0x01, 0x02],
    };
    let err = grpc
        .unary(tonic::Request::new(junk), path, codec)
        .await
        .expect_err("garbage must be refused");
    assert_eq!(err.code(), tonic::Code::Internal, "{err:?}");

    // 1 MiB limit in the test config: a 2 MiB inventory is refused.
    let mut big = report("pc-m", 1);
    big.inventory = Some(Inventory {
        packages: Some(PackageList {
            source: "dpkg".into(),
            items: (0..20_000)
                .map(|i| Package {
                    name: format!("package-with-a-long-name-{i:06}"),
                    version: "1.0.0-1+deb12u1".into(),
                    arch: "amd64".into(),
                    ..Default::default()
                })
                .collect(),
        }),
        ..Default::default()
    });
    let status = IngestClient::new(ch.clone())
        .deliver(DeliverRequest {
            reports: vec![big.clone()],
            agent_stats: None,
            sent_unix_ms: 0,
        })
        .await
        .expect_err("oversize must be refused");
    assert!(status.code() == tonic::Code::OutOfRange, "{status:?}");
    // The same under gzip: small on the wire, too large once inflated.
    let status = IngestClient::new(ch.clone())
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .deliver(DeliverRequest {
            reports: vec![big],
            agent_stats: None,
            sent_unix_ms: 0,
        })
        .await
        .expect_err("oversize once inflated must be refused");
    assert!(
        status.code() == tonic::Code::ResourceExhausted,
        "{status:?}"
    );

    // An invalid value names the report, and the agent's transport can
    // tell which one to drop.
    let mut bad = report("pc-m", 5);
    bad.health = Some(campanile_proto::v1::Health {
        memory_total_bytes: Some(1),
        memory_available_bytes: Some(2),
        ..Default::default()
    });
    let cfg = pki.agent_config_with(
        "pc-m",
        c.running.grpc_addr,
        60,
        &pki.path().join("ca.pem"),
        &cert,
        &key,
    )?;
    let mut transport = Transport::new(&cfg.collector)?;
    match transport.deliver(vec![bad], Default::default()).await {
        Err(SendError::InvalidReport { seq: 5, message }) => {
            assert!(message.contains("memory_available_bytes"), "{message}")
        }
        other => bail!("expected an invalid-report refusal, got {other:?}"),
    }
    let text = c.metrics().await?;
    assert_eq!(
        sample(
            &text,
            r#"campanile_ingest_requests_rejected_total{reason="invalid_report"}"#
        ),
        Some(1.0)
    );

    // The same connection still works for a good report.
    let ok = IngestClient::new(ch)
        .deliver(DeliverRequest {
            reports: vec![report("pc-m", 1)],
            agent_stats: None,
            sent_unix_ms: 0,
        })
        .await?;
    assert_eq!(ok.into_inner().committed_seq, 1);
    valid_agent_still_delivers(&pki, &c).await?;
    c.stop().await?;
    Ok(())
}

/// Sends `request` as `host`'s agent over the channel; the status, if refused.
async fn send(
    ch: &tonic::transport::Channel,
    reports: Vec<Report>,
    stats: Option<campanile_proto::v1::AgentStats>,
    sent_unix_ms: i64,
) -> Result<campanile_proto::v1::DeliverResponse, tonic::Status> {
    IngestClient::new(ch.clone())
        .deliver(DeliverRequest {
            reports,
            agent_stats: stats,
            sent_unix_ms,
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn values_no_agent_sends_are_refused_with_a_reason_and_poison_nothing() -> Result<()> {
    let pki = TestPki::new()?;
    let c = TestCollector::start(&pki).await?;
    let (cert, key) = pki.agent("pc-v", "site-v")?;
    let ch = channel(&pki, &c, Some((&cert, &key)))?;
    let now = campanile_agent::now_ms();

    // A seq no agent reaches: refused, naming the report.
    let status = send(&ch, vec![report("pc-v", u64::MAX)], None, now)
        .await
        .expect_err("seq 2^64-1 must be refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("ahead of the last committed"),
        "{status:?}"
    );
    assert_eq!(
        status
            .metadata()
            .get(campanile_proto::INVALID_SEQ_METADATA)
            .map(|v| v.to_str().ok()),
        Some(Some("18446744073709551615"))
    );
    // The epoch is not poisoned: seq 1 is taken as new, not as a duplicate.
    let ack = send(&ch, vec![report("pc-v", 1)], None, now).await?;
    assert_eq!(ack.committed_seq, 1);

    // Collected in 1970 by the agent's own clock: refused.
    let mut old = report("pc-v", 2);
    old.collected_at_ms = 1_000;
    let status = send(&ch, vec![old], None, now).await.expect_err("1970");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("check the agent's clock"),
        "{status:?}"
    );
    // A week behind the collector, but sent by a clock a week behind too:
    // an agent whose clock is off is judged by its own clock.
    let week_ms = 7 * 86_400_000;
    let mut late_clock = report("pc-v", 3);
    late_clock.collected_at_ms = now - week_ms;
    let ack = send(&ch, vec![late_clock], None, now - week_ms).await?;
    assert_eq!(ack.committed_seq, 3);

    // A send time at the end of time: the offset is clamped, counted.
    let ack = send(&ch, vec![report("pc-v", 4)], None, i64::MAX).await?;
    assert_eq!(ack.committed_seq, 4);
    let metrics = c.metrics().await?;
    let offset = sample(
        &metrics,
        r#"campanile_site_agent_clock_offset_max_seconds{site="site-v"}"#,
    )
    .context("the site's clock offset")?;
    assert_eq!(
        offset,
        366.0 * 86_400.0,
        "clamped to limits.max_clock_offset_secs"
    );
    assert_eq!(
        sample(&metrics, "campanile_ingest_clock_offsets_clamped_total"),
        Some(1.0)
    );

    // Agent figures past any agent's are set aside; the report is kept,
    // and the site's sums do not wrap.
    let absurd = campanile_proto::v1::AgentStats {
        send_failures_total: u64::MAX,
        ..Default::default()
    };
    let ack = send(&ch, vec![report("pc-v", 5)], Some(absurd), now).await?;
    assert_eq!(ack.committed_seq, 5);
    let (cert2, key2) = pki.agent("pc-w", "site-v")?;
    let ch2 = channel(&pki, &c, Some((&cert2, &key2)))?;
    let two = campanile_proto::v1::AgentStats {
        send_failures_total: 2,
        ..Default::default()
    };
    send(&ch2, vec![report("pc-w", 1)], Some(two), now).await?;
    let metrics = c.metrics().await?;
    assert_eq!(
        sample(
            &metrics,
            r#"campanile_site_agent_send_failures_total{site="site-v"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&metrics, "campanile_ingest_agent_stats_refused_total"),
        Some(1.0)
    );
    for (reason, n) in [("implausible_seq", 1.0), ("invalid_report", 1.0)] {
        assert_eq!(
            sample(
                &metrics,
                &format!(r#"campanile_ingest_requests_rejected_total{{reason="{reason}"}}"#)
            ),
            Some(n),
            "{reason}"
        );
    }
    valid_agent_still_delivers(&pki, &c).await?;
    c.stop().await?;
    Ok(())
}
