//! Test support for Campanile's end-to-end tests: a throwaway PKI, a
//! collector on 127.0.0.1:0, agents pointed at it, and real peers
//! (promtool, Prometheus) started and stopped by the tests.

pub mod netns;
pub mod planted;
pub mod procs;
pub mod receiver;
pub mod scrape;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use campanile_agent::AgentConfig;
use campanile_collector::pki::{self, Ca};
use campanile_collector::{CollectorConfig, Running};
use campanile_proto::identity::HostIdentity;
use tempfile::TempDir;

pub use procs::{
    is_root, kib_field, peak_rss_bytes, proc_status_kib, raise_open_files_limit, require_tool,
};
pub use scrape::{http_get, sample};

/// Installs the ring provider once per process (reqwest and tonic need a
/// process default).
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A CA, a server certificate for localhost/127.0.0.1/::1, and a directory
/// for agent certificates.
pub struct TestPki {
    pub dir: TempDir,
    pub ca: Ca,
}

impl TestPki {
    pub fn new() -> Result<Self> {
        init_crypto();
        let dir = tempfile::tempdir()?;
        pki::init(
            dir.path(),
            &["localhost".into()],
            &["127.0.0.1".parse()?, "::1".parse()?],
            400,
            400,
        )?;
        let ca = Ca::load(dir.path())?;
        Ok(Self { dir, ca })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Issues a valid agent certificate (for a year, well clear of the
    /// expiry alert); returns (cert, key) paths.
    pub fn agent(&self, host_id: &str, site: &str) -> Result<(PathBuf, PathBuf)> {
        self.agent_for_days(host_id, site, 365)
    }

    /// The same, valid for `days`.
    pub fn agent_for_days(
        &self,
        host_id: &str,
        site: &str,
        days: i64,
    ) -> Result<(PathBuf, PathBuf)> {
        let issued = self
            .ca
            .issue_agent(&HostIdentity::new(host_id, site)?, days)?;
        Ok(pki::write_issued(
            &self.path().join("agents"),
            host_id,
            &issued,
        )?)
    }

    /// The same, valid between two instants (certificates that expire
    /// while a test runs).
    pub fn agent_between(
        &self,
        host_id: &str,
        site: &str,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> Result<(PathBuf, PathBuf)> {
        let issued = self.ca.issue_agent_between(
            &HostIdentity::new(host_id, site)?,
            not_before,
            not_after,
        )?;
        Ok(pki::write_issued(
            &self.path().join("agents"),
            host_id,
            &issued,
        )?)
    }

    /// Collector config on ephemeral loopback ports with the store at `db`.
    pub fn collector_config(&self, db: &Path) -> Result<CollectorConfig> {
        self.collector_config_with(db, "")
    }

    /// The same, with more TOML appended (`[territory]`, `[api]`...).
    pub fn collector_config_with(&self, db: &Path, extra: &str) -> Result<CollectorConfig> {
        let text = self.collector_toml(db, 0, 0, extra);
        let mut cfg = CollectorConfig::parse(&text, Path::new("/test/collector.toml"))?;
        // Registers in tests may carry documentation WAN addresses: the
        // centre probes them only where a test asks for it.
        if !extra.contains("[probes.wan]") {
            cfg.probes.wan.enabled = false;
        }
        Ok(cfg)
    }

    /// Collector config text on loopback ports (0 = ephemeral), for the
    /// collector binary or [`TestPki::collector_config_with`].
    pub fn collector_toml(&self, db: &Path, grpc_port: u16, http_port: u16, extra: &str) -> String {
        let wan_off = if extra.contains("[probes.wan]") {
            ""
        } else {
            "[probes.wan]\nenabled = false"
        };
        format!(
            r#"
            [grpc]
            listen_addr = "127.0.0.1:{grpc_port}"
            max_message_bytes = 1048576
            [http]
            listen_addr = "127.0.0.1:{http_port}"
            [tls]
            ca_cert_path = "{d}/ca.pem"
            cert_path = "{d}/server.pem"
            key_path = "{d}/server.key"
            [store]
            path = "{db}"
            {extra}
            {wan_off}
            "#,
            d = self.path().display(),
            db = db.display()
        )
    }

    /// Agent config with a fresh certificate for `host_id` at `site`.
    pub fn agent_config(
        &self,
        host_id: &str,
        site: &str,
        grpc: SocketAddr,
        interval_secs: u32,
    ) -> Result<AgentConfig> {
        let text = self.probing_agent_toml(host_id, site, grpc, interval_secs, PROBES_OFF)?;
        Ok(AgentConfig::parse(&text, Path::new("/test/agent.toml"))?)
    }

    pub fn agent_config_with(
        &self,
        host_id: &str,
        grpc: SocketAddr,
        interval_secs: u32,
        ca: &Path,
        cert: &Path,
        key: &Path,
    ) -> Result<AgentConfig> {
        // Tests send packets only where they say so.
        let spool = spool_path(cert.parent().unwrap_or(Path::new(".")), host_id);
        let text = agent_toml(
            host_id,
            grpc,
            interval_secs,
            ca,
            cert,
            key,
            &spool,
            PROBES_OFF,
        );
        Ok(AgentConfig::parse(&text, Path::new("/test/agent.toml"))?)
    }

    /// Agent config text (probes off, 1 s... `interval_secs`) for an agent
    /// whose collector is not up yet: it points at a free loopback port,
    /// returned, where a collector can be started later.
    pub fn offline_agent_toml(
        &self,
        host_id: &str,
        site: &str,
        interval_secs: u32,
    ) -> Result<(String, u16)> {
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let text = self.probing_agent_toml(host_id, site, addr, interval_secs, PROBES_OFF)?;
        Ok((text, port))
    }

    /// Agent config text with a fresh certificate and the given `[probes]`
    /// section (auto-detected gateway and resolvers stay off unless it turns
    /// them on: tests never probe this machine's real network).
    pub fn probing_agent_toml(
        &self,
        host_id: &str,
        site: &str,
        grpc: SocketAddr,
        interval_secs: u32,
        probes: &str,
    ) -> Result<String> {
        let (cert, key) = self.agent(host_id, site)?;
        Ok(agent_toml(
            host_id,
            grpc,
            interval_secs,
            &self.path().join("ca.pem"),
            &cert,
            &key,
            &spool_path(self.path(), host_id),
            probes,
        ))
    }
}

/// Tests send packets only where they say so.
const PROBES_OFF: &str = "[probes]\nenabled = false";

/// One spool per host id in the test's directory: an agent restarted with
/// the same host id finds what it left unsent.
pub fn spool_path(dir: &Path, host_id: &str) -> PathBuf {
    dir.join(format!("spool-{host_id}.redb"))
}

#[allow(clippy::too_many_arguments)]
fn agent_toml(
    host_id: &str,
    grpc: SocketAddr,
    interval_secs: u32,
    ca: &Path,
    cert: &Path,
    key: &Path,
    spool: &Path,
    probes: &str,
) -> String {
    format!(
        r#"
[identity]
host_id = "{host_id}"
[collector]
endpoint = "https://127.0.0.1:{port}"
server_name = "localhost"
ca_cert_path = "{ca}"
cert_path = "{cert}"
key_path = "{key}"
connect_timeout_secs = 5
request_timeout_secs = 10
[collect]
interval_secs = {interval_secs}
systemd_units = false
[spool]
path = "{spool}"
{probes}
"#,
        port = grpc.port(),
        spool = spool.display(),
        ca = ca.display(),
        cert = cert.display(),
        key = key.display(),
    )
}

/// The agent binary of this build, built first if needed (the tests crate
/// cannot name another package's binaries).
pub fn agent_binary() -> Result<PathBuf> {
    workspace_binary("campanile-agent")
}

/// `campanile-collector enroll new --config CONFIG --site SITE MORE...`:
/// the token it printed, and all it printed.
pub fn enroll_new(config: &Path, site: &str, more: &[&str]) -> Result<(String, String)> {
    let out = Command::new(collector_binary()?)
        .args(["enroll", "new", "--config"])
        .arg(config)
        .args(["--site", site])
        .args(more)
        .output()?;
    anyhow::ensure!(out.status.success(), "enroll new: {out:?}");
    let text = String::from_utf8(out.stdout)?;
    let token = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("cmp1."))
        .with_context(|| format!("no token in: {text}"))?
        .to_owned();
    Ok((token, text))
}

/// The collector binary of this build (kill -9 tests need a process).
pub fn collector_binary() -> Result<PathBuf> {
    workspace_binary("campanile-collector")
}

fn workspace_binary(package: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable outside target/<profile>/deps")?;
    let target_dir = profile_dir.parent().context("no target dir")?;
    let mut cmd = std::process::Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "-p", package, "--bin", package])
        .arg("--target-dir")
        .arg(target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .with_context(|| format!("running cargo build for {package}"))?;
    anyhow::ensure!(status.success(), "cargo build of {package} failed");
    let bin = profile_dir.join(package);
    anyhow::ensure!(bin.is_file(), "{} missing after the build", bin.display());
    Ok(bin)
}

/// Runs `cmd` with `input` on its stdin and collects its output.
pub fn output_with_stdin(cmd: &mut Command, input: &str) -> Result<std::process::Output> {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    Ok(child.wait_with_output()?)
}

/// Marks the running test as skipped, with the reason, and returns so the
/// test can end. libtest has no skip at run time, so the test passes; the
/// name goes to the file named by `CAMPANILE_SKIPPED_LOG` (set by `make
/// test`), which `make test` and CI print and count as skipped, not passed.
pub fn skipped(reason: &str) {
    let name = std::thread::current()
        .name()
        .unwrap_or("(unnamed test)")
        .to_owned();
    eprintln!("skipped: {name}: {reason}");
    if let Some(path) = std::env::var_os("CAMPANILE_SKIPPED_LOG") {
        use std::io::Write;
        let line = format!("{name}: {reason}\n");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!("cannot record the skip in {}: {e}", path.to_string_lossy());
        }
    }
}

/// A collector started on ephemeral ports, with the store in its own tempdir.
pub struct TestCollector {
    pub running: Running,
    pub db: PathBuf,
    _dir: Option<TempDir>,
}

impl TestCollector {
    pub async fn start(pki: &TestPki) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("campanile.db");
        let mut c = Self::start_at(pki, &db).await?;
        c._dir = Some(dir);
        Ok(c)
    }

    /// Starts on an existing store file (restart tests).
    pub async fn start_at(pki: &TestPki, db: &Path) -> Result<Self> {
        let running = campanile_collector::start(pki.collector_config(db)?).await?;
        Ok(Self {
            running,
            db: db.to_owned(),
            _dir: None,
        })
    }

    /// Starts on an existing store with the gRPC port fixed, so agents
    /// configured for an earlier run find it again.
    pub async fn start_on(pki: &TestPki, db: &Path, grpc_port: u16) -> Result<Self> {
        let mut cfg = pki.collector_config(db)?;
        cfg.grpc.listen.set_port(grpc_port);
        let running = campanile_collector::start(cfg).await?;
        Ok(Self {
            running,
            db: db.to_owned(),
            _dir: None,
        })
    }

    /// Starts with settings the TOML of [`TestPki::collector_config`] does
    /// not carry changed by `tune`.
    pub async fn start_tuned(
        pki: &TestPki,
        tune: impl FnOnce(&mut CollectorConfig),
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("campanile.db");
        let mut cfg = pki.collector_config(&db)?;
        tune(&mut cfg);
        let running = campanile_collector::start(cfg).await?;
        Ok(Self {
            running,
            db,
            _dir: Some(dir),
        })
    }

    /// Starts with extra config sections (see [`TestPki::collector_config_with`]).
    pub async fn start_with(pki: &TestPki, extra: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("campanile.db");
        let running = campanile_collector::start(pki.collector_config_with(&db, extra)?).await?;
        Ok(Self {
            running,
            db,
            _dir: Some(dir),
        })
    }

    /// Writes this collector's config (with `extra`, as it was started)
    /// to `path`, for the command line to work on its store.
    pub fn write_config(&self, pki: &TestPki, extra: &str, path: &Path) -> Result<()> {
        let text = pki.collector_toml(
            &self.db,
            self.running.grpc_addr.port(),
            self.running.http_addr.port(),
            extra,
        );
        std::fs::write(path, text)?;
        Ok(())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.http_addr)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.running.http_addr)
    }

    pub async fn metrics(&self) -> Result<String> {
        http_get(&self.metrics_url()).await
    }

    /// Stops the collector and keeps the store's tempdir alive for the caller.
    pub async fn stop(self) -> Result<Option<TempDir>> {
        self.running.shutdown().await?;
        Ok(self._dir)
    }
}

/// GET with an optional bearer token; returns the status and the body.
pub async fn http_get_with(url: &str, token: Option<&str>) -> Result<(u16, String)> {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.with_context(|| format!("GET {url}"))?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?))
}

/// Delivers one hand-made report for `host_id` over real mTLS, with a fresh
/// certificate naming `site`.
pub async fn deliver(
    pki: &TestPki,
    grpc: SocketAddr,
    site: &str,
    report: campanile_proto::v1::Report,
) -> Result<()> {
    deliver_with_stats(pki, grpc, site, report, Default::default()).await
}

/// The same, with the agent's own figures as the request carries them.
pub async fn deliver_with_stats(
    pki: &TestPki,
    grpc: SocketAddr,
    site: &str,
    report: campanile_proto::v1::Report,
    stats: campanile_proto::v1::AgentStats,
) -> Result<()> {
    let cfg = pki.agent_config(&report.host_id, site, grpc, report.interval_secs)?;
    campanile_agent::transport::Transport::new(&cfg.collector)?
        .deliver(vec![report], stats)
        .await
        .map_err(|e| anyhow::anyhow!("deliver: {e:?}"))?;
    Ok(())
}

/// Sends a hand-built request over real mTLS, as the agent whose
/// certificate (valid `cert_days`) names the first report's host at `site`:
/// for requests the agent would never make (a skewed clock).
pub async fn deliver_raw(
    pki: &TestPki,
    grpc: SocketAddr,
    site: &str,
    cert_days: i64,
    request: campanile_proto::v1::DeliverRequest,
) -> Result<campanile_proto::v1::DeliverResponse> {
    Ok(deliver_raw_response(pki, grpc, site, cert_days, request)
        .await?
        .into_inner())
}

/// The same, with the response's headers.
pub async fn deliver_raw_response(
    pki: &TestPki,
    grpc: SocketAddr,
    site: &str,
    cert_days: i64,
    request: campanile_proto::v1::DeliverRequest,
) -> Result<tonic::Response<campanile_proto::v1::DeliverResponse>> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let host = request
        .reports
        .first()
        .map(|r| r.host_id.clone())
        .context("a request with a report")?;
    let (cert, key) = pki.agent_for_days(&host, site, cert_days)?;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(
            pki.path().join("ca.pem"),
        )?))
        .domain_name("localhost")
        .identity(Identity::from_pem(
            std::fs::read(cert)?,
            std::fs::read(key)?,
        ));
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{}", grpc.port()))?
        .tls_config(tls)?
        .timeout(Duration::from_secs(10))
        .connect()
        .await?;
    Ok(
        campanile_proto::v1::ingest_client::IngestClient::new(channel)
            .deliver(request)
            .await?,
    )
}

/// Polls `check` until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Series that appear more than once in an exposition.
pub fn duplicate_series(exposition: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_owned()))
        .filter(|s| !seen.insert(s.clone()))
        .collect()
}

/// Runs `promtool check metrics` on an exposition; fails with its complaints.
pub fn promtool_check_metrics(exposition: &str) -> Result<()> {
    let out = output_with_stdin(
        Command::new(require_tool("promtool")?).args(["check", "metrics"]),
        exposition,
    )?;
    // promtool 2.42 prints lint findings on stderr and exits 3 for them;
    // a clean exposition gets no output at all.
    if !out.status.success() || !out.stdout.is_empty() || !out.stderr.is_empty() {
        bail!(
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A child process killed (and reaped) on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port (bound then released; the race is acceptable for
/// a peer that cannot be told to bind port 0 and report it).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A real Prometheus server scraping `target` (host:port) every second.
pub struct TestPrometheus {
    pub url: String,
    _child: ChildGuard,
    _dir: TempDir,
}

impl TestPrometheus {
    pub fn start(target: SocketAddr) -> Result<Self> {
        Self::start_with_rules(target, &[])
    }

    /// Scrapes `target` every second and evaluates `rule_files` every second.
    pub fn start_with_rules(target: SocketAddr, rule_files: &[PathBuf]) -> Result<Self> {
        let bin = require_tool("prometheus")?;
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("prometheus.yml");
        let rules: String = rule_files
            .iter()
            .map(|p| format!("  - '{}'\n", p.display()))
            .collect();
        let rules = if rules.is_empty() {
            String::new()
        } else {
            format!("rule_files:\n{rules}")
        };
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{rules}\
                 scrape_configs:\n  - job_name: campanile\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )?;
        let port = free_port()?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting prometheus")?;
        Ok(Self {
            url: format!("http://127.0.0.1:{port}"),
            _child: ChildGuard(child),
            _dir: dir,
        })
    }

    /// Instant query; returns the raw JSON body.
    pub async fn query(&self, promql: &str) -> Result<String> {
        let client = reqwest::Client::new();
        let resp = client
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .await?;
        Ok(resp.text().await?)
    }
}

/// A TCP relay that passes at most `bytes_per_sec` each way: a collector on
/// a slow rural line, as the agent sees it.
pub struct SlowProxy {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl SlowProxy {
    pub async fn start(target: SocketAddr, bytes_per_sec: usize) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                conns.spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::join!(
                        throttle(ri, wo, bytes_per_sec),
                        throttle(ro, wi, bytes_per_sec)
                    );
                });
            }
        });
        Ok(Self { addr, task })
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops the JoinSet, which aborts every relay.
        self.task.abort();
    }
}

async fn throttle(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    bytes_per_sec: usize,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Ten slices a second.
    let mut buf = vec![0u8; (bytes_per_sec / 10).max(1)];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = to.shutdown().await;
}

/// Sends SIGTERM (a graceful stop) to a child this test started.
pub fn terminate(child: &Child) -> Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -TERM {} failed", child.id());
    Ok(())
}

/// A steady (hash-only) report of this machine with the probes a default
/// agent runs: gateway, resolver and collector pings, one TCP check.
pub async fn steady_report(host_id: &str) -> campanile_proto::v1::Report {
    let collect = campanile_agent::config::CollectConfig {
        packages: false,
        systemd_units: false,
        ..Default::default()
    };
    let mut r = campanile_agent::collect_once(
        host_id,
        &collect,
        &campanile_agent::config::ProbeConfig::disabled(),
        "",
    )
    .await;
    r.inventory = None;
    let icmp = |target: &str| campanile_proto::v1::IcmpResult {
        target: target.into(),
        address: "192.0.2.1".into(),
        sent: 5,
        lost: 0,
        rtt_min_seconds: Some(0.004),
        rtt_avg_seconds: Some(0.006),
        rtt_max_seconds: Some(0.011),
        rtt_stddev_seconds: Some(0.002),
        ..Default::default()
    };
    r.probes = Some(campanile_proto::v1::Probes {
        icmp: vec![icmp("gateway"), icmp("dns1"), icmp("collector")],
        tcp: vec![campanile_proto::v1::TcpResult {
            target: "centre".into(),
            address: "192.0.2.10:443".into(),
            success: true,
            seconds: 0.02,
            ..Default::default()
        }],
        ..Default::default()
    });
    r
}
