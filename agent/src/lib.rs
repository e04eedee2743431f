//! Campanile agent: collects host health and inventory, spools reports on
//! disk and delivers them to the collector over mTLS gRPC.
//!
//! Data flows one way: [`collect`] → [`report`] → [`spool`] → [`transport`].
//! [`enroll`] gets the certificate the transport presents.

pub mod clock;
pub mod collect;
pub mod config;
pub mod configure;
pub mod dial;
pub mod enroll;
pub mod platform;
pub mod report;
#[cfg(windows)]
pub mod service;
pub mod spool;
pub mod transport;

use std::future::Future;
use std::time::Duration;

use campanile_proto::v1::{Directives, Report};
use tokio::time::Instant;

use collect::HostCollector;
use collect::probe::Prober;
pub use config::AgentConfig;
use config::{CollectConfig, ProbeConfig};
use report::ReportBuilder;
use spool::{Spool, SpoolError};
use transport::{Backoff, SendError, Transport};

pub use clock::{AGENT_VERSION, now_ms};

/// How long a stop waits for the send in flight (a Windows service stop,
/// SIGTERM): long enough for an answer over a slow rural link, short of
/// what the SCM and systemd allow a stop.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    #[error(transparent)]
    Certificate(#[from] enroll::cert_facts::CertError),
    #[error(
        "identity.host_id is {configured:?} but the certificate {} is for {certificate:?}: \
         remove identity.host_id, or enroll again",
        path.display()
    )]
    HostMismatch {
        configured: String,
        certificate: String,
        path: std::path::PathBuf,
    },
}

/// What `campanile-agent enroll` was given.
pub struct EnrollArgs {
    /// `HOST:PORT` (or `https://HOST:PORT`) of the collector's gRPC port.
    pub collector: Option<String>,
    pub token: campanile_proto::enrollment::EnrollmentToken,
    pub config: Option<AgentConfig>,
    pub host_id: Option<String>,
    pub server_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollArgsError {
    #[error("--collector {0:?} is not HOST:PORT")]
    Collector(String),
    #[error("--collector HOST:PORT is needed without --config")]
    NoCollector,
}

/// Where `enroll` connects and writes: the config's collector and files,
/// else the defaults of the state directory; `--collector` and
/// `--server-name` win over the config.
pub fn enrollment_for(
    args: EnrollArgs,
) -> Result<(enroll::Enrollment, enroll::CertPaths), EnrollArgsError> {
    let (mut enrollment, paths) = match &args.config {
        Some(cfg) => enrollment_from(cfg, args.token, args.host_id),
        None => {
            let c = args
                .collector
                .as_deref()
                .ok_or(EnrollArgsError::NoCollector)?;
            let (authority, host) = config::parse_authority(c)
                .ok_or_else(|| EnrollArgsError::Collector(c.to_owned()))?;
            let dir = config::state_dir();
            (
                enroll::Enrollment {
                    authority,
                    server_name: host,
                    token: args.token,
                    host_id: args.host_id,
                    hostname: collect::hostname().unwrap_or_default(),
                    timeout: Duration::from_secs(30),
                },
                enroll::CertPaths {
                    ca_cert: dir.join("ca.pem"),
                    cert: dir.join("agent.pem"),
                    key: dir.join("agent.key"),
                },
            )
        }
    };
    if args.config.is_some()
        && let Some(c) = &args.collector
    {
        let (authority, host) =
            config::parse_authority(c).ok_or_else(|| EnrollArgsError::Collector(c.clone()))?;
        enrollment.authority = authority;
        enrollment.server_name = host;
    }
    if let Some(n) = args.server_name {
        enrollment.server_name = n;
    }
    Ok((enrollment, paths))
}

/// What enrolling needs, from the config: the collector it names, the
/// files it names, and `token`.
pub fn enrollment_from(
    cfg: &AgentConfig,
    token: campanile_proto::enrollment::EnrollmentToken,
    host_id: Option<String>,
) -> (enroll::Enrollment, enroll::CertPaths) {
    let c = &cfg.collector;
    (
        enroll::Enrollment {
            authority: c.authority.clone(),
            server_name: c.server_name.clone(),
            token,
            host_id: host_id.or_else(|| cfg.host_id.clone()),
            hostname: collect::hostname().unwrap_or_default(),
            timeout: Duration::from_secs(c.request_timeout_secs),
        },
        enroll::CertPaths {
            ca_cert: c.ca_cert_path.clone(),
            cert: c.cert_path.clone(),
            key: c.key_path.clone(),
        },
    )
}

/// Collects one report without sending it (`campanile-agent once`). Takes
/// two CPU samples a moment apart so the CPU figure is real; runs the
/// probes meanwhile when they are on.
pub async fn collect_once(
    host_id: &str,
    cfg: &CollectConfig,
    probes: &ProbeConfig,
    collector_host: &str,
) -> Report {
    let mut collector = HostCollector::new(cfg.clone());
    collector.prime();
    let pause =
        tokio::time::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL.max(Duration::from_millis(250)));
    let probe_results = async {
        if probes.enabled {
            Some(
                Prober::new(probes.clone(), collector_host.to_owned())
                    .run()
                    .await,
            )
        } else {
            None
        }
    };
    let ((), probe_results) = tokio::join!(pause, probe_results);
    let health = collector.health();
    let inventory = collector.inventory();
    let mut report = ReportBuilder::new(host_id.to_owned()).build(
        now_ms(),
        cfg.interval_secs,
        health,
        inventory,
        None,
    );
    report.probes = probe_results;
    report
}

/// How a send pass ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Everything spooled was acknowledged.
    Drained,
    /// The pass reached its deadline with reports left; send more soon.
    More,
    /// Some reports are still spooled; try again after the given delay.
    RetryAfter(Duration),
}

/// One agent: its collectors, its spool and its connection.
pub struct Agent {
    cfg: AgentConfig,
    /// The host id of its certificate.
    host_id: String,
    /// What its certificate says, for renewal.
    cert: enroll::cert_facts::CertFacts,
    /// Between failed renewals.
    renew_backoff: Backoff,
    /// The collector asked for a renewal now (its CA changed).
    renew_asked: bool,
    collector: HostCollector,
    builder: ReportBuilder,
    spool: Spool,
    transport: Transport,
    backoff: Backoff,
    interval: Duration,
    /// Reports per call; halved each time the collector says a request is
    /// too large. It does not grow back: the collector's limit is a fixed
    /// size, and growing would refuse every other request.
    batch_reports: usize,
    /// Opened at the first cycle (it needs the runtime); `None` while
    /// probes are off.
    prober: Option<Prober>,
}

impl Agent {
    /// Opens the spool (creating it, or setting a damaged one aside) and
    /// prepares the connection; nothing is sent yet.
    pub fn new(cfg: AgentConfig) -> Result<Self, AgentError> {
        let facts = enroll::cert_facts::CertFacts::read(&cfg.collector.cert_path)?;
        let host_id = facts.identity.host_id.clone();
        if let Some(configured) = &cfg.host_id
            && *configured != host_id
        {
            return Err(AgentError::HostMismatch {
                configured: configured.clone(),
                certificate: host_id,
                path: cfg.collector.cert_path.clone(),
            });
        }
        let transport = Transport::new(&cfg.collector)?;
        let spool = Spool::open(&cfg.send.spool)?;
        let interval = Duration::from_secs(u64::from(cfg.collect.interval_secs));
        let mut collector = HostCollector::new(cfg.collect.clone());
        collector.prime();
        Ok(Self {
            builder: ReportBuilder::new(host_id.clone()),
            host_id,
            cert: facts,
            renew_backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(600)),
            renew_asked: false,
            spool,
            // Cap at one interval: a new report is waiting by then anyway.
            backoff: Backoff::new(
                Duration::from_millis(500),
                interval.max(Duration::from_secs(1)),
            ),
            collector,
            transport,
            interval,
            batch_reports: cfg.send.batch_max_reports,
            prober: None,
            cfg,
        })
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// When the certificate is due for renewal: once less than
    /// `renew_when_remaining_percent` of its lifetime remains.
    fn renewal_due(&self) -> Instant {
        let c = &self.cert;
        let life = (c.not_after_ms - c.not_before_ms).max(0);
        let remaining = life * i64::from(self.cfg.renew_when_remaining_percent) / 100;
        let due_ms = c.not_after_ms - remaining;
        let wait_ms = u64::try_from(due_ms - now_ms()).unwrap_or(0);
        Instant::now() + Duration::from_millis(wait_ms)
    }

    /// Renews the certificate over the agent's connection and switches to
    /// it; on failure, the next attempt after a backoff. Reporting goes on
    /// either way, on whichever certificate is in force.
    async fn renew(&mut self) -> Instant {
        let paths = enroll::CertPaths {
            ca_cert: self.cfg.collector.ca_cert_path.clone(),
            cert: self.cfg.collector.cert_path.clone(),
            key: self.cfg.collector.key_path.clone(),
        };
        let renewed = enroll::renew(self.transport.channel(), &self.cert.identity, &paths).await;
        let switched = renewed.map_err(|e| e.to_string()).and_then(|facts| {
            // The files are replaced: connect with them from now on.
            Transport::new(&self.cfg.collector)
                .map(|t| (facts, t))
                .map_err(|e| e.to_string())
        });
        match switched {
            Ok((facts, transport)) => {
                let valid_secs = (facts.not_after_ms - now_ms()) / 1000;
                tracing::info!(host_id = %self.host_id, valid_secs, "certificate renewed");
                self.cert = facts;
                self.transport = transport;
                self.renew_backoff.reset();
                self.renewal_due()
            }
            Err(error) => {
                let wait = self.renew_backoff.next_delay().max(Duration::from_secs(1));
                tracing::warn!(%error, retry_in_secs = wait.as_secs(), "certificate renewal failed; reporting goes on");
                Instant::now() + wait
            }
        }
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Copies of the spooled reports, oldest first.
    pub fn spooled(&mut self) -> Result<Vec<Report>, SpoolError> {
        self.spool.batch(usize::MAX, u64::MAX)
    }

    /// Collects one report, with this cycle's probes, and spools it.
    pub async fn collect(&mut self) {
        let probes = if self.cfg.probes.enabled {
            let prober = self.prober.get_or_insert_with(|| {
                Prober::new(self.cfg.probes.clone(), self.cfg.collector.host.clone())
            });
            Some(prober.run().await)
        } else {
            None
        };
        let health = self.collector.health();
        let inventory = self.collector.inventory();
        let now = now_ms();
        let stats = self.spool.stats(now);
        let secs = u32::try_from(self.interval.as_secs()).unwrap_or(u32::MAX);
        let mut report = self
            .builder
            .build(now, secs, health, inventory, Some(stats));
        report.probes = probes;
        report.probe_duty_sha256 = self
            .prober
            .as_ref()
            .map(Prober::duty_sha256)
            .unwrap_or_default();
        self.enqueue(report);
    }

    /// Spools a report built elsewhere (tests, the fleet simulator); its
    /// epoch and seq are the spool's. A report the spool cannot write even
    /// after making room (disk full, I/O error) is dropped and counted.
    pub fn enqueue(&mut self, report: Report) {
        let carried_inventory = report.inventory.is_some();
        match self.spool.append(report, now_ms()) {
            Ok(appended) => {
                if appended.dropped_full_inventory {
                    self.builder.resend_full_inventory();
                }
            }
            Err(unspooled) => {
                if carried_inventory || unspooled.made_room.dropped_full_inventory {
                    self.builder.resend_full_inventory();
                }
                tracing::error!(seq = unspooled.seq, error = %unspooled.error,
                    dropped_to_make_room = unspooled.made_room.dropped,
                    "cannot write the report to the spool even after dropping older ones: dropped and counted");
            }
        }
    }

    /// Sends spooled reports in batches until the spool is empty, a call
    /// fails, or `deadline` passes.
    pub async fn send_until(&mut self, deadline: Option<Instant>) -> SendOutcome {
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return SendOutcome::More;
            }
            let batch = match self
                .spool
                .batch(self.batch_reports, self.cfg.send.batch_max_bytes)
            {
                Ok(b) => b,
                Err(error) => {
                    tracing::error!(%error, "cannot read the spool");
                    return SendOutcome::RetryAfter(self.backoff.next_delay());
                }
            };
            let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
                return SendOutcome::Drained;
            };
            let (epoch, first_seq, last_seq) = (first.epoch, first.seq, last.seq);
            let count = batch.len();
            let stats = self.spool.stats(now_ms());
            match self.transport.deliver(batch, stats).await {
                Ok(ack) => {
                    self.backoff.reset();
                    if let Err(error) = self.spool.ack(epoch, ack.committed_seq) {
                        // The spool holds the ack in memory and leaves
                        // those reports out of the next batch: go on.
                        tracing::warn!(%error, "cannot write the acknowledgement to the spool; kept in memory");
                    }
                    if let Some(d) = ack.directives {
                        self.apply(d);
                    }
                    tracing::debug!(
                        count,
                        first_seq,
                        last_seq,
                        committed_seq = ack.committed_seq,
                        "reports acknowledged"
                    );
                    if ack.committed_seq < first_seq {
                        // The ack does not cover the batch (a collector that
                        // lost its state?): do not spin; retry later.
                        tracing::warn!(
                            committed_seq = ack.committed_seq,
                            first_seq,
                            "acknowledgement does not cover the batch"
                        );
                        return SendOutcome::RetryAfter(self.backoff.next_delay());
                    }
                }
                Err(SendError::InvalidReport { seq, message }) => {
                    self.drop_invalid(seq, &message);
                }
                Err(SendError::TooLarge { message }) if count > 1 => {
                    self.batch_reports = (count / 2).max(1);
                    tracing::warn!(%message, count, next = self.batch_reports, "request too large for the collector; sending smaller batches");
                }
                Err(SendError::TooLarge { message }) => {
                    // One report alone is larger than the collector takes:
                    // it will never be accepted.
                    self.drop_invalid(first_seq, &message);
                }
                Err(SendError::Refused { code, message }) => {
                    self.spool.note_send_failure();
                    tracing::error!(?code, %message, endpoint = self.transport.endpoint(), "collector refused the reports; check this agent's certificate and host id");
                    return SendOutcome::RetryAfter(self.backoff.next_delay());
                }
                Err(SendError::Retry { message }) => {
                    self.spool.note_send_failure();
                    let delay = self.backoff.next_delay();
                    tracing::warn!(%message, spooled = self.spool.len(), retry_in_ms = delay.as_millis() as u64, "cannot deliver reports");
                    return SendOutcome::RetryAfter(delay);
                }
            }
        }
    }

    /// Sends until the spool is empty or a call fails.
    pub async fn send(&mut self) -> SendOutcome {
        self.send_until(None).await
    }

    fn drop_invalid(&mut self, seq: u64, message: &str) {
        match self.spool.drop_invalid(seq) {
            Ok(Some(r)) => {
                if r.inventory.is_some() {
                    self.builder.resend_full_inventory();
                }
                tracing::error!(seq, %message, "collector refused a report as invalid; dropped");
            }
            Ok(None) => {
                tracing::warn!(seq, %message, "collector refused a report that is no longer spooled")
            }
            Err(error) => {
                // Held in memory and left out of the next batch; whether it
                // carried the inventory is unknown, so send it again.
                self.builder.resend_full_inventory();
                tracing::error!(seq, %message, %error, "collector refused a report as invalid; its removal is not written yet")
            }
        }
    }

    fn apply(&mut self, d: Directives) {
        if d.renew_certificate && !self.renew_asked {
            tracing::info!("collector asked for a certificate renewal (its CA changed)");
            self.renew_asked = true;
        }
        if d.send_full_inventory {
            tracing::info!("collector asked for the full inventory");
            self.builder.resend_full_inventory();
        }
        if let Some(duty) = d.probe_duty {
            match &mut self.prober {
                Some(p) => p.set_duty(duty),
                None => tracing::debug!("probe duty ignored: probes are off"),
            }
        }
        if d.interval_secs > 0 && u64::from(d.interval_secs) != self.interval.as_secs() {
            tracing::info!(
                interval_secs = d.interval_secs,
                "collector set the collection interval"
            );
            self.interval = Duration::from_secs(u64::from(d.interval_secs));
        }
    }

    /// Runs until `shutdown` completes: collect every interval, send what
    /// is spooled, retry failed sends with backoff without delaying
    /// collection. Whatever is unsent stays in the spool for the next start;
    /// a send under way at the shutdown gets [`SHUTDOWN_GRACE`] to finish.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        tracing::info!(
            host_id = %self.host_id,
            endpoint = self.transport.endpoint(),
            interval_secs = self.interval.as_secs(),
            spooled = self.spool.len(),
            "agent started"
        );
        let mut next_collect = Instant::now();
        let mut next_renewal = self.renewal_due();
        // Reports left from the last run go out first.
        let mut next_send: Option<Instant> = (!self.spool.is_empty()).then(Instant::now);
        loop {
            let wake = next_send
                .map_or(next_collect, |s| s.min(next_collect))
                .min(next_renewal);
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep_until(wake) => {}
            }
            if Instant::now() >= next_renewal {
                let renewal = self.renew();
                tokio::pin!(renewal);
                next_renewal = tokio::select! {
                    _ = &mut shutdown => break,
                    due = &mut renewal => due,
                };
            }
            let now = Instant::now();
            if now >= next_collect {
                self.collect().await;
                next_collect += self.interval;
                if next_collect < now {
                    // We fell behind (suspend, slow send): skip missed cycles.
                    next_collect = now + self.interval;
                }
                // Send now, unless a backoff is pending: new data must not
                // bypass it (thousands of agents would retry together).
                next_send = Some(next_send.unwrap_or(now));
            }
            if next_send.is_some_and(|s| Instant::now() >= s) {
                // A long backlog is sent in passes that end at the next
                // collection, so draining never delays a cycle; a shutdown
                // waits at most for the call in flight.
                let pass = self.send_until(Some(next_collect));
                tokio::pin!(pass);
                let outcome = tokio::select! {
                    _ = &mut shutdown => {
                        // The call in flight is let finish, so the reports
                        // it carries are marked delivered, not sent again.
                        let _ = tokio::time::timeout(SHUTDOWN_GRACE, &mut pass).await;
                        break;
                    }
                    o = &mut pass => o,
                };
                next_send = match outcome {
                    SendOutcome::Drained => None,
                    SendOutcome::More => Some(Instant::now()),
                    SendOutcome::RetryAfter(d) => Some(Instant::now() + d),
                };
            }
            // Asked again after every report: a renewal that failed keeps
            // its backoff rather than being retried each cycle.
            if std::mem::take(&mut self.renew_asked) && self.renew_backoff.attempts() == 0 {
                next_renewal = next_renewal.min(Instant::now());
            }
        }
        tracing::info!(spooled = self.spool.len(), "agent stopped");
    }
}
