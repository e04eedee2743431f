//! Campanile agent: collects host health and inventory, queues reports and
//! delivers them to the collector over mTLS gRPC.
//!
//! Data flows one way: [`collect`] → [`report`] → [`queue`] → [`transport`].

pub mod collect;
pub mod config;
pub mod platform;
pub mod queue;
pub mod report;
pub mod transport;

use std::future::Future;
use std::time::Duration;

use campanile_proto::v1::{AgentStats, Report};
use tokio::time::Instant;

use collect::HostCollector;
use collect::probe::Prober;
pub use config::AgentConfig;
use config::{CollectConfig, ProbeConfig};
use queue::ReportQueue;
use report::ReportBuilder;
use transport::{Backoff, SendError, Transport};

pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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

/// What happened to the queue in one send attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Everything queued was acknowledged.
    Drained,
    /// Some reports are still queued; try again after the given delay.
    RetryAfter(Duration),
}

/// One agent: its collectors, its queue and its connection.
pub struct Agent {
    cfg: AgentConfig,
    collector: HostCollector,
    builder: ReportBuilder,
    queue: ReportQueue,
    transport: Transport,
    backoff: Backoff,
    interval: Duration,
    send_failures_total: u64,
    invalid_dropped_total: u64,
    /// Opened at the first cycle (it needs the runtime); `None` while
    /// probes are off.
    prober: Option<Prober>,
}

impl Agent {
    pub fn new(cfg: AgentConfig) -> Result<Self, AgentError> {
        let transport = Transport::new(&cfg.collector)?;
        let interval = Duration::from_secs(u64::from(cfg.collect.interval_secs));
        let mut collector = HostCollector::new(cfg.collect.clone());
        collector.prime();
        Ok(Self {
            builder: ReportBuilder::new(cfg.host_id.clone()),
            queue: ReportQueue::new(cfg.queue.max_reports),
            // Cap at one interval: a new report is waiting by then anyway.
            backoff: Backoff::new(
                Duration::from_millis(500),
                interval.max(Duration::from_secs(1)),
            ),
            collector,
            transport,
            interval,
            send_failures_total: 0,
            invalid_dropped_total: 0,
            prober: None,
            cfg,
        })
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Copies of the queued reports, oldest first.
    pub fn queued(&self) -> Vec<Report> {
        self.queue.batch(usize::MAX)
    }

    /// Collects one report, with this cycle's probes, and queues it.
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
        let stats = AgentStats {
            queue_depth: self.queue.len() as u64,
            dropped_reports_total: self.queue.dropped_total() + self.invalid_dropped_total,
            send_failures_total: self.send_failures_total,
            oldest_unsent_age_seconds: self
                .queue
                .oldest_collected_ms()
                .map_or(0, |t| u64::try_from((now_ms() - t) / 1000).unwrap_or(0)),
        };
        let secs = u32::try_from(self.interval.as_secs()).unwrap_or(u32::MAX);
        let mut report = self
            .builder
            .build(now_ms(), secs, health, inventory, Some(stats));
        report.probes = probes;
        report.probe_duty_sha256 = self
            .prober
            .as_ref()
            .map(Prober::duty_sha256)
            .unwrap_or_default();
        self.enqueue(report);
    }

    /// Queues a report built elsewhere (tests, the fleet simulator).
    pub fn enqueue(&mut self, report: Report) {
        if let Some(dropped) = self.queue.push(report) {
            tracing::warn!(
                dropped_total = self.queue.dropped_total(),
                "queue full: oldest report dropped"
            );
            if dropped.had_full_inventory {
                self.builder.resend_full_inventory();
            }
        }
    }

    /// Sends queued reports in batches until the queue is empty or a call fails.
    pub async fn send(&mut self) -> SendOutcome {
        while !self.queue.is_empty() {
            let batch = self.queue.batch(self.cfg.queue.max_batch);
            let (epoch, first_seq) = (batch[0].epoch, batch[0].seq);
            let count = batch.len();
            match self.transport.deliver(batch).await {
                Ok(ack) => {
                    self.backoff.reset();
                    self.queue.ack(epoch, ack.committed_seq);
                    if let Some(d) = ack.directives {
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
                        if d.interval_secs > 0
                            && u64::from(d.interval_secs) != self.interval.as_secs()
                        {
                            tracing::info!(
                                interval_secs = d.interval_secs,
                                "collector set the collection interval"
                            );
                            self.interval = Duration::from_secs(u64::from(d.interval_secs));
                        }
                    }
                    tracing::debug!(
                        count,
                        committed_seq = ack.committed_seq,
                        "reports acknowledged"
                    );
                    if self
                        .queue
                        .front()
                        .is_some_and(|r| r.epoch == epoch && r.seq == first_seq)
                    {
                        // The ack did not cover our batch (should not happen):
                        // do not spin; retry later.
                        return SendOutcome::RetryAfter(self.backoff.next_delay());
                    }
                }
                Err(SendError::InvalidReport { seq, message }) => {
                    self.invalid_dropped_total += 1;
                    if self
                        .queue
                        .remove(epoch, seq)
                        .is_some_and(|r| r.inventory.is_some())
                    {
                        self.builder.resend_full_inventory();
                    }
                    tracing::error!(seq, %message, "collector refused a report as invalid; dropped");
                }
                Err(SendError::Refused { code, message }) => {
                    self.send_failures_total += 1;
                    tracing::error!(?code, %message, endpoint = self.transport.endpoint(), "collector refused the reports; check this agent's certificate and host id");
                    return SendOutcome::RetryAfter(self.backoff.next_delay());
                }
                Err(SendError::Retry { message }) => {
                    self.send_failures_total += 1;
                    let delay = self.backoff.next_delay();
                    tracing::warn!(%message, queued = self.queue.len(), retry_in_ms = delay.as_millis() as u64, "cannot deliver reports");
                    return SendOutcome::RetryAfter(delay);
                }
            }
        }
        SendOutcome::Drained
    }

    /// Runs until `shutdown` completes: collect every interval, send what
    /// is queued, retry failed sends with backoff without delaying collection.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        tracing::info!(
            host_id = %self.cfg.host_id,
            endpoint = self.transport.endpoint(),
            interval_secs = self.interval.as_secs(),
            "agent started"
        );
        let mut next_collect = Instant::now();
        let mut next_send: Option<Instant> = None;
        loop {
            let wake = next_send.map_or(next_collect, |s| s.min(next_collect));
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep_until(wake) => {}
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
                next_send = match self.send().await {
                    SendOutcome::Drained => None,
                    SendOutcome::RetryAfter(d) => Some(Instant::now() + d),
                };
            }
        }
        tracing::info!(queued = self.queue.len(), "agent stopped");
    }
}
