//! Connections that the collector closes once idle (`idle_timeout_secs`:
//! large territories, limited open files): the agent reconnects at its next
//! report and resumes its TLS session; a resumed session still carries its
//! certificate's identity, and stops working when that certificate expires.

use std::time::{Duration, Instant};

use anyhow::Result;
use campanile_agent::{Agent, SendOutcome};
use campanile_tests::{TestCollector, TestPki, sample};

fn counter(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or(0.0)
}

const FULL: &str = r#"campanile_tls_handshakes_total{kind="full"}"#;
const RESUMED: &str = r#"campanile_tls_handshakes_total{kind="resumed"}"#;
const ACCEPTED: &str = "campanile_ingest_reports_accepted_total";
const OPEN: &str = "campanile_grpc_connections";

async fn idle_closing_collector(pki: &TestPki) -> Result<TestCollector> {
    idle_closing_collector_with(pki, true).await
}

async fn idle_closing_collector_with(pki: &TestPki, resumption: bool) -> Result<TestCollector> {
    TestCollector::start_tuned(pki, |c| {
        c.grpc.idle_timeout = Some(Duration::from_secs(1));
        c.tls.session_resumption = resumption;
    })
    .await
}

/// Three reports, each on a connection the collector then closes as idle;
/// returns the exposition after the third.
async fn three_reconnecting_reports(collector: &TestCollector, pki: &TestPki) -> Result<String> {
    let mut agent =
        Agent::new(pki.agent_config("pc-07", "municipio-a", collector.running.grpc_addr, 60)?)?;
    for round in 1..=3 {
        agent.collect().await;
        assert_eq!(agent.send().await, SendOutcome::Drained, "round {round}");
        until(collector, OPEN, 0.0).await?;
    }
    collector.metrics().await
}

/// Polls `/metrics` until `series` reads `want`; returns the exposition.
async fn until(collector: &TestCollector, series: &str, want: f64) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = collector.metrics().await?;
        if counter(&text, series) == want {
            return Ok(text);
        }
        assert!(
            Instant::now() < deadline,
            "{series} never read {want}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_idle_connection_is_closed_and_the_agent_resumes_its_tls_session() -> Result<()> {
    let pki = TestPki::new()?;
    let collector = idle_closing_collector(&pki).await?;
    let text = three_reconnecting_reports(&collector, &pki).await?;
    assert_eq!(counter(&text, FULL), 1.0, "one full handshake:\n{text}");
    assert_eq!(counter(&text, RESUMED), 2.0, "then resumptions:\n{text}");
    assert_eq!(counter(&text, ACCEPTED), 3.0, "every report, once");
    assert_eq!(
        sample(
            &text,
            r#"campanile_host_up{host="pc-07",site="municipio-a"}"#
        ),
        Some(1.0),
        "the resumed connections kept the certificate's identity:\n{text}"
    );
    collector.stop().await?;
    Ok(())
}

#[tokio::test]
async fn without_session_resumption_every_reconnect_is_a_full_handshake() -> Result<()> {
    let pki = TestPki::new()?;
    let collector = idle_closing_collector_with(&pki, false).await?;
    let text = three_reconnecting_reports(&collector, &pki).await?;
    assert_eq!(
        counter(&text, FULL),
        3.0,
        "no tickets, no resumption:\n{text}"
    );
    assert_eq!(counter(&text, RESUMED), 0.0, "{text}");
    assert_eq!(counter(&text, ACCEPTED), 3.0, "every report, once");
    collector.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_resumed_session_whose_certificate_has_expired_is_refused() -> Result<()> {
    let pki = TestPki::new()?;
    let collector = idle_closing_collector(&pki).await?;
    let now = time::OffsetDateTime::now_utc();
    let not_after = now + time::Duration::seconds(3);
    let (cert, key) = pki.agent_between(
        "pc-08",
        "municipio-a",
        now - time::Duration::hours(1),
        not_after,
    )?;
    let cfg = pki.agent_config_with(
        "pc-08",
        collector.running.grpc_addr,
        60,
        &pki.path().join("ca.pem"),
        &cert,
        &key,
    )?;
    let mut agent = Agent::new(cfg)?;
    agent.collect().await;
    assert_eq!(agent.send().await, SendOutcome::Drained, "valid at first");
    until(&collector, OPEN, 0.0).await?;

    // Wait out the certificate (x509 times have whole seconds).
    let deadline = Instant::now() + Duration::from_secs(30);
    while time::OffsetDateTime::now_utc() < not_after + time::Duration::seconds(1) {
        assert!(Instant::now() < deadline, "the clock did not move");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agent.collect().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        assert_ne!(
            agent.send().await,
            SendOutcome::Drained,
            "expired, yet accepted"
        );
        let text = collector.metrics().await?;
        let refused = counter(
            &text,
            r#"campanile_tls_handshake_failures_total{reason="resumed_certificate_expired"}"#,
        );
        if refused >= 1.0 {
            break text;
        }
        assert!(Instant::now() < deadline, "no refused resumption:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        counter(&text, ACCEPTED),
        1.0,
        "only the report sent in time"
    );
    assert_eq!(
        agent.spooled()?.len(),
        1,
        "the refused report waits in the spool"
    );
    collector.stop().await?;
    Ok(())
}
