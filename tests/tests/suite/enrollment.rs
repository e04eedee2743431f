//! Enrollment end to end: tokens made by the collector's command line,
//! real agents enrolling over real TLS against the token's pinned CA, the
//! certificate written, and reports under the token's site and comune.
//! Bad requests are sent by a raw client, each refused and counted, with
//! a good enrollment after each.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use campanile_agent::enroll::cert_facts::CertFacts;
use campanile_proto::enrollment::EnrollmentToken;
use campanile_proto::v1::enrollment_client::EnrollmentClient;
use campanile_proto::v1::{EnrollRequest, EnrollResponse};
use campanile_tests::{
    ChildGuard, TestCollector, TestPki, agent_binary, collector_binary, eventually, http_get_with,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const SITE: &str = "municipio-a";
const OTHER_SITE: &str = "municipio-b";
const ISTAT: &str = "999001";
const API_TOKEN: &str = "enrollment-test-token";
const ENROLL_API_TOKEN: &str = "enrollment-test-installer";

/// A collector with enrollment on, a register of two sites in two comuni,
/// and its config written to a file for the command line.
struct Centre {
    pki: TestPki,
    c: TestCollector,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl Centre {
    async fn start(extra: &str) -> Result<Self> {
        let pki = TestPki::new()?;
        let dir = tempfile::tempdir()?;
        let register = dir.path().join("register.toml");
        std::fs::write(
            &register,
            format!(
                r#"
                [[comune]]
                istat_code = "{ISTAT}"
                name = "Borgo Esempio"
                [[comune]]
                istat_code = "999002"
                name = "Castel d'Esempio"
                [[site]]
                id = "{SITE}"
                comune = "{ISTAT}"
                name = "Municipio"
                kind = "town_hall"
                [[site]]
                id = "{OTHER_SITE}"
                comune = "999002"
                name = "Municipio"
                kind = "town_hall"
                "#
            ),
        )?;
        let sections = format!(
            r#"
            [enrollment]
            ca_key_path = "{ca_key}"
            {extra}
            [territory]
            register_path = "{register}"
            [[api.tokens]]
            name = "test"
            sha256 = "{api}"
            [[api.tokens]]
            name = "installer"
            sha256 = "{enroller}"
            role = "enroll"
            "#,
            ca_key = pki.path().join("ca.key").display(),
            register = register.display(),
            api = campanile_proto::hex(&campanile_proto::sha256(API_TOKEN.as_bytes())),
            enroller = campanile_proto::hex(&campanile_proto::sha256(ENROLL_API_TOKEN.as_bytes())),
        );
        let c = TestCollector::start_with(&pki, &sections).await?;
        // The command line reads the same config and store as the
        // running collector.
        let config = dir.path().join("collector.toml");
        c.write_config(&pki, &sections, &config)?;
        Ok(Self {
            pki,
            c,
            config,
            dir,
        })
    }

    fn grpc(&self) -> SocketAddr {
        self.c.running.grpc_addr
    }

    /// `campanile-collector enroll new`, its token read from what it prints.
    fn new_token(&self, site: &str, more: &[&str]) -> Result<EnrollmentToken> {
        let (line, text) = campanile_tests::enroll_new(&self.config, site, more)?;
        ensure!(
            text.contains("campanile-agent enroll --collector"),
            "no install command in: {text}"
        );
        Ok(EnrollmentToken::parse(&line)?)
    }

    fn enroll_cmd(&self, args: &[&str]) -> Result<std::process::Output> {
        Ok(Command::new(collector_binary()?)
            .arg("enroll")
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()?)
    }

    /// An agent config for `name` in the test's directory: no identity,
    /// no certificate yet, `more` appended.
    fn agent_toml(&self, name: &str, more: &str) -> Result<PathBuf> {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("agent.toml");
        std::fs::write(
            &path,
            format!(
                r#"
[collector]
endpoint = "https://127.0.0.1:{port}"
server_name = "localhost"
ca_cert_path = "ca.pem"
cert_path = "agent.pem"
key_path = "agent.key"
connect_timeout_secs = 5
request_timeout_secs = 10
[collect]
interval_secs = 1
systemd_units = false
packages = false
[spool]
path = "spool.redb"
[probes]
enabled = false
{more}
"#,
                port = self.grpc().port()
            ),
        )?;
        Ok(path)
    }

    async fn enrollments(&self, result: &str) -> Result<f64> {
        let text = self.c.metrics().await?;
        Ok(sample(
            &text,
            &format!("campanile_enrollments_total{{result=\"{result}\"}}"),
        ))
    }

    async fn api(&self, path: &str) -> Result<serde_json::Value> {
        let (status, body) = http_get_with(&self.c.url(path), Some(API_TOKEN)).await?;
        ensure!(status == 200, "GET {path}: {status}: {body}");
        Ok(serde_json::from_str(&body)?)
    }

    /// Waits until `host` shows in its comune's page under `site`.
    async fn reported(&self, host: &str, site: &str, istat: &str) -> Result<()> {
        eventually(
            Duration::from_secs(30),
            "the host in its comune",
            || async {
                let comune = self.api(&format!("/api/v1/comuni/{istat}")).await.ok()?;
                comune["sites"].as_array()?.iter().find(|s| {
                    s["id"] == site
                        && s["hosts"]
                            .as_array()
                            .is_some_and(|h| h.iter().any(|h| h["host_id"] == host))
                })?;
                Some(())
            },
        )
        .await
    }
}

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn spawn_agent(config: &Path) -> Result<ChildGuard> {
    Ok(ChildGuard(
        Command::new(agent_binary()?)
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?,
    ))
}

// The agent and the command line run as processes the test waits for:
// the collector in this process needs threads of its own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_enrolls_on_its_first_run_and_reports_under_its_tokens_site_and_comune()
-> Result<()> {
    let centre = Centre::start("").await?;
    let token = centre.new_token(SITE, &["--uses", "1", "--name", "first morning"])?;
    let config = centre.agent_toml("pc", &format!("[enrollment]\ntoken = \"{token}\""))?;
    let _agent = spawn_agent(&config)?;
    let dir = config.parent().context("agent dir")?;
    let facts = eventually(Duration::from_secs(30), "the certificate", || async {
        CertFacts::read(&dir.join("agent.pem")).ok()
    })
    .await?;
    assert_eq!(facts.identity.site, SITE);
    assert!(
        facts.identity.host_id.ends_with(&format!(".{SITE}")),
        "the default host id is hostname.site: {}",
        facts.identity.host_id
    );
    let lifetime_days = (facts.not_after_ms - facts.not_before_ms) / 86_400_000;
    assert_eq!(lifetime_days, 30, "the default lifetime");
    centre
        .reported(&facts.identity.host_id, SITE, ISTAT)
        .await?;
    #[cfg(unix)]
    for f in ["agent.key", "agent.pem", "ca.pem"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(f))?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    assert_eq!(centre.enrollments("ok").await?, 1.0);
    let list = centre.enroll_cmd(&["list"])?;
    let list = String::from_utf8(list.stdout)?;
    assert!(
        list.lines()
            .any(|l| l.starts_with(&token.id) && l.contains("0/1") && l.contains("used up")),
        "{list}"
    );
    assert!(
        !list.contains(&token.secret),
        "the list shows the secret: {list}"
    );
    Ok(())
}

// The agent and the command line run as processes the test waits for:
// the collector in this process needs threads of its own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enroll_command_asks_for_a_host_id_and_a_used_token_is_refused() -> Result<()> {
    let centre = Centre::start("").await?;
    let token = centre.new_token(SITE, &[])?;
    let config = centre.agent_toml("a", "")?;
    let enroll =
        |config: &Path, host: &str, token: &EnrollmentToken| -> Result<std::process::Output> {
            Ok(Command::new(agent_binary()?)
                .args(["enroll", "--config"])
                .arg(config)
                .args(["--token", &token.to_string(), "--host-id", host])
                .output()?)
        };
    let out = enroll(&config, "ragioneria-01", &token)?;
    ensure!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("enrolled as ragioneria-01 (site municipio-a)"),
        "{text}"
    );
    let _agent = spawn_agent(&config)?;
    centre.reported("ragioneria-01", SITE, ISTAT).await?;

    // The same token again (a replay, or a second PC): used up. Nothing is
    // written on the second machine.
    let second = centre.agent_toml("b", "")?;
    let out = enroll(&second, "ragioneria-02", &token)?;
    assert!(!out.status.success(), "a used token enrolled: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("used up"), "{err}");
    assert!(!second.with_file_name("agent.pem").exists());
    assert_eq!(centre.enrollments("token_used_up").await?, 1.0);

    // A revoked token enrolls nobody.
    let revoked = centre.new_token(SITE, &["--uses", "5"])?;
    let out = centre.enroll_cmd(&["revoke", &revoked.id])?;
    ensure!(out.status.success(), "{out:?}");
    let out = enroll(&second, "ragioneria-02", &revoked)?;
    assert!(!out.status.success());
    assert_eq!(centre.enrollments("token_revoked").await?, 1.0);

    // The host id taken by the first machine is not given to another.
    let fresh = centre.new_token(SITE, &[])?;
    let out = enroll(&second, "ragioneria-01", &fresh)?;
    assert!(
        !out.status.success(),
        "a second machine took a host id: {out:?}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds a valid certificate"));
    assert_eq!(centre.enrollments("host_taken").await?, 1.0);
    // The token was not used by that refusal: it still enrolls.
    let out = enroll(&second, "ragioneria-02", &fresh)?;
    ensure!(out.status.success(), "{out:?}");
    Ok(())
}

// The agent and the command line run as processes the test waits for:
// the collector in this process needs threads of its own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_sends_nothing_to_a_collector_whose_ca_is_not_the_tokens() -> Result<()> {
    let centre = Centre::start("").await?;
    let token = centre.new_token(SITE, &[])?;
    let mut forged = token.clone();
    forged.ca_sha256[0] ^= 0xff;
    let config = centre.agent_toml("pc", "")?;
    let out = Command::new(agent_binary()?)
        .args(["enroll", "--config"])
        .arg(&config)
        .args(["--token", &forged.to_string()])
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not trusted") && err.contains("token was not sent"),
        "{err}"
    );
    let text = centre.c.metrics().await?;
    let attempts: f64 = text
        .lines()
        .filter(|l| l.starts_with("campanile_enrollments_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(attempts, 0.0, "the collector saw an attempt:\n{text}");
    // The real token still works: nothing was spent.
    let out = Command::new(agent_binary()?)
        .args(["enroll", "--config"])
        .arg(&config)
        .args(["--token", &token.to_string()])
        .output()?;
    ensure!(out.status.success(), "{out:?}");
    Ok(())
}

/// A client that enrolls as an agent would, by hand: TLS trusting the
/// test CA, no client certificate, any request.
async fn raw_enroll(
    pki: &TestPki,
    grpc: SocketAddr,
    source: std::net::IpAddr,
    req: EnrollRequest,
) -> Result<std::result::Result<EnrollResponse, tonic::Status>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(pki.path().join("ca.pem"))?)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let connector = tower::service_fn(move |_: http::Uri| {
        let tls = tls.clone();
        async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source, 0))?;
            let tcp = socket.connect(grpc).await?;
            let name = ServerName::try_from("localhost").expect("a name");
            let stream = tls.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))?
        .connect_with_connector(connector)
        .await?;
    Ok(EnrollmentClient::new(channel)
        .enroll(req)
        .await
        .map(tonic::Response::into_inner))
}

fn csr(sans: &[&str], edit: impl FnOnce(&mut rcgen::CertificateParams)) -> Result<Vec<u8>> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    for s in sans {
        params
            .subject_alt_names
            .push(rcgen::SanType::URI((*s).try_into()?));
    }
    edit(&mut params);
    Ok(params.serialize_request(&key)?.der().to_vec())
}

fn fixture(name: &str) -> Result<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../collector/src/enroll/testdata")
        .join(name);
    std::fs::read(&path).with_context(|| path.display().to_string())
}

#[tokio::test]
async fn every_bad_request_is_refused_and_counted_and_a_good_agent_still_enrolls() -> Result<()> {
    let centre = Centre::start("").await?;
    let local: std::net::IpAddr = "127.0.0.1".parse()?;
    let token = centre.new_token(SITE, &["--uses", "100"])?;
    let expired = centre.new_token(SITE, &["--expires-in", "1s"])?;
    let host = |h: &str| format!("urn:campanile:host:{h}");
    let good = |n: usize| -> Result<EnrollRequest> {
        Ok(EnrollRequest {
            token: token.credential(),
            csr_der: csr(&[&host(&format!("good-{n}"))], |_| {})?,
            hostname: String::new(),
        })
    };
    // Taken by the first good enrollment.
    let out = raw_enroll(&centre.pki, centre.grpc(), local, good(0)?).await?;
    out.map_err(|s| anyhow::anyhow!("{s:?}"))?;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let wrong = EnrollmentToken::new([1; 4], [2; 16], token.ca_sha256);
    let cases: Vec<(&str, String, Vec<u8>, tonic::Code)> = vec![
        (
            "unknown_token",
            wrong.credential(),
            csr(&[], |_| {})?,
            tonic::Code::PermissionDenied,
        ),
        (
            "unknown_token",
            "not a credential".into(),
            csr(&[], |_| {})?,
            tonic::Code::PermissionDenied,
        ),
        (
            "token_expired",
            expired.credential(),
            csr(&[&host("x1")], |_| {})?,
            tonic::Code::PermissionDenied,
        ),
        (
            "bad_host_id",
            token.credential(),
            csr(&["urn:campanile:host:PC 01"], |_| {})?,
            tonic::Code::InvalidArgument,
        ),
        (
            "extra_san",
            token.credential(),
            csr(&[&host("x2"), "https://evil.example"], |_| {})?,
            tonic::Code::InvalidArgument,
        ),
        (
            "wrong_site",
            token.credential(),
            csr(
                &[&host("x3"), &format!("urn:campanile:site:{OTHER_SITE}")],
                |_| {},
            )?,
            tonic::Code::InvalidArgument,
        ),
        (
            "ca_requested",
            token.credential(),
            fixture("ca_true.csr.der")?,
            tonic::Code::InvalidArgument,
        ),
        (
            "weak_key",
            token.credential(),
            fixture("rsa1024.csr.der")?,
            tonic::Code::InvalidArgument,
        ),
        (
            "unsupported_key",
            token.credential(),
            fixture("p521.csr.der")?,
            tonic::Code::InvalidArgument,
        ),
        (
            "bad_csr",
            token.credential(),
            b"\x30\x03\x02\x01\x00".to_vec(),
            tonic::Code::InvalidArgument,
        ),
        (
            "host_taken",
            token.credential(),
            csr(&[&host("good-0")], |_| {})?,
            tonic::Code::AlreadyExists,
        ),
    ];
    for (n, (label, credential, csr_der, code)) in cases.into_iter().enumerate() {
        let before = centre.enrollments(label).await?;
        let refused = raw_enroll(
            &centre.pki,
            centre.grpc(),
            local,
            EnrollRequest {
                token: credential,
                csr_der,
                hostname: "pc".into(),
            },
        )
        .await?;
        match refused {
            Ok(r) => bail!("{label}: enrolled: {r:?}"),
            Err(s) => assert_eq!(s.code(), code, "{label}: {s:?}"),
        }
        assert_eq!(centre.enrollments(label).await?, before + 1.0, "{label}");
        // And a good agent still enrolls.
        let ok = raw_enroll(&centre.pki, centre.grpc(), local, good(n + 1)?).await?;
        let cert = ok
            .map_err(|s| anyhow::anyhow!("after {label}: {s:?}"))?
            .certificate
            .context("a certificate")?;
        assert_eq!(cert.host_id, format!("good-{}", n + 1));
        assert_eq!(cert.site, SITE);
    }
    let text = centre.c.metrics().await?;
    assert_eq!(
        sample(&text, "campanile_enrollments_total{result=\"ok\"}"),
        12.0
    );
    // Uses: one per good enrollment, none for the refusals.
    let list = String::from_utf8(centre.enroll_cmd(&["list"])?.stdout)?;
    assert!(
        list.lines()
            .any(|l| l.starts_with(&token.id) && l.contains("88/100")),
        "{list}"
    );
    Ok(())
}

#[tokio::test]
async fn refused_tokens_from_one_source_are_limited_while_others_still_enroll() -> Result<()> {
    let centre = Centre::start("max_failed_attempts_per_source = 3").await?;
    let token = centre.new_token(SITE, &["--uses", "5"])?;
    let wrong = EnrollmentToken::new([1; 4], [2; 16], token.ca_sha256);
    let (guesser, other): (std::net::IpAddr, std::net::IpAddr) =
        ("127.0.0.2".parse()?, "127.0.0.3".parse()?);
    let req = |t: &EnrollmentToken, host: &str| -> Result<EnrollRequest> {
        Ok(EnrollRequest {
            token: t.credential(),
            csr_der: csr(&[&format!("urn:campanile:host:{host}")], |_| {})?,
            hostname: String::new(),
        })
    };
    for _ in 0..3 {
        let r = raw_enroll(&centre.pki, centre.grpc(), guesser, req(&wrong, "g")?).await?;
        assert_eq!(
            r.err().map(|s| s.code()),
            Some(tonic::Code::PermissionDenied)
        );
    }
    // Even the right token is refused unread from that source now.
    let r = raw_enroll(&centre.pki, centre.grpc(), guesser, req(&token, "g")?).await?;
    assert_eq!(
        r.err().map(|s| s.code()),
        Some(tonic::Code::ResourceExhausted)
    );
    assert_eq!(centre.enrollments("rate_limited").await?, 1.0);
    let r = raw_enroll(&centre.pki, centre.grpc(), other, req(&token, "elsewhere")?).await?;
    r.map_err(|s| anyhow::anyhow!("another source: {s:?}"))?;
    Ok(())
}

#[tokio::test]
async fn a_connection_without_a_certificate_can_do_nothing_but_enroll() -> Result<()> {
    let centre = Centre::start("").await?;
    let ca = std::fs::read(centre.pki.path().join("ca.pem"))?;
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .domain_name("localhost");
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", centre.grpc()))?
        .tls_config(tls)?
        .connect()
        .await?;
    let status = campanile_proto::v1::ingest_client::IngestClient::new(channel)
        .deliver(campanile_proto::v1::DeliverRequest {
            reports: vec![campanile_tests::steady_report("intruder").await],
            agent_stats: None,
            sent_unix_ms: 0,
        })
        .await
        .expect_err("a report without a certificate was accepted");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    let text = centre.c.metrics().await?;
    assert_eq!(
        sample(
            &text,
            "campanile_ingest_requests_rejected_total{reason=\"no_client_certificate\"}"
        ),
        1.0
    );
    assert!(centre.c.running.store.inventory("intruder")?.is_none());
    Ok(())
}

// The agent runs as a process while the collector serves in this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_certificate_is_renewed_with_a_new_key_and_reports_go_on() -> Result<()> {
    let centre = Centre::start("certificate_lifetime_secs = 20").await?;
    let token = centre.new_token(SITE, &[])?;
    let config = centre.agent_toml(
        "pc",
        &format!("[enrollment]\ntoken = \"{token}\"\n[identity]\nhost_id = \"ufficio-01\""),
    )?;
    let dir = config.parent().context("agent dir")?.to_owned();
    let _agent = spawn_agent(&config)?;
    let first = eventually(Duration::from_secs(30), "the first certificate", || async {
        CertFacts::read(&dir.join("agent.pem")).ok()
    })
    .await?;
    let first_key = std::fs::read(dir.join("agent.key"))?;
    centre.reported("ufficio-01", SITE, ISTAT).await?;
    // Due at half of its 22 s (20 s and 2 s backdated): within about 11 s.
    let renewed = eventually(Duration::from_secs(30), "a renewed certificate", || async {
        CertFacts::read(&dir.join("agent.pem"))
            .ok()
            .filter(|f| f.not_after_ms > first.not_after_ms)
    })
    .await?;
    assert_eq!(renewed.identity, first.identity);
    assert_ne!(
        std::fs::read(dir.join("agent.key"))?,
        first_key,
        "a renewal brings a new key"
    );
    ensure!(
        centre
            .c
            .metrics()
            .await?
            .contains("campanile_renewals_total{result=\"ok\"}")
    );
    let seq_at_renewal = centre
        .c
        .running
        .store
        .latest_delivery("ufficio-01")?
        .map_or(0, |(_, seq)| seq);
    // Reports go on over the new certificate, past the old one's expiry,
    // with no report lost or sent twice: every seq up to the latest was
    // accepted once.
    eventually(
        Duration::from_secs(40),
        "reports past the first expiry",
        || async {
            let (_, seq) = centre
                .c
                .running
                .store
                .latest_delivery("ufficio-01")
                .ok()??;
            let expired = campanile_agent::now_ms() > first.not_after_ms + 2_000;
            (expired && seq > seq_at_renewal + 5).then_some(())
        },
    )
    .await?;
    eventually(
        Duration::from_secs(10),
        "every report accepted once",
        || async {
            let text = centre.c.metrics().await.ok()?;
            let (_, seq) = centre
                .c
                .running
                .store
                .latest_delivery("ufficio-01")
                .ok()??;
            let accepted = sample(&text, "campanile_ingest_reports_accepted_total");
            let duplicates = sample(&text, "campanile_ingest_reports_duplicate_total");
            (accepted == seq as f64 && duplicates == 0.0).then_some(())
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn the_api_makes_lists_and_ends_tokens_for_the_enroll_role_only() -> Result<()> {
    let centre = Centre::start("").await?;
    let url = centre.c.url("/api/v1/enrollment/tokens");
    let client = reqwest::Client::new();
    let body = serde_json::json!({ "site": SITE, "uses": 2, "name": "via the API" });
    // A read token may not.
    let r = client
        .post(&url)
        .bearer_auth(API_TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 403);
    let r = client.get(&url).bearer_auth(API_TOKEN).send().await?;
    assert_eq!(r.status().as_u16(), 403);
    // A site the register does not have is refused.
    let r = client
        .post(&url)
        .bearer_auth(ENROLL_API_TOKEN)
        .header("content-type", "application/json")
        .body(serde_json::json!({ "site": "nowhere" }).to_string())
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 422, "{}", r.text().await?);
    let r = client
        .post(&url)
        .bearer_auth(ENROLL_API_TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 201);
    let made: serde_json::Value = serde_json::from_str(&r.text().await?)?;
    let token = EnrollmentToken::parse(made["token"].as_str().context("token")?)?;
    assert!(
        made["install"][0]["command"]
            .as_str()
            .is_some_and(|c| c.contains(&token.to_string())),
        "{made}"
    );
    // It enrolls.
    let ok = raw_enroll(
        &centre.pki,
        centre.grpc(),
        "127.0.0.1".parse()?,
        EnrollRequest {
            token: token.credential(),
            csr_der: csr(&["urn:campanile:host:api-made"], |_| {})?,
            hostname: String::new(),
        },
    )
    .await?;
    ok.map_err(|s| anyhow::anyhow!("{s:?}"))?;
    let list: serde_json::Value = serde_json::from_str(
        &client
            .get(&url)
            .bearer_auth(ENROLL_API_TOKEN)
            .send()
            .await?
            .text()
            .await?,
    )?;
    let row = list
        .as_array()
        .and_then(|l| l.iter().find(|t| t["id"] == token.id.as_str()))
        .with_context(|| format!("{list}"))?;
    assert_eq!(row["uses_left"], 1);
    assert_eq!(row["state"], "in force");
    assert!(
        !list.to_string().contains(&token.secret),
        "the list shows the secret"
    );
    // Ended, it enrolls nobody.
    let r = client
        .delete(format!("{url}/{}", token.id))
        .bearer_auth(ENROLL_API_TOKEN)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 204);
    let refused = raw_enroll(
        &centre.pki,
        centre.grpc(),
        "127.0.0.1".parse()?,
        EnrollRequest {
            token: token.credential(),
            csr_der: csr(&["urn:campanile:host:api-made-2"], |_| {})?,
            hostname: String::new(),
        },
    )
    .await?;
    assert_eq!(
        refused.err().map(|s| s.code()),
        Some(tonic::Code::PermissionDenied)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_refuses_a_signing_key_of_no_trusted_ca() -> Result<()> {
    let centre = Centre::start("").await?;
    let ok = Command::new(collector_binary()?)
        .arg("check-config")
        .arg(&centre.config)
        .output()?;
    ensure!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("enrollment on, signing CA sha256:"));
    // The server's key is no CA's.
    let text = std::fs::read_to_string(&centre.config)?.replace("ca.key", "server.key");
    let bad = centre.dir.path().join("bad.toml");
    std::fs::write(&bad, text)?;
    let out = Command::new(collector_binary()?)
        .arg("check-config")
        .arg(&bad)
        .output()?;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("enrollment.ca_key_path") && err.contains("no CA certificate for the key"),
        "{err}"
    );
    Ok(())
}

fn spawn_agent_logging(config: &Path, log: &Path) -> Result<ChildGuard> {
    Ok(ChildGuard(
        Command::new(agent_binary()?)
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()?,
    ))
}

/// A connection of the agent whose files are in `dir`, open now.
async fn connect_as(dir: &Path, grpc: SocketAddr) -> Result<tonic::transport::Channel> {
    connect_with(
        &dir.join("ca.pem"),
        &dir.join("agent.pem"),
        &dir.join("agent.key"),
        grpc,
    )
    .await
}

async fn connect_with(
    ca: &Path,
    cert: &Path,
    key: &Path,
    grpc: SocketAddr,
) -> Result<tonic::transport::Channel> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca)?))
        .domain_name("localhost")
        .identity(Identity::from_pem(
            std::fs::read(cert)?,
            std::fs::read(key)?,
        ));
    Ok(Endpoint::from_shared(format!("https://{grpc}"))?
        .tls_config(tls)?
        .timeout(Duration::from_secs(10))
        .connect()
        .await?)
}

// The agents and the command line run as processes the test waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_host_is_cut_off_at_once_while_another_goes_on() -> Result<()> {
    let centre = Centre::start("").await?;
    let token = centre.new_token(SITE, &["--uses", "2"])?;
    let agent = |name: &str| {
        centre.agent_toml(
            name,
            &format!("[enrollment]\ntoken = \"{token}\"\n[identity]\nhost_id = \"{name}\""),
        )
    };
    let (stolen, other) = (agent("ufficio-01")?, agent("ufficio-02")?);
    let stolen_dir = stolen.parent().context("agent dir")?.to_owned();
    let log = stolen_dir.join("agent.log");
    let _stolen = spawn_agent_logging(&stolen, &log)?;
    let _other = spawn_agent(&other)?;
    centre.reported("ufficio-01", SITE, ISTAT).await?;
    centre.reported("ufficio-02", SITE, ISTAT).await?;
    // A connection of the stolen certificate, open before its revocation.
    let open = connect_as(&stolen_dir, centre.grpc()).await?;

    let out = Command::new(collector_binary()?)
        .args(["pki", "revoke", "--config"])
        .arg(&centre.config)
        .args(["--host", "ufficio-01", "--reason", "stolen laptop"])
        .output()?;
    ensure!(out.status.success(), "pki revoke: {out:?}");
    ensure!(
        String::from_utf8_lossy(&out.stdout).contains("revoked 1 certificate(s)"),
        "{out:?}"
    );

    // No renewal for it, on the connection it holds: refused by the
    // service, or the connection is closed first.
    let renewal = campanile_proto::v1::certificates_client::CertificatesClient::new(open)
        .renew(campanile_proto::v1::RenewRequest {
            csr_der: csr(&[], |_| {})?,
        })
        .await;
    ensure!(renewal.is_err(), "a revoked certificate renewed");
    if let Err(status) = &renewal
        && status.code() == tonic::Code::PermissionDenied
    {
        ensure!(status.message().contains("revoked"), "{status:?}");
    }

    // Its open connection is closed, and its reconnections are refused.
    eventually(Duration::from_secs(15), "the agent cut off", || async {
        let text = centre.c.metrics().await.ok()?;
        let closed = sample(&text, "campanile_revoked_connections_closed_total");
        let refused = sample(
            &text,
            "campanile_tls_handshake_failures_total{reason=\"revoked\"}",
        );
        let in_force = sample(&text, "campanile_revoked_certificates");
        (closed >= 1.0 && refused >= 1.0 && in_force == 1.0).then_some(())
    })
    .await?;
    // The agent says what happened and what to do.
    eventually(
        Duration::from_secs(15),
        "the agent's explanation",
        || async {
            let text = std::fs::read_to_string(&log).ok()?;
            text.contains("revoked this agent's certificate")
                .then_some(())
        },
    )
    .await?;
    let store = &centre.c.running.store;
    let stopped = store.latest_delivery("ufficio-01")?;
    let other_then = store.latest_delivery("ufficio-02")?.map_or(0, |(_, s)| s);
    eventually(
        Duration::from_secs(15),
        "the other agent's reports",
        || async {
            let (_, seq) = store.latest_delivery("ufficio-02").ok()??;
            (seq >= other_then + 3).then_some(())
        },
    )
    .await?;
    assert_eq!(
        store.latest_delivery("ufficio-01")?,
        stopped,
        "a revoked agent still delivers"
    );
    let text = centre.c.metrics().await?;
    assert_eq!(
        sample(&text, "campanile_renewals_total{result=\"ok\"}"),
        0.0
    );

    // Revoked first, the host id is free for a new enrollment: the
    // replacement laptop takes it over openly.
    let again = centre.new_token(SITE, &[])?;
    let replacement = centre.agent_toml("replacement", "")?;
    let out = Command::new(agent_binary()?)
        .args(["enroll", "--config"])
        .arg(&replacement)
        .args(["--token", &again.to_string(), "--host-id", "ufficio-01"])
        .output()?;
    ensure!(out.status.success(), "re-enrollment: {out:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_issued_by_hand_is_revoked_by_serial_and_listed_in_a_crl() -> Result<()> {
    let centre = Centre::start("").await?;
    let (cert, key) = centre.pki.agent("pc-manuale", SITE)?;
    let pem = std::fs::read(&cert)?;
    let der = CertificateDer::from_pem_slice(&pem)?;
    let serial = campanile_collector::ingest::tls::revoking_verifier::serial_of(&der)
        .context("the certificate's serial")?;
    // As `openssl x509 -serial` prints it: upper case, after `serial=`.
    let pasted = format!("serial={}", serial.to_uppercase());
    let revoke = |serial: &str| {
        Command::new(collector_binary()?)
            .args(["pki", "revoke", "--config"])
            .arg(&centre.config)
            .args(["--serial", serial])
            .output()
            .map_err(anyhow::Error::from)
    };
    let out = revoke(&pasted)?;
    ensure!(out.status.success(), "pki revoke --serial: {out:?}");
    // Twice, or nonsense: refused, and nothing changes.
    let twice = revoke(&pasted)?;
    ensure!(!twice.status.success());
    ensure!(String::from_utf8_lossy(&twice.stderr).contains("revoked already"));
    let nonsense = revoke("not-a-serial")?;
    ensure!(!nonsense.status.success());
    ensure!(String::from_utf8_lossy(&nonsense.stderr).contains("not a certificate serial"));

    // The running collector refuses it within a second of the revocation.
    eventually(
        Duration::from_secs(10),
        "the revocation in force",
        || async {
            let text = centre.c.metrics().await.ok()?;
            (sample(&text, "campanile_revoked_certificates") == 1.0).then_some(())
        },
    )
    .await?;
    let ca = centre.pki.path().join("ca.pem");
    let delivered = match connect_with(&ca, &cert, &key, centre.grpc()).await {
        Err(_) => false,
        Ok(channel) => campanile_proto::v1::ingest_client::IngestClient::new(channel)
            .deliver(campanile_proto::v1::DeliverRequest {
                reports: vec![campanile_tests::steady_report("pc-manuale").await],
                agent_stats: None,
                sent_unix_ms: campanile_agent::now_ms(),
            })
            .await
            .is_ok(),
    };
    ensure!(!delivered, "a revoked certificate delivered");
    ensure!(
        centre
            .c
            .running
            .store
            .latest_delivery("pc-manuale")?
            .is_none()
    );

    let crl = centre.dir.path().join("crl.pem");
    let out = Command::new(collector_binary()?)
        .args(["pki", "crl", "--config"])
        .arg(&centre.config)
        .arg("--out")
        .arg(&crl)
        .output()?;
    ensure!(out.status.success(), "pki crl: {out:?}");
    if which("openssl").is_none() {
        campanile_tests::skipped("no openssl to read the CRL");
        return Ok(());
    }
    let read = Command::new("openssl")
        .args(["crl", "-noout", "-text", "-in"])
        .arg(&crl)
        .arg("-CAfile")
        .arg(centre.pki.path().join("ca.pem"))
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&read.stdout),
        String::from_utf8_lossy(&read.stderr)
    );
    ensure!(read.status.success(), "openssl crl: {text}");
    ensure!(text.contains("verify OK"), "{text}");
    let listed = format!("Serial Number: {}", serial.to_uppercase());
    ensure!(text.contains(&listed), "{listed} not in: {text}");
    Ok(())
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

/// The serial of the certificate the collector presents now, read over
/// a new connection.
async fn server_serial(centre: &Centre) -> Result<String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(
        centre.pki.path().join("ca.pem"),
    )?)?;
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(centre.grpc()).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .context("no server certificate")?
        .clone();
    campanile_collector::ingest::tls::revoking_verifier::serial_of(&leaf)
        .context("the server certificate's serial")
}

async fn deliver_over(channel: &tonic::transport::Channel, host: &str, seq: u64) -> Result<()> {
    let mut report = campanile_tests::steady_report(host).await;
    report.seq = seq;
    campanile_proto::v1::ingest_client::IngestClient::new(channel.clone())
        .deliver(campanile_proto::v1::DeliverRequest {
            reports: vec![report],
            agent_stats: None,
            sent_unix_ms: campanile_agent::now_ms(),
        })
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_server_certificate_is_served_without_a_restart() -> Result<()> {
    let centre = Centre::start("").await?;
    let (cert, key) = centre.pki.agent("pc-01", SITE)?;
    let ca = centre.pki.path().join("ca.pem");
    let open = connect_with(&ca, &cert, &key, centre.grpc()).await?;
    deliver_over(&open, "pc-01", 1).await?;
    let before = server_serial(&centre).await?;

    let out = Command::new(collector_binary()?)
        .args(["pki", "renew-server", "--config"])
        .arg(&centre.config)
        .args(["--days", "30"])
        .output()?;
    ensure!(out.status.success(), "pki renew-server: {out:?}");
    ensure!(
        String::from_utf8_lossy(&out.stdout).contains("localhost"),
        "{out:?}"
    );
    // Picked up from the file within its 10 s look.
    let after = eventually(
        Duration::from_secs(30),
        "the new certificate served",
        || async { server_serial(&centre).await.ok().filter(|s| *s != before) },
    )
    .await?;
    let text = centre.c.metrics().await?;
    // At least: the SIGHUP test signals this whole process.
    assert!(sample(&text, "campanile_tls_reloads_total{result=\"ok\"}") >= 1.0);
    let expiry = sample(
        &text,
        "campanile_server_certificate_expiry_timestamp_seconds",
    );
    let in_30_days = (campanile_agent::now_ms() / 1000 + 30 * 86_400) as f64;
    ensure!((expiry - in_30_days).abs() < 600.0, "expiry {expiry}");
    // The connection open across the reload goes on.
    deliver_over(&open, "pc-01", 2).await?;

    // A broken file changes nothing but a counted failure.
    std::fs::write(centre.pki.path().join("server.pem"), "not a certificate")?;
    eventually(Duration::from_secs(30), "the failed reload", || async {
        let text = centre.c.metrics().await.ok()?;
        (sample(&text, "campanile_tls_reloads_total{result=\"failed\"}") >= 1.0).then_some(())
    })
    .await?;
    assert_eq!(server_serial(&centre).await?, after);
    let fresh = connect_with(&ca, &cert, &key, centre.grpc()).await?;
    deliver_over(&fresh, "pc-01", 3).await?;
    Ok(())
}

fn pki_cmd(centre: &Centre, args: &[&str]) -> Result<std::process::Output> {
    Ok(Command::new(collector_binary()?)
        .arg("pki")
        .args(args)
        .arg("--config")
        .arg(&centre.config)
        .output()?)
}

/// The SHA-256 (hex) of every CA in a PEM bundle.
fn bundle_cas(path: &Path) -> Result<Vec<String>> {
    CertificateDer::pem_file_iter(path)?
        .map(|c| {
            Ok(campanile_proto::hex(
                &campanile_proto::enrollment::certificate_sha256(&c?),
            ))
        })
        .collect()
}

/// Stops an agent as its service manager would, and waits for it.
fn stop_agent(mut agent: ChildGuard) -> Result<()> {
    campanile_tests::terminate(&agent.0)?;
    agent.0.wait()?;
    Ok(())
}

// Five agents run as processes while the collector serves in this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_agents_move_to_a_new_ca_and_the_old_one_is_retired_with_no_report_lost() -> Result<()>
{
    let centre = Centre::start("").await?;
    let token = centre.new_token(SITE, &["--uses", "5"])?;
    let names: Vec<String> = (1..=5).map(|i| format!("ufficio-{i:02}")).collect();
    let configs = names
        .iter()
        .map(|n| {
            centre.agent_toml(
                n,
                &format!("[enrollment]\ntoken = \"{token}\"\n[identity]\nhost_id = \"{n}\""),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let mut agents = configs
        .iter()
        .map(|c| spawn_agent(c))
        .collect::<Result<Vec<_>>>()?;
    for n in &names {
        centre.reported(n, SITE, ISTAT).await?;
    }
    let bundle = centre.pki.path().join("ca.pem");
    let old = bundle_cas(&bundle)?;
    ensure!(old.len() == 1);
    let store = &centre.c.running.store;
    let now = campanile_agent::now_ms;
    assert_eq!(store.hosts_by_ca(now())?, [(old[0].clone(), 5)]);

    let early = pki_cmd(&centre, &["retire-ca"])?;
    ensure!(!early.status.success(), "retired the only CA: {early:?}");
    let out = pki_cmd(&centre, &["rotate-ca"])?;
    ensure!(out.status.success(), "rotate-ca: {out:?}");
    let both = bundle_cas(&bundle)?;
    ensure!(both.len() == 2 && both[0] == old[0], "{both:?}");
    let new = both[1].clone();
    // Refused while the agents still hold the old CA's certificates.
    let refused = pki_cmd(&centre, &["retire-ca"])?;
    ensure!(!refused.status.success(), "{refused:?}");
    let why = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        why.contains("still hold a certificate of the old CA"),
        "{why}"
    );
    ensure!(
        bundle_cas(&bundle)? == both,
        "a refused retire changed the bundle"
    );

    // The collector reads the new files within 10 s, then asks each agent
    // at its next report to renew; each gets a certificate of the new CA
    // and the bundle with both.
    eventually(
        Duration::from_secs(60),
        "every agent on the new CA",
        || async { (store.hosts_by_ca(now()).ok()? == [(new.clone(), 5)]).then_some(()) },
    )
    .await?;
    for c in &configs {
        let dir = c.parent().context("agent dir")?;
        ensure!(
            bundle_cas(&dir.join("ca.pem"))? == both,
            "{}",
            dir.display()
        );
    }

    let served_before = server_serial(&centre).await?;
    let out = pki_cmd(&centre, &["retire-ca"])?;
    ensure!(out.status.success(), "retire-ca: {out:?}");
    ensure!(bundle_cas(&bundle)? == std::slice::from_ref(&new));
    ensure!(
        campanile_collector::rollover::server_ca_sha256(
            &bundle,
            &centre.pki.path().join("server.pem")
        )
        .map(|s| campanile_proto::hex(&s))?
            == new,
        "the server certificate is not the new CA's"
    );
    eventually(
        Duration::from_secs(30),
        "the new server certificate served",
        || async {
            server_serial(&centre)
                .await
                .ok()
                .filter(|s| *s != served_before)
        },
    )
    .await?;

    // Started again, the agents connect afresh: they trust the server's
    // new certificate, and the collector their new ones.
    let mut restart_at = Vec::new();
    for agent in agents.drain(..) {
        stop_agent(agent)?;
    }
    for (n, c) in names.iter().zip(&configs) {
        restart_at.push(store.latest_delivery(n)?.map_or(0, |(_, s)| s));
        agents.push(spawn_agent(c)?);
    }
    eventually(
        Duration::from_secs(30),
        "reports after the restart",
        || async {
            names
                .iter()
                .zip(&restart_at)
                .all(|(n, at)| {
                    store
                        .latest_delivery(n)
                        .ok()
                        .flatten()
                        .is_some_and(|(_, s)| s >= at + 3)
                })
                .then_some(())
        },
    )
    .await?;
    for agent in agents.drain(..) {
        stop_agent(agent)?;
    }
    // No report lost or accepted twice: each host's reports 1..=seq were
    // each accepted once.
    let text = centre.c.metrics().await?;
    let mut seqs = 0;
    for n in &names {
        seqs += store.latest_delivery(n)?.map_or(0, |(_, s)| s);
    }
    assert_eq!(
        sample(&text, "campanile_ingest_reports_accepted_total"),
        seqs as f64
    );
    assert_eq!(
        sample(&text, "campanile_renewals_total{result=\"ok\"}"),
        5.0
    );
    // Tokens made now pin the new CA.
    ensure!(campanile_proto::hex(&centre.new_token(SITE, &[])?.ca_sha256) == new);
    eventually(Duration::from_secs(40), "the gauge by CA", || async {
        let text = centre.c.metrics().await.ok()?;
        let on_new = sample(
            &text,
            &format!("campanile_agent_certificates{{ca=\"{new}\"}}"),
        );
        (on_new == 5.0 && !text.contains(&old[0])).then_some(())
    })
    .await?;
    Ok(())
}
