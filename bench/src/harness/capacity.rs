//! How many agents one collector holds: fleets of growing size, each
//! against a fresh release collector, every agent with its own connection
//! as the real agent keeps one, at the real interval; Prometheus' scrape
//! of `/metrics` every 15 s throughout. Then the soak: one fleet for a long
//! time, watching the collector's memory.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Binaries, CollectorProcess, Figure, Section, median, mib};
use crate::fleet::{self, Fleet, Layout, RunConfig, Summary, Target};
use campanile_tests::TestPki;

pub struct Options {
    /// Fleet sizes tried in turn.
    pub steps: Vec<usize>,
    pub interval_secs: u64,
    /// Measured window after one interval of warm-up.
    pub measure_secs: u64,
    /// The fleet size at which `/metrics` render time is recorded.
    pub render_at: usize,
    pub soak_agents: usize,
    pub soak_minutes: u64,
    /// Open files this process (and the collector it starts) may hold.
    pub open_files: u64,
    /// `/metrics` is scraped this often, a multiple of 5 (0: never, for
    /// telling what the scrapes cost the reports from what they do not).
    pub scrape_secs: u64,
}

/// Sockets a process needs besides the agents' connections.
const FD_MARGIN: u64 = 1000;
/// Beyond the open-files limit: idle connections closed after this long,
/// well under the 60 s interval (about a tenth of the agents connected).
const IDLE_TIMEOUT_SECS: u64 = 5;

/// A capacity step's agents join over this many intervals. All 50,000
/// starting within one minute (a collector coming back after an outage)
/// is a different test: every first report is a full TLS handshake and a
/// full inventory, about twice the steady load, and on this 2-core machine
/// that backlog did not drain (2026-12-01: under 450 of 833 reports/s
/// acked minutes later, connect p50 5 s).
const RAMP_INTERVALS: u32 = 3;

/// The soak's windows: twenty scrapes, long enough that each holds several
/// scrapes at their peak whatever the phase of the scrape cycle.
const WINDOW_SECS: f64 = 300.0;

/// What the Prometheus-like observer saw while a fleet ran.
#[derive(Default)]
struct Observed {
    /// (seconds since start, scrape duration, body bytes, series)
    scrapes: Vec<(f64, Duration, usize, usize)>,
    /// (seconds since start, RSS bytes)
    rss: Vec<(f64, u64)>,
    /// (seconds since start, CPU seconds used so far by the collector and
    /// by this process, the simulated fleet)
    cpu: Vec<(f64, f64, f64)>,
    /// Most agent connections open at a scrape.
    peak_connections: f64,
    /// Handshakes at the last scrape: (full, resumed).
    handshakes: (f64, f64),
    /// Connections the collector closed before their handshake, overloaded
    /// (at the last scrape).
    shed: f64,
    /// The collector's own histograms of request handling and of group
    /// commits, at each scrape: where a slow report spent its time.
    histograms: Vec<(f64, Histograms)>,
}

#[derive(Clone, Default)]
struct Histograms {
    ingest: Vec<(f64, f64)>,
    commit: Vec<(f64, f64)>,
}

/// `(le, cumulative count)` of one histogram in an exposition.
fn buckets(exposition: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| {
            let (le, rest) = l.split_once('"')?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, rest.rsplit_once(' ')?.1.parse().ok()?))
        })
        .collect()
}

/// The upper bound of the bucket holding quantile `q` of what was observed
/// between two readings of one histogram, in ms.
fn quantile_ms(from: &[(f64, f64)], to: &[(f64, f64)], q: f64) -> Option<f64> {
    let base = |le: f64| from.iter().find(|(l, _)| *l == le).map_or(0.0, |(_, c)| *c);
    let total = to.last()?.1 - from.last().map_or(0.0, |(_, c)| *c);
    if total <= 0.0 {
        return None;
    }
    to.iter()
        .find(|(le, c)| c - base(*le) >= q * total)
        .map(|(le, _)| le * 1e3)
}

/// Scrapes every 15 s and samples RSS every 5 s until stopped, on a thread
/// and runtime of its own at a lower priority, as Prometheus is a process of
/// its own: reading and parsing a 100 MiB exposition on one of the simulated
/// agents' worker threads would stall the agents queued behind it and show
/// up as their latency.
struct Observer {
    seen: Arc<Mutex<Observed>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Observer {
    fn finish(mut self) -> Observed {
        self.stop_thread();
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn stop_thread(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

const INGEST_HISTOGRAM: &str = "campanile_ingest_duration_seconds";
const COMMIT_HISTOGRAM: &str = "campanile_store_commit_duration_seconds";
/// The series the observer reads values from; every other line is only
/// counted.
const KEPT: [&str; 5] = [
    INGEST_HISTOGRAM,
    COMMIT_HISTOGRAM,
    "campanile_grpc_connections",
    "campanile_tls_handshakes_total",
    SHED,
];
const SHED: &str = "campanile_grpc_connections_shed_total";

/// One scrape, read as Prometheus reads it: line by line as the body
/// arrives, never the whole body at once. (At 50,000 hosts the body is
/// 105 MiB: held whole, with the copies its reading makes, it cost the
/// simulated fleet's process hundreds of MiB of page faults and unmaps
/// each 15 s, which stalled its agents' threads.)
#[derive(Default)]
struct Scrape {
    bytes: usize,
    series: usize,
    /// The lines of the series in `KEPT`.
    kept: String,
}

impl Scrape {
    async fn read(mut resp: reqwest::Response) -> Option<Self> {
        let mut scrape = Lines::default();
        while let Some(chunk) = resp.chunk().await.ok()? {
            scrape.feed(&chunk);
        }
        Some(scrape.finish())
    }
}

/// Splits a body arriving in chunks into lines.
#[derive(Default)]
struct Lines {
    scrape: Scrape,
    /// The start of a line that the last chunk cut.
    partial: Vec<u8>,
}

impl Lines {
    fn feed(&mut self, chunk: &[u8]) {
        self.scrape.bytes += chunk.len();
        let mut rest = chunk;
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            if self.partial.is_empty() {
                self.scrape.line(&rest[..nl]);
            } else {
                self.partial.extend_from_slice(&rest[..nl]);
                let line = std::mem::take(&mut self.partial);
                self.scrape.line(&line);
            }
            rest = &rest[nl + 1..];
        }
        self.partial.extend_from_slice(rest);
    }

    fn finish(mut self) -> Scrape {
        let last = std::mem::take(&mut self.partial);
        self.scrape.line(&last);
        self.scrape
    }
}

impl Scrape {
    fn line(&mut self, line: &[u8]) {
        if line.is_empty() || line[0] == b'#' {
            return;
        }
        self.series += 1;
        if KEPT.iter().any(|k| line.starts_with(k.as_bytes())) {
            self.kept.push_str(&String::from_utf8_lossy(line));
            self.kept.push('\n');
        }
    }
}

fn observe(collector: &CollectorProcess, started: Instant, scrape_secs: u64) -> Result<Observer> {
    // The CPU is read every 5 s, a scrape falls on every `every`th reading.
    let every = scrape_secs / 5;
    let seen = Arc::new(Mutex::new(Observed::default()));
    let (s, pid, url) = (
        seen.clone(),
        collector.pid,
        format!("http://{}/metrics", collector.http),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // RSS on its own timer, every second: sampled in the scrape loop, every
    // sample fell just before or well after a scrape, never during one, so
    // a minute's largest sample said how far the last scrape's pages had
    // decayed (±30 MiB at 10,000 hosts), not how high RSS went.
    let rss = {
        let s = seen.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Some(rss) = campanile_tests::procs::rss_bytes(pid) {
                    let at = started.elapsed().as_secs_f64();
                    s.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .rss
                        .push((at, rss));
                }
            }
        }
    };
    let watch = async move {
        let client = reqwest::Client::new();
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        let mut n = 0u64;
        loop {
            tick.tick().await;
            let at = started.elapsed().as_secs_f64();
            if let (Ok(collector), Ok(own)) = (
                campanile_tests::procs::cpu_seconds(pid),
                campanile_tests::procs::cpu_seconds(std::process::id()),
            ) {
                s.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .cpu
                    .push((at, collector, own));
            }
            n += 1;
            if every > 0 && n % every == 1 % every {
                let t = Instant::now();
                if let Ok(resp) = client.get(&url).send().await
                    && let Some(scrape) = Scrape::read(resp).await
                {
                    let took = t.elapsed();
                    let read = |series: &str| {
                        campanile_tests::scrape::sample(&scrape.kept, series).unwrap_or(0.0)
                    };
                    let mut seen = s.lock().unwrap_or_else(|p| p.into_inner());
                    seen.scrapes.push((at, took, scrape.bytes, scrape.series));
                    seen.peak_connections = seen
                        .peak_connections
                        .max(read("campanile_grpc_connections"));
                    seen.handshakes = (
                        read(r#"campanile_tls_handshakes_total{kind="full"}"#),
                        read(r#"campanile_tls_handshakes_total{kind="resumed"}"#),
                    );
                    seen.shed = campanile_tests::scrape::family_sum(&scrape.kept, SHED);
                    seen.histograms.push((
                        at,
                        Histograms {
                            ingest: buckets(&scrape.kept, INGEST_HISTOGRAM),
                            commit: buckets(&scrape.kept, COMMIT_HISTOGRAM),
                        },
                    ));
                }
            }
        }
    };
    let thread = std::thread::Builder::new()
        .name("observer".into())
        .spawn(move || {
            // Below the simulated agents, as a Prometheus server is none of
            // their business: in a territory they run on their own machines,
            // and parsing a 100 MiB exposition here would take CPU from them
            // and count as the collector's latency. (The collector's own
            // readers run at this priority too, see background.rs.)
            campanile_collector::read::background::lower_this_threads_priority();
            runtime.block_on(async move {
                tokio::select! {
                    () = watch => {}
                    () = rss => {}
                    _ = stopped => {}
                }
            });
        })?;
    Ok(Observer {
        seen,
        stop: Some(stop),
        thread: Some(thread),
    })
}

struct Step {
    agents: usize,
    summary: Summary,
    baseline_rss: u64,
    peak_rss: u64,
    /// Scrapes in the measured window: (duration ms, body bytes, series).
    scrapes: Vec<(f64, usize, usize)>,
    /// RSS samples over the run, for the soak.
    rss: Vec<(f64, u64)>,
    peak_connections: f64,
    handshakes: (f64, f64),
    shed: f64,
    /// Collector-side p99 over the measured window, ms: (request handling,
    /// group commit), as bucket upper bounds.
    collector_p99_ms: (Option<f64>, Option<f64>),
    /// Reports over the slow bound sent while the collector was serving a
    /// scrape.
    slow_during_scrape: usize,
    /// CPU used over the measured window, in cores: (collector, this
    /// process with the simulated fleet and the observer).
    cpu_cores: Option<(f64, f64)>,
}

impl Step {
    fn holds(&self) -> bool {
        self.summary.error_count() == 0
            && self.summary.latency.p99_ms < 100.0
            && self.summary.achieved_rate >= 0.98 * self.summary.offered_rate
    }

    fn rss_per_host(&self) -> f64 {
        self.peak_rss.saturating_sub(self.baseline_rss) as f64 / self.agents as f64
    }
}

#[allow(clippy::too_many_arguments)]
async fn step(
    bins: &Binaries,
    pki: &TestPki,
    fleet: &Fleet,
    agents: usize,
    interval: Duration,
    duration: Duration,
    ramp: Duration,
    warmup: Duration,
    idle_timeout_secs: Option<u64>,
    scrape_secs: u64,
) -> Result<Step> {
    let register = pki.path().join(format!("register-{agents}.toml"));
    std::fs::write(
        &register,
        Layout::new(agents, fleet.layout.seed).register_toml(),
    )?;
    let collector = CollectorProcess::start_tuned(
        &bins.collector,
        pki,
        &[(
            "[grpc]",
            idle_timeout_secs.map_or(String::new(), |s| format!("idle_timeout_secs = {s}")),
        )],
        &format!("[territory]\nregister_path = \"{}\"", register.display()),
    )
    .await?;
    let baseline_rss = collector.rss_bytes();
    let started = Instant::now();
    let observer = observe(&collector, started, scrape_secs)?;
    let cfg = RunConfig {
        target: Target {
            addr: collector.grpc,
            server_name: "localhost".into(),
            // Also well below one address's ~28,000 ephemeral ports.
            source_addrs: crate::fleet::connect::loopback_sources(agents),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
        },
        agents,
        interval,
        jitter: Duration::from_secs(5),
        ramp,
        duration,
        warmup,
        seed: fleet.layout.seed,
        reconnect_each_report: false,
        inventory_change_per_million: 1000,
    };
    // The fleet counts time from its own start, the observer from `started`.
    let fleet_offset = started.elapsed().as_secs_f64();
    let summary = fleet::run(fleet, &cfg, true).await?;
    let seen = tokio::task::spawn_blocking(move || observer.finish()).await?;
    let during_scrape = |at: f64| {
        seen.scrapes
            .iter()
            .any(|(from, took, ..)| (*from..*from + took.as_secs_f64()).contains(&at))
    };
    let slow_during_scrape = summary
        .slow_reports
        .iter()
        .filter(|(at, _)| during_scrape(at + fleet_offset))
        .count();
    // Where in the scrape cycle the slow reports fall, for whoever chases
    // the tail (stderr only).
    if let Some((first, ..)) = seen.scrapes.first() {
        let mut by_second = vec![0usize; scrape_secs as usize];
        for (at, _) in &summary.slow_reports {
            let phase = (at + fleet_offset - first).rem_euclid(scrape_secs as f64);
            by_second[(phase as usize).min(scrape_secs as usize - 1)] += 1;
        }
        eprintln!(
            "bench: {agents} agents, slow reports by second after a scrape began: {by_second:?}"
        );
    }
    let measure_from = warmup.as_secs_f64();
    let window = (
        seen.histograms
            .iter()
            .rev()
            .find(|(at, _)| *at < measure_from)
            .map(|(_, h)| h.clone())
            .unwrap_or_default(),
        seen.histograms
            .last()
            .map(|(_, h)| h.clone())
            .unwrap_or_default(),
    );
    let cpu_cores = seen
        .cpu
        .iter()
        .find(|(at, ..)| *at >= measure_from)
        .zip(seen.cpu.last())
        .filter(|(a, b)| b.0 > a.0)
        .map(|(a, b)| ((b.1 - a.1) / (b.0 - a.0), (b.2 - a.2) / (b.0 - a.0)));
    Ok(Step {
        cpu_cores,
        slow_during_scrape,
        collector_p99_ms: (
            quantile_ms(&window.0.ingest, &window.1.ingest, 0.99),
            quantile_ms(&window.0.commit, &window.1.commit, 0.99),
        ),
        agents,
        baseline_rss,
        peak_rss: seen.rss.iter().map(|(_, r)| *r).max().unwrap_or(0),
        scrapes: seen
            .scrapes
            .iter()
            .filter(|(at, ..)| *at >= measure_from)
            .map(|(_, d, b, s)| (d.as_secs_f64() * 1e3, *b, *s))
            .collect(),
        rss: seen.rss,
        peak_connections: seen.peak_connections,
        handshakes: seen.handshakes,
        shed: seen.shed,
        summary,
    })
}

pub async fn run(bins: &Binaries, opts: &Options) -> Result<Vec<Section>> {
    let pki = TestPki::new()?;
    let largest = opts
        .steps
        .iter()
        .copied()
        .chain([opts.soak_agents])
        .max()
        .unwrap_or(0);
    let t = Instant::now();
    let fleet = Fleet::prepare(Layout::new(largest, 3), pki.path())?;
    let issued_secs = t.elapsed().as_secs_f64();
    let interval = Duration::from_secs(opts.interval_secs);
    let ramp = interval * RAMP_INTERVALS;
    let warmup = ramp + Duration::from_secs(10);
    let duration = warmup + Duration::from_secs(opts.measure_secs);

    let mut s = Section::new(
        "Fleet capacity",
        format!(
            "Fleets of {} simulated agents (`fleet-sim`'s engine, in this process), each \
             against a fresh release collector with the generated territory's register: every \
             agent has its own certificate, its own mTLS connection kept open as the real \
             agent keeps it, from a loopback source address shared by 25 agents (a town \
             hall behind its router), a {} s interval with ±5 s jitter, hash-only reports with health \
             and probes (full inventory first and on 0.1 % of reports), and the probe duty the \
             collector hands out. The agents join over the first {} s, each then keeping its \
             interval. `/metrics` is scraped every 15 s throughout. Latency and rate \
             are measured over {} s after a {} s warm-up. A fleet is held when p99 < 100 ms, no \
             request fails and ≥ 98 % of the offered rate is acknowledged. ({} certificates \
             issued in {issued_secs:.0} s.)",
            opts.steps
                .iter()
                .map(|n| format!("{n}"))
                .collect::<Vec<_>>()
                .join(", "),
            opts.interval_secs,
            ramp.as_secs(),
            opts.measure_secs,
            warmup.as_secs(),
            fleet.len(),
        ),
    );
    // One open connection per agent needs one file descriptor per agent in
    // the collector (and in this process): beyond the limit, the collector
    // closes idle connections and agents reconnect at their next report.
    let persistent_max = opts.open_files.saturating_sub(FD_MARGIN) as usize;
    if opts
        .steps
        .iter()
        .chain([&opts.soak_agents])
        .any(|&n| n > persistent_max)
    {
        s.notes.push(format!(
            "This machine allows {} open files per process and the limit could not be raised \
             (no CAP_SYS_RESOURCE here), so fleets above {persistent_max} agents cannot each \
             hold a connection: for those the collector runs with `idle_timeout_secs = \
             {IDLE_TIMEOUT_SECS}`, and each agent reconnects at its next report (resuming its \
             TLS session), marked *idle-closed*. A fleet's achieved rate counts resent reports \
             too, so it can exceed the offered rate when requests failed.",
            opts.open_files
        ));
    }
    let mut held = 0;
    let mut render: Option<(f64, usize, usize)> = None;
    let mut per_host_at_largest = None;
    for &agents in &opts.steps {
        eprintln!("bench: fleet of {agents}");
        let idle = (agents > persistent_max).then_some(IDLE_TIMEOUT_SECS);
        let st = step(
            bins,
            &pki,
            &fleet,
            agents,
            interval,
            duration,
            ramp,
            warmup,
            idle,
            opts.scrape_secs,
        )
        .await?;
        let m = &st.summary;
        let agents_label = if idle.is_some() {
            format!("{agents} agents (idle-closed)")
        } else {
            format!("{agents} agents")
        };
        let ok = st.holds();
        if ok {
            held = held.max(agents);
        }
        s.figures.push(Figure::info(
            format!("{agents_label}: rate achieved / offered"),
            format!("{:.0} / {:.0} reports/s", m.achieved_rate, m.offered_rate),
        ));
        s.figures.push(Figure::info(
            format!("{agents_label}: report p50 / p99 / max"),
            format!(
                "{:.1} / {:.1} / {:.1} ms{}",
                m.latency.p50_ms,
                m.latency.p99_ms,
                m.latency.max_ms,
                if m.error_count() > 0 {
                    format!(", errors {:?}", m.errors)
                } else {
                    String::new()
                }
            ),
        ));
        s.figures.push(Figure::info(
            format!("{agents_label}: connect + TLS handshake p50 / p99 (connections)"),
            format!(
                "{:.1} / {:.1} ms ({})",
                st.summary.connect.p50_ms, st.summary.connect.p99_ms, st.summary.connect.count
            ),
        ));
        s.figures.push(Figure::info(
            format!(
                "{agents_label}: reports over {} ms (sent while a scrape was served)",
                fleet::SLOW_MS
            ),
            format!(
                "{} ({})",
                st.summary.slow_reports.len(),
                st.slow_during_scrape
            ),
        ));
        if let Some((collector, fleet)) = st.cpu_cores {
            s.figures.push(Figure::info(
                format!("{agents_label}: CPU, collector / simulated fleet (cores)"),
                format!("{collector:.2} / {fleet:.2}"),
            ));
        }
        let bound = |ms: Option<f64>| ms.map_or("n/a".to_owned(), |ms| format!("≤ {ms} ms"));
        s.figures.push(Figure::info(
            format!("{agents_label}: collector-side p99, request handling / group commit"),
            format!(
                "{} / {}",
                bound(st.collector_p99_ms.0),
                bound(st.collector_p99_ms.1)
            ),
        ));
        s.figures.push(Figure::info(
            format!("{agents_label}: collector RSS, start → peak"),
            format!(
                "{} → {} ({:.1} KiB per host)",
                mib(st.baseline_rss),
                mib(st.peak_rss),
                st.rss_per_host() / 1024.0
            ),
        ));
        let scrape_ms = median(st.scrapes.iter().map(|x| x.0).collect());
        s.figures.push(Figure::info(
            format!(
                "{agents_label}: connections open (most seen); TLS handshakes; \
                 connections shed (overloaded)"
            ),
            format!(
                "{:.0} open; {:.0} full, {:.0} resumed; {:.0} shed",
                st.peak_connections, st.handshakes.0, st.handshakes.1, st.shed
            ),
        ));
        s.figures.push(Figure::info(
            format!("{agents_label}: `/metrics` scrape (median)"),
            format!(
                "{scrape_ms:.0} ms, {} series, {}",
                st.scrapes.last().map_or(0, |x| x.2),
                mib(st.scrapes.last().map_or(0, |x| x.1) as u64)
            ),
        ));
        if agents == opts.render_at {
            render = Some((
                scrape_ms,
                st.scrapes.last().map_or(0, |x| x.2),
                st.scrapes.len(),
            ));
        }
        per_host_at_largest = Some((agents, st.rss_per_host()));
    }
    s.figures.push(Figure::goal(
        format!("largest fleet held at a {} s interval", opts.interval_secs),
        format!("{held} agents"),
        "≥ 50,000",
        held >= 50_000,
    ));
    if let Some((agents, per_host)) = per_host_at_largest {
        s.figures.push(Figure::goal(
            format!("collector RSS per host at {agents} agents"),
            format!("{:.1} KiB", per_host / 1024.0),
            "≤ 20 KB",
            per_host <= 20_000.0,
        ));
    }
    if let Some((ms, series, n)) = render {
        s.figures.push(Figure::goal(
            format!(
                "`/metrics` at {} hosts, scrape time (median of {n})",
                opts.render_at
            ),
            format!("{ms:.0} ms ({series} series)"),
            "≤ 500 ms",
            ms <= 500.0,
        ));
    }

    let mut sections = vec![s];
    if opts.soak_minutes > 0 {
        eprintln!(
            "bench: soak, {} agents for {} min",
            opts.soak_agents, opts.soak_minutes
        );
        let soak_duration = Duration::from_secs(opts.soak_minutes * 60);
        let st = step(
            bins,
            &pki,
            &fleet,
            opts.soak_agents,
            interval,
            soak_duration,
            // Joining over one interval, as before the ramp, keeps the
            // soak's reference (three intervals in) comparable.
            interval,
            interval + Duration::from_secs(10),
            (opts.soak_agents > persistent_max).then_some(IDLE_TIMEOUT_SECS),
            opts.scrape_secs,
        )
        .await?;
        // Reference: once every host has reported a few times and the
        // first scrapes and alert evaluations have run.
        let settle = (3 * opts.interval_secs) as f64;
        // Peaks against peaks over windows of several scrape-and-decay
        // cycles: RSS swings with every scrape (its body and buffers come
        // and go, and jemalloc hands the pages back over seconds), so one
        // minute's largest against another's counted a swing as growth.
        let peak = |from: f64, to: f64| {
            st.rss
                .iter()
                .filter(|(at, _)| (from..to).contains(at))
                .map(|(_, r)| *r)
                .max()
                .unwrap_or(0)
        };
        let end_secs = soak_duration.as_secs_f64();
        let reference = peak(settle, settle + WINDOW_SECS);
        let end = peak(end_secs - WINDOW_SECS, f64::INFINITY);
        let growth = if reference > 0 {
            (end as f64 - reference as f64) / reference as f64
        } else {
            f64::INFINITY
        };
        let mut soak = Section::new(
            "Soak",
            format!(
                "{} agents for {} minutes against one release collector, set up as above \
                 (scrapes every 15 s, alert evaluation every 15 s), RSS sampled every \
                 second. Growth compares the largest RSS of the last {} minutes with the \
                 largest of the {} minutes from {} s on, once every host has reported \
                 three times.",
                opts.soak_agents,
                opts.soak_minutes,
                WINDOW_SECS / 60.0,
                WINDOW_SECS / 60.0,
                settle
            ),
        );
        soak.figures.push(Figure::goal(
            "collector RSS growth",
            format!(
                "{} → {} = {:+.1} %",
                mib(reference),
                mib(end),
                growth * 100.0
            ),
            "< 5 %",
            growth < 0.05,
        ));
        let m = &st.summary;
        soak.figures.push(Figure::info(
            "reports acknowledged, errors",
            format!("{}, {}", m.reports_acked, m.error_count()),
        ));
        soak.figures.push(Figure::info(
            "report p50 / p99 / max over the soak",
            format!(
                "{:.1} / {:.1} / {:.1} ms",
                m.latency.p50_ms, m.latency.p99_ms, m.latency.max_ms
            ),
        ));
        // The largest RSS of each window of `len` seconds, from the start.
        let maxima = |len: f64| {
            (0..)
                .map(move |n| f64::from(n) * len)
                .take_while(|from| *from < end_secs)
                .map(move |from| (from, peak(from, from + len)))
        };
        let five_minutes = maxima(WINDOW_SECS)
            .map(|(from, rss)| {
                format!(
                    "{:.0}–{:.0} min {}",
                    from / 60.0,
                    (from + WINDOW_SECS).min(end_secs) / 60.0,
                    mib(rss)
                )
            })
            .collect::<Vec<_>>();
        soak.notes.push(format!(
            "Largest RSS of each five minutes: {}.",
            five_minutes.join(", ")
        ));
        let minutes = maxima(60.0)
            .map(|(_, rss)| format!("{:.0}", rss as f64 / (1024.0 * 1024.0)))
            .collect::<Vec<_>>();
        soak.notes.push(format!(
            "Largest RSS of each minute, MiB: {}.",
            minutes.join(", ")
        ));
        sections.push(soak);
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_read_in_chunks_counts_every_series_and_keeps_the_ones_read() {
        let body = "# HELP campanile_grpc_connections Open agent connections.\n\
                    # TYPE campanile_grpc_connections gauge\n\
                    campanile_grpc_connections 42\n\
                    campanile_host_up{host=\"a\"} 1\n\
                    campanile_ingest_duration_seconds_bucket{le=\"0.01\"} 7\n\
                    campanile_ingest_duration_seconds_bucket{le=\"+Inf\"} 9\n\
                    \n\
                    campanile_host_up{host=\"b\"} 0";
        // Every way of cutting the body in two, and one byte at a time.
        for cut in 0..=body.len() {
            let mut lines = Lines::default();
            lines.feed(&body.as_bytes()[..cut]);
            lines.feed(&body.as_bytes()[cut..]);
            let scrape = lines.finish();
            assert_eq!(
                (scrape.bytes, scrape.series),
                (body.len(), 5),
                "cut at {cut}"
            );
            assert_eq!(
                campanile_tests::scrape::sample(&scrape.kept, "campanile_grpc_connections"),
                Some(42.0)
            );
            assert_eq!(
                buckets(&scrape.kept, INGEST_HISTOGRAM),
                vec![(0.01, 7.0), (f64::INFINITY, 9.0)]
            );
            assert!(!scrape.kept.contains("host_up"));
        }
        let mut lines = Lines::default();
        for b in body.as_bytes() {
            lines.feed(std::slice::from_ref(b));
        }
        assert_eq!(lines.finish().series, 5);
    }

    #[test]
    fn quantile_counts_only_what_the_window_observed() {
        let exposition = |fast: u32, slow: u32| {
            format!(
                "# TYPE h histogram\nh_bucket{{le=\"0.01\"}} {fast}\nh_bucket{{le=\"0.1\"}} {}\n\
                 h_bucket{{le=\"+Inf\"}} {}\nh_sum 0\nh_count {}\n",
                fast + slow,
                fast + slow,
                fast + slow
            )
        };
        // Before the window: 50 slow requests (warm-up); in it, 1000 fast.
        let before = buckets(&exposition(0, 50), "h");
        let after = buckets(&exposition(1000, 50), "h");
        assert_eq!(before.len(), 3);
        assert_eq!(quantile_ms(&before, &after, 0.99), Some(10.0));
        // Over the whole run the slow ones are more than 1 %.
        assert_eq!(quantile_ms(&[], &after, 0.99), Some(100.0));
        assert_eq!(quantile_ms(&after, &after, 0.99), None);
    }
}
