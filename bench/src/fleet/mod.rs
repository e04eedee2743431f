//! The fleet simulator: N agents played from one process against a real
//! collector over real mTLS gRPC. Each simulated agent has its own
//! certificate and identity, its own epoch and sequence numbers, a site and
//! comune of a generated territory, health that drifts, the full inventory
//! on its first report (and when it changes or the collector asks), the
//! hash otherwise, and the probe duty the collector hands it.
//!
//! It measures what the collector gives back: achieved rate, errors by
//! gRPC code, and percentiles of the report RPC's latency.

pub mod connect;
#[cfg(test)]
mod end_to_end;
pub mod hosts;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use campanile_collector::pki::Ca;
use campanile_proto::identity::HostIdentity;
use campanile_proto::v1::ingest_client::IngestClient;
use campanile_proto::v1::{DeliverRequest, Report};
use prost::Message;
use rustls::ClientConfig;
use tonic::codec::CompressionEncoding;

pub use connect::{ConnectLog, Target};
pub use hosts::Layout;

/// Reports an agent keeps while the collector does not answer; older ones
/// are dropped (the real agent's spool is far larger; the simulator only
/// needs the next requests to carry a backlog).
const MAX_PENDING: usize = 20;

/// How one run plays the fleet.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: Target,
    /// Agents taken from the prepared fleet (the first ones).
    pub agents: usize,
    /// Zero: closed loop, each agent sends its next report as soon as the
    /// last one is answered (to find the most a server takes).
    pub interval: Duration,
    /// Each report leaves up to this much before or after its slot.
    pub jitter: Duration,
    /// The agents' first reports are spread over this, or over one
    /// interval if that is longer; each agent then keeps its interval. A
    /// territory's agents never all start in one minute, except when the
    /// collector comes back: a ramp measures what the collector holds,
    /// one interval what it takes at a cold start.
    pub ramp: Duration,
    pub duration: Duration,
    /// Latencies and rates are measured after this (the first connections
    /// and full inventories are the start-up, not the steady state).
    pub warmup: Duration,
    pub seed: u64,
    /// A new connection (and TLS handshake, with the agent's own
    /// certificate) for every report, closed afterwards: identities share
    /// the machine's sockets instead of each holding one.
    pub reconnect_each_report: bool,
    /// Chance per report that the host's software changed (full inventory).
    pub inventory_change_per_million: u32,
}

/// Certificates and layout, prepared once: issuing 50,000 certificates is
/// the slow part, and one fleet serves several runs.
pub struct Fleet {
    pub layout: Layout,
    tls: Vec<Arc<ClientConfig>>,
}

impl Fleet {
    /// Issues a certificate per host with the CA in `pki_dir` (`ca.pem`,
    /// `ca.key`, as `campanile-collector pki init` writes them).
    pub fn prepare(layout: Layout, pki_dir: &Path) -> Result<Self> {
        let ca = Ca::load(pki_dir).with_context(|| format!("CA in {}", pki_dir.display()))?;
        let identities = (0..layout.agents)
            .map(|i| HostIdentity::new(&layout.host_id(i), &layout.site_of(i)))
            .collect::<Result<Vec<_>, _>>()?;
        let tls = connect::issue_identities(&ca, &identities, 365)?;
        Ok(Self { layout, tls })
    }

    pub fn len(&self) -> usize {
        self.tls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tls.is_empty()
    }
}

/// Latency percentiles of the report RPC, in milliseconds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(mut micros: Vec<u32>) -> Self {
        if micros.is_empty() {
            return Self::default();
        }
        micros.sort_unstable();
        let at = |q: f64| crate::stats::quantile(&micros, q).map_or(0.0, |m| f64::from(m) / 1000.0);
        Self {
            count: micros.len(),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: f64::from(*micros.last().expect("not empty")) / 1000.0,
        }
    }
}

/// What a run achieved.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub agents: usize,
    pub interval_secs: f64,
    pub duration_secs: f64,
    pub measured_secs: f64,
    /// Reports the fleet should send per second (agents / interval).
    pub offered_rate: f64,
    /// Reports acknowledged per second in the measured window.
    pub achieved_rate: f64,
    pub requests: u64,
    pub reports_acked: u64,
    /// Reports given up after MAX_PENDING unanswered ones.
    pub reports_dropped: u64,
    pub full_inventories_sent: u64,
    /// Encoded (uncompressed) request bytes, mean over all requests.
    pub mean_request_bytes: f64,
    /// Errors by gRPC code (plus transport failures), whole run.
    pub errors: BTreeMap<String, u64>,
    /// Report RPC latency in the measured window.
    pub latency: Latency,
    /// TCP connect plus TLS handshake of the connections begun in the
    /// measured window (part of the latency of the report that made them).
    pub connect: Latency,
    /// Reports of the measured window slower than [`SLOW_MS`]: when each
    /// was sent (seconds since the start of the run) and how long it took
    /// (ms), to set beside what the collector was doing then.
    pub slow_reports: Vec<(f64, f64)>,
}

/// A report slower than this is listed in [`Summary::slow_reports`]: the
/// capacity goal's p99 bound.
pub const SLOW_MS: f64 = 100.0;

impl Summary {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn to_text(&self) -> String {
        let errors = if self.errors.is_empty() {
            "none".to_owned()
        } else {
            self.errors
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "agents {}  interval {:.0} s  run {:.0} s (measured {:.0} s)\n\
             rate: offered {:.1}/s, achieved {:.1}/s\n\
             requests {}  reports acked {}  dropped {}  full inventories {}  mean request {:.0} B\n\
             errors: {errors}\n\
             report RPC latency (ms, {} samples): p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}\n\
             connect + TLS handshake (ms, {} connections): p50 {:.1}  p99 {:.1}  max {:.1}\n\
             reports over {SLOW_MS} ms: {}",
            self.agents,
            self.interval_secs,
            self.duration_secs,
            self.measured_secs,
            self.offered_rate,
            self.achieved_rate,
            self.requests,
            self.reports_acked,
            self.reports_dropped,
            self.full_inventories_sent,
            self.mean_request_bytes,
            self.latency.count,
            self.latency.p50_ms,
            self.latency.p90_ms,
            self.latency.p99_ms,
            self.latency.p999_ms,
            self.latency.max_ms,
            self.connect.count,
            self.connect.p50_ms,
            self.connect.p99_ms,
            self.connect.max_ms,
            self.slow_reports.len(),
        )
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    request_bytes: AtomicU64,
    acked: AtomicU64,
    acked_measured: AtomicU64,
    dropped: AtomicU64,
    inventories: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    latencies_us: Mutex<Vec<u32>>,
    slow: Mutex<Vec<(f64, f64)>>,
    connects: Arc<ConnectLog>,
}

impl Counters {
    fn error(&self, what: String) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(what)
            .or_default() += 1;
    }
}

/// Plays `cfg.agents` agents of the fleet for `cfg.duration`, then returns
/// what was measured. Progress goes to stderr every 10 s when `progress`.
pub async fn run(fleet: &Fleet, cfg: &RunConfig, progress: bool) -> Result<Summary> {
    anyhow::ensure!(
        cfg.agents <= fleet.len(),
        "{} agents asked, {} prepared",
        cfg.agents,
        fleet.len()
    );
    for src in &cfg.target.source_addrs {
        anyhow::ensure!(src.is_loopback(), "source address {src} is not loopback");
    }
    anyhow::ensure!(
        cfg.target.addr.ip().is_loopback(),
        "the simulator only targets loopback, not {}",
        cfg.target.addr
    );
    let counters = Arc::new(Counters::default());
    let start = tokio::time::Instant::now();
    let end = start + cfg.duration;
    let measure_from = start + cfg.warmup.min(cfg.duration);
    // Each run is a new epoch for every agent, as a fresh spool would be,
    // so runs against the same store are never duplicates of each other.
    let run_epoch = fastrand::Rng::with_seed(cfg.seed ^ now_ms() as u64).u64(1..u64::MAX / 2);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..cfg.agents {
        let agent = SimAgent {
            layout: fleet.layout.clone(),
            tls: fleet.tls[i].clone(),
            source: (!cfg.target.source_addrs.is_empty())
                .then(|| cfg.target.source_addrs[i % cfg.target.source_addrs.len()]),
            index: i,
            epoch: run_epoch.wrapping_add(i as u64),
        };
        let (cfg, counters) = (cfg.clone(), counters.clone());
        tasks.spawn(async move { agent.play(&cfg, &counters, start, end, measure_from).await });
    }
    let reporter = progress.then(|| {
        let counters = counters.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            tick.tick().await;
            loop {
                tick.tick().await;
                let errors: u64 = counters
                    .errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .sum();
                eprintln!(
                    "fleet-sim: {:>5.0} s  requests {}  acked {}  errors {}",
                    start.elapsed().as_secs_f64(),
                    counters.requests.load(Ordering::Relaxed),
                    counters.acked.load(Ordering::Relaxed),
                    errors
                );
            }
        })
    });
    while let Some(done) = tasks.join_next().await {
        done.context("simulated agent panicked")??;
    }
    if let Some(r) = reporter {
        r.abort();
    }
    let measured = end.saturating_duration_since(measure_from).as_secs_f64();
    let requests = counters.requests.load(Ordering::Relaxed);
    let errors = std::mem::take(&mut *counters.errors.lock().unwrap_or_else(|p| p.into_inner()));
    let latencies = std::mem::take(
        &mut *counters
            .latencies_us
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    Ok(Summary {
        agents: cfg.agents,
        interval_secs: cfg.interval.as_secs_f64(),
        duration_secs: cfg.duration.as_secs_f64(),
        measured_secs: measured,
        offered_rate: if cfg.interval.is_zero() {
            0.0
        } else {
            cfg.agents as f64 / cfg.interval.as_secs_f64()
        },
        achieved_rate: if measured > 0.0 {
            counters.acked_measured.load(Ordering::Relaxed) as f64 / measured
        } else {
            0.0
        },
        requests,
        reports_acked: counters.acked.load(Ordering::Relaxed),
        reports_dropped: counters.dropped.load(Ordering::Relaxed),
        full_inventories_sent: counters.inventories.load(Ordering::Relaxed),
        mean_request_bytes: if requests > 0 {
            counters.request_bytes.load(Ordering::Relaxed) as f64 / requests as f64
        } else {
            0.0
        },
        errors,
        latency: Latency::of(latencies),
        connect: Latency::of(
            counters
                .connects
                .since(measure_from)
                .into_iter()
                .map(|d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX))
                .collect(),
        ),
        slow_reports: std::mem::take(&mut *counters.slow.lock().unwrap_or_else(|p| p.into_inner())),
    })
}

struct SimAgent {
    layout: Layout,
    tls: Arc<ClientConfig>,
    source: Option<IpAddr>,
    index: usize,
    epoch: u64,
}

impl SimAgent {
    async fn play(
        self,
        cfg: &RunConfig,
        counters: &Counters,
        start: tokio::time::Instant,
        end: tokio::time::Instant,
        measure_from: tokio::time::Instant,
    ) -> Result<()> {
        let mut rng =
            fastrand::Rng::with_seed(cfg.seed.wrapping_mul(1_000_003) ^ self.index as u64);
        let closed_loop = cfg.interval.is_zero();
        let interval_ms = u64::try_from(cfg.interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let jitter_ms = u64::try_from(cfg.jitter.as_millis()).unwrap_or(0);
        let interval_secs = u32::try_from(cfg.interval.as_secs())
            .unwrap_or(u32::MAX)
            .max(1);
        let mut host = hosts::HostState::new(&self.layout, self.index, self.epoch, now_ms());
        let ramp_ms = u64::try_from(cfg.ramp.as_millis())
            .unwrap_or(u64::MAX)
            .max(interval_ms);
        let mut slot = if closed_loop {
            start
        } else {
            start + Duration::from_millis(rng.u64(0..ramp_ms))
        };
        let mut client = None;
        let mut pending: Vec<Report> = Vec::new();
        let mut failures = 0u64;
        loop {
            let jitter = if jitter_ms > 0 && !closed_loop {
                rng.i64(-(jitter_ms as i64)..=jitter_ms as i64)
            } else {
                0
            };
            let at = if jitter < 0 {
                slot.checked_sub(Duration::from_millis(jitter.unsigned_abs()))
                    .unwrap_or(slot)
                    .max(start)
            } else {
                slot + Duration::from_millis(jitter as u64)
            };
            if at >= end {
                break;
            }
            if closed_loop {
                if tokio::time::Instant::now() >= end {
                    break;
                }
            } else {
                tokio::time::sleep_until(at).await;
                slot += Duration::from_millis(interval_ms);
            }

            let report = host.next_report(
                &self.layout,
                now_ms(),
                interval_secs,
                cfg.inventory_change_per_million,
            );
            pending.push(report);
            if pending.len() > MAX_PENDING {
                pending.remove(0);
                counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            let carried_inventory = pending.iter().filter(|r| r.inventory.is_some()).count();
            let stats = host.agent_stats(pending.len(), failures);
            let request = DeliverRequest {
                reports: std::mem::take(&mut pending),
                agent_stats: Some(stats),
                sent_unix_ms: now_ms(),
            };
            counters.requests.fetch_add(1, Ordering::Relaxed);
            counters
                .request_bytes
                .fetch_add(request.encoded_len() as u64, Ordering::Relaxed);
            counters
                .inventories
                .fetch_add(carried_inventory as u64, Ordering::Relaxed);
            if cfg.reconnect_each_report {
                client = None;
            }
            let (plain, gzip) = match &mut client {
                Some(c) => c,
                None => {
                    let plain = IngestClient::new(connect::channel(
                        &cfg.target,
                        self.tls.clone(),
                        self.source,
                        counters.connects.clone(),
                    )?)
                    .accept_compressed(CompressionEncoding::Gzip);
                    let gzip = plain.clone().send_compressed(CompressionEncoding::Gzip);
                    client.insert((plain, gzip))
                }
            };
            // Compressed only if large, as the agent sends.
            let c = if campanile_proto::worth_compressing(request.encoded_len()) {
                gzip
            } else {
                plain
            };
            let sent = tokio::time::Instant::now();
            let keep = request.reports.clone();
            let outcome = c.deliver(request).await;
            let took = sent.elapsed();
            let measured = sent >= measure_from;
            match outcome {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    let acked = keep.iter().filter(|r| r.seq <= resp.committed_seq).count() as u64;
                    counters.acked.fetch_add(acked, Ordering::Relaxed);
                    if measured {
                        counters.acked_measured.fetch_add(acked, Ordering::Relaxed);
                        counters
                            .latencies_us
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                        let ms = took.as_secs_f64() * 1e3;
                        if ms > SLOW_MS {
                            counters
                                .slow
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(((sent - start).as_secs_f64(), ms));
                        }
                    }
                    pending = keep
                        .into_iter()
                        .filter(|r| r.seq > resp.committed_seq)
                        .collect();
                    if carried_inventory > 0 {
                        host.send_inventory = false;
                    }
                    if let Some(d) = resp.directives {
                        if d.send_full_inventory {
                            host.send_inventory = true;
                        }
                        if let Some(duty) = d.probe_duty {
                            host.duty = Some(duty);
                        }
                    }
                }
                Err(status) => {
                    failures += 1;
                    counters.error(format!("{:?}", status.code()));
                    if status.code() == tonic::Code::InvalidArgument {
                        // The real agent drops what the collector calls
                        // invalid; resending would fail forever.
                        counters
                            .dropped
                            .fetch_add(keep.len() as u64, Ordering::Relaxed);
                    } else {
                        pending = keep;
                    }
                }
            }
        }
        Ok(())
    }
}

pub fn now_ms() -> i64 {
    campanile_agent::now_ms()
}
