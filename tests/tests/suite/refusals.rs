//! Whatever a bad peer sends, the collector refuses it with a clear error,
//! counts it, and keeps serving the next valid agent.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
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
    assert_ne!(err.code(), tonic::Code::Ok);

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
                })
                .collect(),
        }),
        ..Default::default()
    });
    let status = IngestClient::new(ch.clone())
        .deliver(DeliverRequest {
            reports: vec![big],
            agent_stats: None,
            sent_unix_ms: 0,
        })
        .await
        .expect_err("oversize must be refused");
    assert!(status.code() == tonic::Code::OutOfRange, "{status:?}");

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
