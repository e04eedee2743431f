//! campanile-collector: parse arguments, load config, run, map errors to an exit code.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use campanile_collector::{CollectorConfig, pki};
use campanile_proto::identity::HostIdentity;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "campanile-collector",
    version,
    about = "Campanile collector: receives agent reports, serves Prometheus metrics"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the collector.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and exit.
    CheckConfig { config: PathBuf },
    /// Certificates for the collector and its agents.
    #[command(subcommand)]
    Pki(PkiCmd),
}

#[derive(Subcommand)]
enum PkiCmd {
    /// Create a CA and the collector's server certificate in DIR.
    Init {
        #[arg(long)]
        out: PathBuf,
        /// DNS name agents use to reach the collector (repeatable).
        #[arg(long = "name", default_value = "localhost")]
        names: Vec<String>,
        /// IP address agents use to reach the collector (repeatable).
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        #[arg(long, default_value_t = 3650)]
        ca_days: i64,
        #[arg(long, default_value_t = 825)]
        server_days: i64,
    },
    /// Issue an agent certificate carrying its host id and site.
    IssueAgent {
        /// Directory with ca.pem and ca.key (from `pki init`).
        #[arg(long)]
        ca_dir: PathBuf,
        #[arg(long)]
        host_id: String,
        #[arg(long)]
        site: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 825)]
        days: i64,
    },
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("campanile-collector: {e:#}");
            if e.downcast_ref::<campanile_collector::config::ConfigError>()
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
            CollectorConfig::load(&config)?;
            println!("{}: ok", config.display());
            Ok(())
        }
        Cmd::Run { config } => {
            let cfg = CollectorConfig::load(&config)?;
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(async move {
                let running = campanile_collector::start(cfg).await?;
                shutdown_signal().await;
                tracing::info!("shutting down: finishing in-flight requests");
                running.shutdown().await?;
                Ok(())
            })
        }
        Cmd::Pki(PkiCmd::Init {
            out,
            names,
            ips,
            ca_days,
            server_days,
        }) => {
            let o = pki::init(&out, &names, &ips, ca_days, server_days)?;
            println!("CA certificate:     {}", o.ca_cert.display());
            println!("server certificate: {}", o.server_cert.display());
            println!("server key:         {}", o.server_key.display());
            Ok(())
        }
        Cmd::Pki(PkiCmd::IssueAgent {
            ca_dir,
            host_id,
            site,
            out,
            days,
        }) => {
            let identity = HostIdentity::new(&host_id, &site)?;
            let ca = pki::Ca::load(&ca_dir)?;
            let issued = ca.issue_agent(&identity, days)?;
            let (cert, key) = pki::write_issued(&out, "agent", &issued)?;
            pki::write_file(&out.join("ca.pem"), ca.cert_pem.as_bytes(), 0o644)?;
            println!("agent certificate for {identity}: {}", cert.display());
            println!("agent key: {}", key.display());
            println!("copy {} together with ca.pem to the agent", out.display());
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
