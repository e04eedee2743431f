//! campanile-collector: parse arguments, load config, run, map errors to an exit code.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use campanile_collector::config::ConfigError;
use campanile_collector::enroll::admin::{self, AdminError, NewTokenArgs};
use campanile_collector::http::token::NewToken;
use campanile_collector::revocation::{self, admin::Target};
use campanile_collector::store::certificates::AdminStore;
use campanile_collector::{CollectorConfig, CollectorError, pki, rollover};
use campanile_proto::identity::HostIdentity;
use campanile_territory::import;
use campanile_territory::register::Register;
use campanile_territory::state::Territory;
use clap::{Parser, Subcommand};

/// Thousands of short-lived connections and the large, short-lived buffers of
/// each snapshot and scrape fragment glibc's per-thread arenas, which keep
/// what they freed: jemalloc returns it (measured at 50,000 agents in
/// docs/benchmarks/make-bench.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at its start (`_RJEM_MALLOC_CONF` in the
/// environment still overrides them). `background_thread`: freed pages go
/// back to the system on a timer. Without it an arena purges only when it
/// allocates again, so what a scrape freed (tens of MiB at 10,000 hosts,
/// every 15 s, spread over the reader threads' arenas) stayed resident
/// until the next scrape landed on that arena. With it, the soak's settled
/// RSS at 10,000 agents was 508 MiB instead of 546 (docs/benchmarks/make-bench.md, soak).
#[cfg(not(target_env = "msvc"))]
// SAFETY: jemalloc declares `const char *malloc_conf` weak (prefixed
// `_rjem_` as tikv-jemalloc-sys builds it) and reads it once, before the
// first allocation; this strong definition replaces it. A `&[u8; N]` is a
// thin pointer to a NUL-terminated string that lives for the whole program
// and is never written: what that C declaration expects.
#[allow(unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 23] = b"background_thread:true\0";

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
    /// Check and build the territory register.
    #[command(subcommand)]
    Register(RegisterCmd),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Enrollment tokens: one token installs agents at one site.
    #[command(subcommand)]
    Enroll(EnrollCmd),
}

#[derive(Subcommand)]
enum EnrollCmd {
    /// Make a token for a site of the register; prints it once, with the
    /// commands that install an agent with it.
    New {
        #[arg(long, short)]
        config: PathBuf,
        /// The site (of the register) its agents belong to.
        #[arg(long)]
        site: String,
        /// Agents that may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it stays valid: 90s, 30m, 12h, 7d (at most 90d).
        #[arg(long, default_value = "7d")]
        expires_in: String,
        /// What it is for, shown by `enroll list`.
        #[arg(long, default_value = "")]
        name: String,
        /// Enrolling a host id that holds a valid certificate replaces
        /// that certificate (revoking it) instead of being refused.
        #[arg(long)]
        replace: bool,
        /// Where agents reach the gRPC port (default:
        /// enrollment.advertised_endpoint, else grpc.listen_addr).
        #[arg(long)]
        collector: Option<String>,
    },
    /// Every token, with its uses left, expiry and state.
    List {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// End a token at once.
    Revoke {
        #[arg(long, short)]
        config: PathBuf,
        /// The token's id (its second part, as `enroll list` shows it).
        id: String,
    },
}

#[derive(Subcommand)]
enum RegisterCmd {
    /// Validate a register file and print what it holds.
    Check { register: PathBuf },
    /// Write a register (TOML, on stdout) from other sources.
    #[command(subcommand)]
    Import(ImportCmd),
}

#[derive(Subcommand)]
enum ImportCmd {
    /// A plain CSV, one row per asset: istat_code, comune, province,
    /// site_id, site_name, site_kind, role, hostname, serial, mac, name.
    Csv { file: PathBuf },
    /// ISTAT's list of comuni (Elenco-comuni-italiani.csv).
    Istat {
        file: PathBuf,
        /// Keep only these provinces (two-letter code, repeatable).
        #[arg(long = "province")]
        provinces: Vec<String>,
    },
    /// A GLPI computer export (CSV); entities name comuni of --comuni.
    Glpi {
        file: PathBuf,
        /// A register whose comuni (and sites) the export refers to.
        #[arg(long)]
        comuni: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Make a new random API token; prints it once, with its config entry.
    New {
        #[arg(long)]
        name: String,
    },
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
    /// Revoke a host's certificates, or one certificate by serial; the
    /// running collector refuses them and closes their connections within
    /// a second.
    Revoke {
        #[arg(long, short)]
        config: PathBuf,
        /// Every valid certificate the collector signed for this host id.
        #[arg(long, required_unless_present = "serial", conflicts_with = "serial")]
        host: Option<String>,
        /// One certificate, as `openssl x509 -serial -noout` prints it
        /// (also one issued by hand).
        #[arg(long)]
        serial: Option<String>,
        /// Why, kept with the revocation.
        #[arg(long, default_value = "revoked by the operator")]
        reason: String,
    },
    /// Renew the collector's server certificate (same names, same key),
    /// signed by the CA of --ca-key; a running collector reloads it
    /// within seconds, without a restart.
    RenewServer {
        #[arg(long, short)]
        config: PathBuf,
        /// The CA's key (default: enrollment.ca_key_path).
        #[arg(long)]
        ca_key: Option<PathBuf>,
        #[arg(long, default_value_t = 825)]
        days: i64,
    },
    /// Start a CA rollover: a new CA, trusted beside the old one and
    /// signing from now on; agents move to it as they renew (asked at
    /// their next report).
    RotateCa {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, default_value_t = 3650)]
        days: i64,
    },
    /// End the rollover: once no agent holds a certificate of the old CA,
    /// the server certificate moves to the new one and the old CA is no
    /// longer trusted. Refused while agents still depend on it.
    RetireCa {
        #[arg(long, short)]
        config: PathBuf,
        /// The new server certificate's lifetime.
        #[arg(long, default_value_t = 825)]
        server_days: i64,
    },
    /// Write the revocations as a standard CRL signed by the CA, for
    /// other tools (the collector itself reads the store).
    Crl {
        #[arg(long, short)]
        config: PathBuf,
        /// The CA's key (default: enrollment.ca_key_path).
        #[arg(long)]
        ca_key: Option<PathBuf>,
        /// Where to write it (PEM; replaced whole); default: stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Days until its next update: make a new one before then.
        #[arg(long, default_value_t = 7)]
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
            if is_config_error(&e) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Input the operator must fix (exit 2), as opposed to a failure at run
/// time (exit 1). Every refusal of configuration is a [`ConfigError`]: of
/// the config file, or of a file it names (register, catalog), which the
/// running collector carries as [`CollectorError::Config`].
fn is_config_error(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ConfigError>().is_some()
        || matches!(
            e.downcast_ref::<CollectorError>(),
            Some(CollectorError::Config(_))
        )
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::CheckConfig { config } => {
            let cfg = CollectorConfig::load(&config)?;
            // The signing CA must load now, not at the first enrollment.
            let enrollment = match &cfg.enrollment {
                Some(e) => {
                    let ca = pki::Ca::load_signer(&cfg.tls.ca_cert_path, &e.ca_key_path).map_err(
                        |err| {
                            ConfigError::invalid(&config, "enrollment.ca_key_path", err.to_string())
                        },
                    )?;
                    format!(
                        "; enrollment on, signing CA sha256:{}",
                        campanile_proto::hex(&ca.sha256()?)
                    )
                }
                None => String::new(),
            };
            let t = Territory::load(cfg.territory, 0).map_err(ConfigError::from)?;
            println!(
                "{}: ok (register: {}{enrollment})",
                config.display(),
                t.current().register.summary()
            );
            Ok(())
        }
        Cmd::Register(RegisterCmd::Check { register }) => {
            let r = Register::load(&register).map_err(ConfigError::from)?;
            println!("{}: ok ({})", register.display(), r.summary());
            Ok(())
        }
        Cmd::Register(RegisterCmd::Import(cmd)) => {
            let (file, source) = match cmd {
                ImportCmd::Csv { file } => (import::from_csv(&file)?, file),
                ImportCmd::Istat { file, provinces } => {
                    (import::from_istat(&file, &provinces)?, file)
                }
                ImportCmd::Glpi { file, comuni } => {
                    let known = Register::load(&comuni).map_err(ConfigError::from)?;
                    (import::from_glpi(&file, &known)?, file)
                }
            };
            let header = format!(
                "# Campanile territory register, imported from {}.\n\
                 # Check it with `campanile-collector register check`.\n\n",
                source.display()
            );
            print!("{}", file.to_toml(&header)?);
            Ok(())
        }
        Cmd::Token(TokenCmd::New { name }) => {
            let t = NewToken::generate()?;
            println!("token (shown once; give it to the client): {}", t.token);
            println!();
            println!("add to the collector config:");
            print!("{}", t.config_entry(&name, "read"));
            Ok(())
        }
        Cmd::Enroll(cmd) => run_enroll(cmd),
        Cmd::Pki(PkiCmd::RotateCa { config, days }) => {
            let cfg = CollectorConfig::load(&config)?;
            let enrollment = cfg.enrollment.as_ref().ok_or(AdminError::Disabled)?;
            let r = rollover::rotate(
                &cfg.tls.ca_cert_path,
                &enrollment.ca_key_path,
                days,
                time::OffsetDateTime::now_utc(),
            )?;
            println!(
                "new CA {:?} sha256:{}\n  trusted beside the old CA sha256:{} (its key kept in {})\n  \
                 signing agents' certificates from now on; agents renew at their next report\n\
                 follow campanile_agent_certificates{{ca}}, then run `pki retire-ca`",
                r.new_name,
                campanile_proto::hex(&r.new_sha256),
                campanile_proto::hex(&r.old_sha256),
                r.old_key.display()
            );
            Ok(())
        }
        Cmd::Pki(PkiCmd::RetireCa {
            config,
            server_days,
        }) => {
            let cfg = CollectorConfig::load(&config)?;
            let enrollment = cfg.enrollment.as_ref().ok_or(AdminError::Disabled)?;
            let store = AdminStore::open(&cfg.store_path)?;
            let r = rollover::retire(
                &store,
                &cfg.tls.ca_cert_path,
                &enrollment.ca_key_path,
                &cfg.tls.cert_path,
                &cfg.tls.key_path,
                server_days,
                now_ms(),
            )?;
            let retired: Vec<String> = r
                .retired
                .iter()
                .map(|s| format!("sha256:{}", campanile_proto::hex(s)))
                .collect();
            println!(
                "retired {}; the server certificate is signed by the new CA until {}\n\
                 enrollment tokens made before now pin the old CA: make new ones",
                retired.join(", "),
                r.server_not_after.date()
            );
            Ok(())
        }
        Cmd::Pki(PkiCmd::RenewServer {
            config,
            ca_key,
            days,
        }) => {
            let cfg = CollectorConfig::load(&config)?;
            if ca_key.is_none() && rollover::in_progress(&cfg.tls.ca_cert_path)? {
                anyhow::bail!(
                    "a CA rollover is under way: the server certificate moves to the new CA with \
                     `pki retire-ca`; to renew it under its own CA now, give that CA's key with \
                     --ca-key (rotate-ca kept it as ca-<fingerprint>.key)"
                );
            }
            let ca = signing_ca(&cfg, ca_key)?;
            let renewed = ca.renew_server(&cfg.tls.cert_path, &cfg.tls.key_path, days)?;
            let mut names = renewed.names.clone();
            names.extend(renewed.ips.iter().map(ToString::to_string));
            println!(
                "server certificate for {} renewed until {}: {}; a running collector reloads it \
                 within 10 s (or at once on SIGHUP)",
                names.join(", "),
                renewed.not_after.date(),
                cfg.tls.cert_path.display()
            );
            Ok(())
        }
        Cmd::Pki(PkiCmd::Crl {
            config,
            ca_key,
            out,
            days,
        }) => {
            let cfg = CollectorConfig::load(&config)?;
            anyhow::ensure!((1..=366).contains(&days), "--days must be 1 to 366");
            let ca = signing_ca(&cfg, ca_key)?;
            let rows = AdminStore::open(&cfg.store_path)?.revocations_in_force(now_ms())?;
            let pem = revocation::crl::build(
                &ca,
                &rows,
                time::OffsetDateTime::now_utc(),
                time::Duration::days(days),
            )?;
            match out {
                Some(path) => {
                    revocation::crl::write(&path, &pem)?;
                    println!(
                        "CRL of {} revocation(s), next update in {days} day(s): {}",
                        rows.len(),
                        path.display()
                    );
                }
                None => print!("{pem}"),
            }
            Ok(())
        }
        Cmd::Pki(PkiCmd::Revoke {
            config,
            host,
            serial,
            reason,
        }) => {
            let cfg = CollectorConfig::load(&config)?;
            let mut store = AdminStore::open(&cfg.store_path)?;
            let target = match (host, serial) {
                (Some(h), _) => Target::Host(h),
                (None, Some(s)) => Target::Serial(s),
                (None, None) => unreachable!("clap requires one"),
            };
            let serials = revocation::admin::revoke(&mut store, &target, &reason, now_ms())?;
            println!(
                "revoked {} certificate(s): {}; a running collector refuses them within a second",
                serials.len(),
                serials.join(", ")
            );
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

/// The CA of `ca_key` (default: `enrollment.ca_key_path`), found in the
/// trusted bundle.
fn signing_ca(cfg: &CollectorConfig, ca_key: Option<PathBuf>) -> anyhow::Result<pki::Ca> {
    let key = ca_key
        .or_else(|| cfg.enrollment.as_ref().map(|e| e.ca_key_path.clone()))
        .context("no CA key: give --ca-key, or set enrollment.ca_key_path")?;
    Ok(pki::Ca::load_signer(&cfg.tls.ca_cert_path, &key)?)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn run_enroll(cmd: EnrollCmd) -> anyhow::Result<()> {
    let now_ms = now_ms();
    match cmd {
        EnrollCmd::New {
            config,
            site,
            uses,
            expires_in,
            name,
            replace,
            collector,
        } => {
            let cfg = CollectorConfig::load(&config)?;
            let enrollment = cfg.enrollment.as_ref().ok_or(AdminError::Disabled)?;
            let register = match &cfg.territory.register_path {
                Some(p) => Some((Register::load(p).map_err(ConfigError::from)?, p.clone())),
                None => None,
            };
            let spec = NewTokenArgs {
                site: &site,
                uses,
                expires_in: &expires_in,
                name: &name,
                may_replace: replace,
            }
            .validated(register.as_ref().map(|(r, p)| (r, p.as_path())))?;
            // The signing key must load; the token pins the CA of the
            // server certificate (they differ during a CA rollover).
            pki::Ca::load_signer(&cfg.tls.ca_cert_path, &enrollment.ca_key_path)?;
            let pin = rollover::server_ca_sha256(&cfg.tls.ca_cert_path, &cfg.tls.cert_path)?;
            let store = AdminStore::open(&cfg.store_path)?;
            let (token, row) = admin::create_token(&store, &spec, pin, now_ms)?;
            let endpoint = collector
                .or_else(|| enrollment.advertised_endpoint.clone())
                .unwrap_or_else(|| cfg.grpc.listen.to_string());
            println!(
                "enrollment token {} for site {} ({} use(s), expires {}); shown once:\n\n  {token}\n",
                row.id,
                row.site,
                row.uses_total,
                admin::utc_minutes(row.expires_ms),
            );
            for (platform, command) in admin::install_commands(&endpoint, &token) {
                println!("install on {platform}:\n  {command}\n");
            }
            Ok(())
        }
        EnrollCmd::List { config } => {
            let cfg = CollectorConfig::load(&config)?;
            let store = AdminStore::open(&cfg.store_path)?;
            print!("{}", admin::list_table(&store.enrollment_tokens()?, now_ms));
            Ok(())
        }
        EnrollCmd::Revoke { config, id } => {
            let cfg = CollectorConfig::load(&config)?;
            let store = AdminStore::open(&cfg.store_path)?;
            admin::revoke_token(&store, &id, now_ms)?;
            println!("enrollment token {id} revoked: it enrolls no more agents");
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
