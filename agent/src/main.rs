//! campanile-agent: parse arguments, load config, run, map errors to an exit code.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use campanile_agent::config::{AgentConfig, CollectConfig, ProbeConfig};
use clap::{Parser, Subcommand};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

#[derive(Parser)]
#[command(
    name = "campanile-agent",
    version,
    about = "Campanile agent: reports host health and inventory"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Collect and deliver reports until stopped.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Collect once and print the report as JSON; sends nothing.
    Once {
        /// Use this config's identity and collection settings (optional).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config file (and that its certificate files are readable).
    CheckConfig { config: PathBuf },
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // `Targets` reads RUST_LOG's `target=level` lists; EnvFilter's span and
    // field matching would link a regex engine into every router's binary.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(Level::INFO));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("campanile-agent: {e:#}");
            if e.downcast_ref::<campanile_agent::config::ConfigError>()
                .is_some()
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::CheckConfig { config } => {
            let cfg = AgentConfig::load(&config)?;
            for p in [
                &cfg.collector.ca_cert_path,
                &cfg.collector.cert_path,
                &cfg.collector.key_path,
            ] {
                std::fs::metadata(p).with_context(|| {
                    format!("{}: cannot read {}", config.display(), p.display())
                })?;
            }
            println!(
                "{}: ok (host {}, collector {})",
                config.display(),
                cfg.host_id,
                cfg.collector.endpoint
            );
            Ok(())
        }
        Cmd::Once { config } => {
            let (host_id, collect, probes, collector_host) = match config {
                Some(p) => {
                    let cfg = AgentConfig::load(&p)?;
                    (cfg.host_id, cfg.collect, cfg.probes, cfg.collector.host)
                }
                // Without a config there is no collector, and no consent to
                // send packets anywhere: probes stay off.
                None => (
                    "unconfigured".to_owned(),
                    CollectConfig::default(),
                    ProbeConfig::disabled(),
                    String::new(),
                ),
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let report = rt.block_on(campanile_agent::collect_once(
                &host_id,
                &collect,
                &probes,
                &collector_host,
            ));
            let json = serde_json::to_string_pretty(&report)?;
            // `once | head` must not panic when the reader goes away.
            match writeln!(std::io::stdout().lock(), "{json}") {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(()),
            }
        }
        Cmd::Run { config } => {
            let cfg = AgentConfig::load(&config)?;
            // One thread: the agent is small and mostly asleep; a single
            // thread keeps its memory low on old PCs and routers.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(async move {
                let agent = campanile_agent::Agent::new(cfg)?;
                agent.run(shutdown_signal()).await;
                Ok(())
            })
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
