//! `fleet-sim`: plays N agents from one process against a real collector
//! over real mTLS gRPC, and prints the achieved rate, the errors and the
//! latency percentiles of the report RPC.
//!
//! ```text
//! fleet-sim register --agents 50000 --out register.toml
//! fleet-sim run --endpoint 127.0.0.1:4317 --pki-dir /etc/campanile/pki \
//!     --agents 50000 --interval-secs 60 --duration-secs 300
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use campanile_bench::fleet::{self, Fleet, Layout, RunConfig, Target};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Simulates a fleet of Campanile agents against a real collector")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the register (comuni, sites, devices, planned assets) of the
    /// generated territory, for the collector's `territory.register_path`.
    Register {
        #[arg(long)]
        agents: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Plays the fleet.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// The collector's gRPC address (loopback only).
    #[arg(long)]
    endpoint: SocketAddr,
    /// Name in the collector's server certificate.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Directory with the territory's `ca.pem` and `ca.key`.
    #[arg(long)]
    pki_dir: PathBuf,
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    #[arg(long, default_value_t = 60)]
    interval_secs: u64,
    #[arg(long, default_value_t = 5)]
    jitter_secs: u64,
    #[arg(long, default_value_t = 180)]
    duration_secs: u64,
    /// First reports spread over this many seconds; default one interval
    /// (a cold start).
    #[arg(long)]
    ramp_secs: Option<u64>,
    /// Latency and rate are measured after this; default one interval.
    #[arg(long)]
    warmup_secs: Option<u64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A new connection and handshake per report instead of one
    /// connection per agent.
    #[arg(long)]
    reconnect: bool,
    /// Spread connections over this many loopback source addresses
    /// (127.0.0.1, 127.0.0.2, ...): one address has ~28,000 ports.
    #[arg(long, default_value_t = 1)]
    source_addrs: u8,
    #[arg(long, default_value_t = 1000)]
    inventory_change_per_million: u32,
    #[arg(long, default_value_t = 10)]
    request_timeout_secs: u64,
    /// Also write the summary as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The allocator of the simulated fleet: see `benchmarks.rs`.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleet-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Register { agents, seed, out } => {
            std::fs::write(&out, Layout::new(agents, seed).register_toml())
                .with_context(|| format!("write {}", out.display()))?;
            Ok(())
        }
        Command::Run(args) => {
            let fds = campanile_tests::procs::raise_open_files_limit()?;
            let per_agent = if args.reconnect {
                0
            } else {
                args.agents as u64
            };
            if per_agent + 256 > fds {
                eprintln!(
                    "fleet-sim: warning: {fds} open files allowed, {per_agent} connections wanted"
                );
            }
            let started = std::time::Instant::now();
            let fleet = Fleet::prepare(Layout::new(args.agents, args.seed), &args.pki_dir)?;
            eprintln!(
                "fleet-sim: {} identities issued in {:.1} s",
                fleet.len(),
                started.elapsed().as_secs_f64()
            );
            let interval = Duration::from_secs(args.interval_secs);
            let cfg = RunConfig {
                target: Target {
                    addr: args.endpoint,
                    server_name: args.server_name,
                    source_addrs: (1..=args.source_addrs.max(1))
                        .map(|n| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
                        .collect(),
                    connect_timeout: Duration::from_secs(10),
                    request_timeout: Duration::from_secs(args.request_timeout_secs),
                },
                agents: args.agents,
                interval,
                jitter: Duration::from_secs(args.jitter_secs),
                ramp: args.ramp_secs.map_or(interval, Duration::from_secs),
                duration: Duration::from_secs(args.duration_secs),
                warmup: args.warmup_secs.map_or(interval, Duration::from_secs),
                seed: args.seed,
                reconnect_each_report: args.reconnect,
                inventory_change_per_million: args.inventory_change_per_million,
            };
            let summary =
                tokio::runtime::Runtime::new()?.block_on(fleet::run(&fleet, &cfg, true))?;
            println!("{}", summary.to_text());
            if let Some(path) = args.json {
                std::fs::write(&path, serde_json::to_vec_pretty(&summary)?)
                    .with_context(|| format!("write {}", path.display()))?;
            }
            Ok(())
        }
    }
}
