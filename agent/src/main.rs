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
    Configure(ConfigureArgs),
    #[cfg(windows)]
    Service(ServiceArgs),
}

/// Install, remove or run the agent as a Windows service.
#[cfg(windows)]
#[derive(FromArgs)]
#[argh(subcommand, name = "service")]
struct ServiceArgs {
    #[argh(subcommand)]
    cmd: ServiceCmd,
}

#[cfg(windows)]
#[derive(FromArgs)]
#[argh(subcommand)]
enum ServiceCmd {
    Install(ServiceInstallArgs),
    Uninstall(ServiceUninstallArgs),
    Run(ServiceRunArgs),
}

/// Register the service (automatic start, LocalSystem) running this
/// executable with the config given.
#[cfg(windows)]
#[derive(FromArgs)]
#[argh(subcommand, name = "install")]
struct ServiceInstallArgs {
    /// the agent's config file (default: %ProgramData%\Campanile\agent.toml)
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
}

/// Stop the service and remove it.
#[cfg(windows)]
#[derive(FromArgs)]
#[argh(subcommand, name = "uninstall")]
struct ServiceUninstallArgs {}

/// Run under the Service Control Manager (the service's own command).
#[cfg(windows)]
#[derive(FromArgs)]
#[argh(subcommand, name = "run")]
struct ServiceRunArgs {
    /// the agent's config file
    #[argh(option, short = 'c')]
    config: PathBuf,
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

/// Write a config for a collector and an enrollment token, unless one is
/// there already (what an unattended install runs).
#[derive(FromArgs)]
#[argh(subcommand, name = "configure")]
struct ConfigureArgs {
    /// the collector's gRPC port, HOST:PORT
    #[argh(option)]
    collector: String,
    /// an enrollment token from `campanile-collector enroll new`
    #[argh(option)]
    token: Option<String>,
    /// where to write it (default: agent.toml in the state directory)
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
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
    let cmd = match parse_args() {
        Ok(cmd) => cmd,
        Err(code) => return code,
    };
    // A service has no console: it logs to a file a day under
    // %ProgramData%\Campanile\logs, the last week kept.
    #[cfg(windows)]
    if let Cmd::Service(ServiceArgs {
        cmd: ServiceCmd::Run(_),
    }) = &cmd
    {
        let logs = campanile_agent::config::state_dir().join("logs");
        let appender = tracing_appender::rolling::Builder::new()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix("agent")
            .filename_suffix("log")
            .max_log_files(7)
            .build(&logs);
        match appender {
            Ok(file) => tracing_subscriber::registry()
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(false)
                        .with_writer(file),
                )
                .with(filter)
                .init(),
            Err(e) => {
                eprintln!("campanile-agent: cannot log to {}: {e}", logs.display());
                return ExitCode::FAILURE;
            }
        }
        let result = run(cmd);
        if let Err(e) = &result {
            tracing::error!(error = %format!("{e:#}"), "the service failed");
        }
        return exit_code(result);
    }
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
    exit_code(run(cmd))
}

fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
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
        Cmd::Configure(ConfigureArgs {
            collector,
            token,
            config,
        }) => {
            let path =
                config.unwrap_or_else(|| campanile_agent::config::state_dir().join("agent.toml"));
            match campanile_agent::configure::write_if_missing(&path, &collector, token.as_deref())?
            {
                campanile_agent::configure::Outcome::Written(p) => {
                    println!("{}: written (collector {collector})", p.display())
                }
                campanile_agent::configure::Outcome::Kept(p) => {
                    println!("{}: already there, kept as it is", p.display())
                }
            }
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
            rt.block_on(run_agent(cfg, &config, shutdown_signal()))
        }
        #[cfg(windows)]
        Cmd::Service(ServiceArgs { cmd }) => match cmd {
            ServiceCmd::Install(ServiceInstallArgs { config }) => {
                let exe = std::env::current_exe().context("locating this executable")?;
                let config = config
                    .unwrap_or_else(|| campanile_agent::config::state_dir().join("agent.toml"));
                campanile_agent::service::install(&exe, &config)?;
                println!(
                    "service {} installed: {} service run --config {}",
                    campanile_agent::service::SERVICE_NAME,
                    exe.display(),
                    config.display()
                );
                Ok(())
            }
            ServiceCmd::Uninstall(ServiceUninstallArgs {}) => {
                campanile_agent::service::uninstall()?;
                println!("service {} removed", campanile_agent::service::SERVICE_NAME);
                Ok(())
            }
            ServiceCmd::Run(ServiceRunArgs { config }) => {
                campanile_agent::service::run(move |shutdown| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("starting the async runtime: {e}"))?;
                    rt.block_on(async move {
                        tokio::pin!(shutdown);
                        let Some(cfg) = wait_until_configured(&config, &mut shutdown).await else {
                            return Ok(());
                        };
                        run_agent(cfg, &config, shutdown).await
                    })
                    .map_err(|e| format!("{e:#}"))
                })?;
                Ok(())
            }
        },
    }
}

/// A service installed before it was configured (an MSI without
/// COLLECTOR) waits for a config it can start from, and says once what is
/// missing, rather than failing until the SCM gives up on it. `None` when
/// stopped meanwhile.
#[cfg(windows)]
async fn wait_until_configured(
    config: &std::path::Path,
    shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
) -> Option<AgentConfig> {
    let mut said = String::new();
    loop {
        let missing = match AgentConfig::load(config) {
            Ok(cfg)
                if cfg.collector.cert_path.exists()
                    || cfg.enrollment_token.is_some()
                    || std::env::var_os(TOKEN_ENV).is_some() =>
            {
                return Some(cfg);
            }
            Ok(cfg) => format!(
                "no certificate at {} and no enrollment token in {}",
                cfg.collector.cert_path.display(),
                config.display()
            ),
            Err(e) => e.to_string(),
        };
        if missing != said {
            tracing::warn!(
                missing = %missing,
                "waiting for a configuration: run `campanile-agent configure --collector HOST:PORT --token TOKEN`"
            );
            said = missing;
        }
        tokio::select! {
            _ = &mut *shutdown => return None,
            _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
        }
    }
}

/// `run`, from a console or as a service: enroll first if there is no
/// certificate yet, then report until `shutdown`.
async fn run_agent(
    cfg: AgentConfig,
    config: &std::path::Path,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
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
        match campanile_agent::enroll::enroll_until_done(&enrollment, &paths, &mut shutdown).await?
        {
            Some(facts) => tracing::info!(host = %facts.identity, "enrolled; starting"),
            None => return Ok(()),
        }
    }
    let agent = campanile_agent::Agent::new(cfg)?;
    agent.run(shutdown).await;
    Ok(())
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
