//! campanile-agent: parse arguments, load config, run, map errors to an exit code.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use argh::FromArgs;
use campanile_agent::config::{AgentConfig, CollectConfig, ProbeConfig};
use campanile_agent::enroll::cert_facts::CertFacts;
use campanile_proto::enrollment::EnrollmentToken;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Campanile agent: reports host health and inventory.
#[derive(FromArgs)]
struct Cli {
    /// print the version and exit
    #[argh(switch, short = 'V')]
    version: bool,
    #[argh(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Cmd {
    Run(RunArgs),
    Once(OnceArgs),
    CheckConfig(CheckConfigArgs),
    Enroll(EnrollArgs),
}

/// Trade an enrollment token for this machine's certificate: the key is
/// made here and never leaves it.
#[derive(FromArgs)]
#[argh(subcommand, name = "enroll")]
struct EnrollArgs {
    /// the collector's gRPC port, HOST:PORT (default: the config's endpoint)
    #[argh(option)]
    collector: Option<String>,
    /// the token from `campanile-collector enroll new`
    #[argh(option)]
    token: String,
    /// the agent's config file: where the files go, and the collector
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// the host id to ask for (default: made from the hostname and site)
    #[argh(option)]
    host_id: Option<String>,
    /// the name the collector's certificate must carry (default: HOST)
    #[argh(option)]
    server_name: Option<String>,
}

/// Where an unattended install puts the token when not in the config.
const TOKEN_ENV: &str = "CAMPANILE_ENROLL_TOKEN";

/// Collect and deliver reports until stopped.
#[derive(FromArgs)]
#[argh(subcommand, name = "run")]
struct RunArgs {
    /// the agent's config file
    #[argh(option, short = 'c')]
    config: PathBuf,
}

/// Collect once and print the report as JSON; sends nothing.
#[derive(FromArgs)]
#[argh(subcommand, name = "once")]
struct OnceArgs {
    /// use this config's identity and collection settings
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
}

/// Validate a config file (and that its certificate files are readable).
#[derive(FromArgs)]
#[argh(subcommand, name = "check-config")]
struct CheckConfigArgs {
    /// the agent's config file
    #[argh(positional)]
    config: PathBuf,
}

/// The command line, or an exit: 0 after `--help` or `--version`, 2 for a
/// usage error (as the collector's, and most tools').
fn parse_args() -> Result<Cmd, ExitCode> {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let name = "campanile-agent";
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    match Cli::from_args(&[name], &rest) {
        Ok(Cli { version: true, .. }) => {
            println!("{name} {}", env!("CARGO_PKG_VERSION"));
            Err(ExitCode::SUCCESS)
        }
        Ok(Cli { cmd: Some(cmd), .. }) => Ok(cmd),
        Ok(Cli { cmd: None, .. }) => {
            eprintln!("{name}: a command is needed\nRun {name} --help for more information.");
            Err(ExitCode::from(2))
        }
        Err(early) => match early.status {
            Ok(()) => {
                println!("{}", early.output);
                Err(ExitCode::SUCCESS)
            }
            Err(()) => {
                eprintln!("{}\nRun {name} --help for more information.", early.output);
                Err(ExitCode::from(2))
            }
        },
    }
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
    let cmd = match parse_args() {
        Ok(cmd) => cmd,
        Err(code) => return code,
    };
    match run(cmd) {
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

fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::CheckConfig(CheckConfigArgs { config }) => {
            let cfg = AgentConfig::load(&config)?;
            let c = &cfg.collector;
            if !c.cert_path.exists()
                && (cfg.enrollment_token.is_some() || std::env::var_os(TOKEN_ENV).is_some())
            {
                println!(
                    "{}: ok (not enrolled yet: enrolls with its token at the first run; collector {})",
                    config.display(),
                    c.endpoint
                );
                return Ok(());
            }
            for p in [&c.ca_cert_path, &c.cert_path, &c.key_path] {
                std::fs::metadata(p).with_context(|| {
                    format!("{}: cannot read {}", config.display(), p.display())
                })?;
            }
            let facts = CertFacts::read(&c.cert_path)?;
            if let Some(h) = cfg
                .host_id
                .as_ref()
                .filter(|h| **h != facts.identity.host_id)
            {
                anyhow::bail!(
                    "{}: identity.host_id is {h:?} but the certificate is for {:?}",
                    config.display(),
                    facts.identity.host_id
                );
            }
            println!(
                "{}: ok (host {}, collector {})",
                config.display(),
                facts.identity,
                c.endpoint
            );
            Ok(())
        }
        Cmd::Once(OnceArgs { config }) => {
            let (host_id, collect, probes, collector_host) = match config {
                Some(p) => {
                    let cfg = AgentConfig::load(&p)?;
                    let host_id = cfg
                        .host_id
                        .clone()
                        .or_else(|| {
                            CertFacts::read(&cfg.collector.cert_path)
                                .ok()
                                .map(|f| f.identity.host_id)
                        })
                        .unwrap_or_else(|| "unenrolled".to_owned());
                    (host_id, cfg.collect, cfg.probes, cfg.collector.host)
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
        Cmd::Enroll(args) => {
            let token = EnrollmentToken::parse(&args.token)?;
            let config = args.config.as_deref().map(AgentConfig::load).transpose()?;
            let (enrollment, paths) =
                campanile_agent::enrollment_for(campanile_agent::EnrollArgs {
                    collector: args.collector,
                    token,
                    config,
                    host_id: args.host_id,
                    server_name: args.server_name,
                })?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let facts = rt.block_on(campanile_agent::enroll::enroll(&enrollment, &paths))?;
            let days = (facts.not_after_ms - campanile_agent::now_ms() + 43_200_000) / 86_400_000;
            println!(
                "enrolled as {}, certificate valid for {days} days: {} (key {}, CA bundle {})",
                facts.identity,
                paths.cert.display(),
                paths.key.display(),
                paths.ca_cert.display()
            );
            Ok(())
        }
        Cmd::Run(RunArgs { config }) => {
            let cfg = AgentConfig::load(&config)?;
            // One thread: the agent is small and mostly asleep; a single
            // thread keeps its memory low on old PCs and routers.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(async move {
                let shutdown = shutdown_signal();
                tokio::pin!(shutdown);
                if !cfg.collector.cert_path.exists() {
                    let token = match cfg.enrollment_token.clone() {
                        Some(t) => t,
                        None => match std::env::var(TOKEN_ENV) {
                            Ok(t) => EnrollmentToken::parse(&t).context(TOKEN_ENV)?,
                            Err(_) => anyhow::bail!(
                                "no certificate at {}: enroll this agent with `campanile-agent \
                                 enroll --config {} --token TOKEN`, or set the token in \
                                 [enrollment] token or {TOKEN_ENV}",
                                cfg.collector.cert_path.display(),
                                config.display()
                            ),
                        },
                    };
                    let (enrollment, paths) = campanile_agent::enrollment_from(&cfg, token, None);
                    match campanile_agent::enroll::enroll_until_done(
                        &enrollment,
                        &paths,
                        &mut shutdown,
                    )
                    .await?
                    {
                        Some(facts) => {
                            tracing::info!(host = %facts.identity, "enrolled; starting")
                        }
                        None => return Ok(()),
                    }
                }
                let agent = campanile_agent::Agent::new(cfg)?;
                agent.run(shutdown).await;
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
