//! Campanile collector: verifies agents by their certificates, validates and
//! stores their reports in SQLite, and serves the territory's state as
//! Prometheus metrics.
//!
//! [`start`] runs everything in the current tokio runtime and returns a
//! handle; the binary and the end-to-end tests drive the same code.

pub mod alerts;
pub(crate) mod clock;
pub mod config;
pub mod enroll;
pub mod exposition;
pub mod http;
pub mod ingest;
pub mod pki;
pub mod reach;
pub mod read;
pub(crate) mod reload;
pub mod revocation;
pub mod rollover;
pub mod store;
pub mod telemetry;
pub(crate) mod tls_reload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use campanile_proto::v1::certificates_server::CertificatesServer;
use campanile_proto::v1::enrollment_server::EnrollmentServer;
use campanile_proto::v1::ingest_server::IngestServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;

use campanile_territory::state::Territory;
pub use config::CollectorConfig;
use store::Store;
use telemetry::Telemetry;

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// Configuration the operator must fix: the config file, or a file it
    /// names (the register, the catalog).
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Tls(#[from] ingest::tls::TlsError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Alerts(#[from] alerts::AlertStoreError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{what} server failed: {message}")]
    Serve { what: &'static str, message: String },
}

/// Reports per SQLite transaction at most. Large enough that a burst of
/// agents shares one fsync, small enough that one commit stays short.
pub const GROUP_COMMIT_MAX_REPORTS: usize = 2000;

/// A running collector. Dropping it does not stop it: call [`Running::shutdown`].
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub store: Arc<Store>,
    pub telemetry: Arc<Telemetry>,
    pub territory: Arc<Territory>,
    pub reach: Arc<reach::Reach>,
    pub alerts: Arc<alerts::Alerts>,
    alerts_running: alerts::AlertsRunning,
    shutdown: watch::Sender<bool>,
    grpc: JoinHandle<()>,
    commit_thread: store::commit::CommitterThread,
    http: JoinHandle<std::io::Result<()>>,
    accept: JoinHandle<()>,
    /// Territory watcher, probe planner, WAN prober.
    tasks: Vec<JoinHandle<()>>,
}

/// Opens the store, binds both ports and starts serving.
pub async fn start(cfg: CollectorConfig) -> Result<Running, CollectorError> {
    let telemetry = Arc::new(Telemetry::new());
    let path = cfg.store_path.clone();
    let store = Arc::new(
        tokio::task::spawn_blocking(move || Store::open(&path))
            .await
            .map_err(|e| CollectorError::Serve {
                what: "store",
                message: e.to_string(),
            })??,
    );
    let territory_cfg = cfg.territory.clone();
    let territory = Arc::new(
        tokio::task::spawn_blocking(move || Territory::load(territory_cfg, clock::now_ms()))
            .await
            .map_err(|e| CollectorError::Serve {
                what: "territory",
                message: e.to_string(),
            })?
            .map_err(config::ConfigError::from)?,
    );
    // Read before the port opens: a restart never lets a revoked
    // certificate in, not even for a moment.
    let s = store.clone();
    let (revocations_mark, revoked_serials) =
        tokio::task::spawn_blocking(move || revocation::follow::load(&s))
            .await
            .map_err(|e| CollectorError::Serve {
                what: "revocations",
                message: e.to_string(),
            })??;
    let revoked = revocation::Revoked::new(revoked_serials);
    let tls_inputs = tls_reload::TlsInputs {
        tls: cfg.tls.clone(),
        enrollment: cfg.enrollment.is_some(),
        revoked: revoked.clone(),
    };
    let tls_cfg = ingest::tls::LiveConfig::new(tls_inputs.build()?);

    let (grpc_listener, grpc_addr) = bind(cfg.grpc.listen, cfg.grpc.listen_backlog, "gRPC").await?;
    let (http_listener, http_addr) = bind(cfg.http_listen, HTTP_BACKLOG, "HTTP").await?;

    let (shutdown, rx) = watch::channel(false);
    let (incoming, accept) = ingest::tls::incoming(
        grpc_listener,
        tls_cfg.clone(),
        ingest::tls::Accepting {
            hello_timeout: cfg.grpc.client_hello_timeout,
            handshake_timeout: cfg.grpc.handshake_timeout,
            idle_timeout: cfg.grpc.idle_timeout,
            max_handshakes_in_progress: cfg.grpc.max_handshakes_in_progress,
            max_handshakes_per_source: cfg.grpc.max_handshakes_per_source,
            // Half the handshake's own bound: a connection that waited
            // longer is one its agent is about to give up on.
            slot_wait: cfg.grpc.handshake_timeout / 2,
            admission: ingest::tls::AdmissionLimits {
                max_per_source: cfg.grpc.max_connections_per_source,
                max_total: cfg.grpc.max_unauthenticated_connections,
                known_source_ttl: cfg.grpc.known_source_ttl,
            },
        },
        telemetry.clone(),
        revoked.clone(),
    );
    let reach = Arc::new(reach::Reach::new(cfg.probes.clone()));
    let (committer, commit_thread) = store::commit::Committer::start(
        store.clone(),
        Arc::new(cfg.probes.targets.clone()),
        telemetry.clone(),
        GROUP_COMMIT_MAX_REPORTS,
    );
    let current_signer = Arc::new(pki::CurrentSigner::default());
    let service = IngestServer::new(ingest::service::IngestService::new(
        committer,
        cfg.limits.clone(),
        telemetry.clone(),
        reach.clone(),
        current_signer.clone(),
    ))
    // The limit applies to the decompressed message, so gzip cannot smuggle
    // in more than max_message_bytes.
    .max_decoding_message_size(cfg.grpc.max_message_bytes)
    .accept_compressed(CompressionEncoding::Gzip)
    .send_compressed(CompressionEncoding::Gzip);
    let mut agent_routes = tonic::service::Routes::new(service);
    let mut issuing = None;
    let mut signer = None;
    let enrolling = match cfg.enrollment.clone() {
        Some(e) => {
            let max_connections = e.max_connections;
            let enroller = Arc::new(enroll::Enroller::new(
                e,
                &cfg.tls.ca_cert_path,
                store.clone(),
                current_signer,
                telemetry.enrollments.clone(),
                telemetry.renewals.clone(),
            )?);
            issuing = Some(Arc::new(enroller.issuing(grpc_addr, &cfg.tls.cert_path)));
            signer = Some(enroller.clone());
            agent_routes = agent_routes.add_service(
                CertificatesServer::new(enroll::service::CertificatesService::new(
                    enroller.clone(),
                ))
                .max_decoding_message_size(ENROLL_MAX_MESSAGE_BYTES),
            );
            let service = EnrollmentServer::new(enroll::service::EnrollmentService::new(enroller))
                .max_decoding_message_size(ENROLL_MAX_MESSAGE_BYTES);
            Some(ingest::grpc_server::EnrollingRoutes {
                routes: tonic::service::Routes::new(service).prepare(),
                max_connections,
            })
        }
        None => None,
    };
    let grpc = tokio::spawn(ingest::grpc_server::serve(
        incoming,
        agent_routes.prepare(),
        enrolling,
        ingest::grpc_server::Http2 {
            keepalive_interval: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(20),
            drain_timeout: Duration::from_secs(30),
            max_streams_per_connection: cfg.grpc.max_streams_per_connection,
            request_body_timeout: cfg.grpc.request_body_timeout,
            max_connection_buffer_bytes: cfg.grpc.max_connection_buffer_bytes,
            max_inflight_request_bytes: cfg.grpc.max_inflight_request_bytes,
            max_connections_per_identity: cfg.grpc.max_connections_per_identity,
        },
        telemetry.clone(),
        revoked.clone(),
        rx.clone(),
    ));
    let mut alerts_cfg = cfg.alerts.clone();
    // The default links point at this collector's HTTP side: with port 0
    // (tests) that is known only now.
    if alerts_cfg.external_url == format!("http://{}", cfg.http_listen) {
        alerts_cfg.external_url = format!("http://{http_addr}");
    }
    let sources = alerts::Sources {
        store: store.clone(),
        territory: territory.clone(),
        reach: reach.clone(),
        telemetry: telemetry.clone(),
    };
    let (alerts, resume) = tokio::task::spawn_blocking(move || alerts::Alerts::open(alerts_cfg))
        .await
        .map_err(|e| CollectorError::Serve {
            what: "alerts",
            message: e.to_string(),
        })??;
    let alerts_running = alerts::run(alerts.clone(), resume, sources, rx.clone());
    let background = read::background::Background::start().map_err(|e| CollectorError::Serve {
        what: "background readers",
        message: e.to_string(),
    })?;
    let app = http::router(http::state::HttpState {
        background: background.clone(),
        store: store.clone(),
        telemetry: telemetry.clone(),
        exposition: cfg.exposition.clone(),
        territory: territory.clone(),
        api: Arc::new(cfg.api.clone()),
        reach: reach.clone(),
        alerts: alerts.clone(),
        enrollment: issuing,
    });
    let mut tasks = vec![
        reload::watch(territory.clone(), rx.clone()),
        rollover::gauge::spawn(
            store.clone(),
            telemetry.agent_certificates.clone(),
            rollover::gauge::EVERY,
            rx.clone(),
        ),
        tls_reload::spawn(
            tls_inputs,
            tls_cfg,
            signer,
            cfg.enrollment.as_ref().map(|e| e.ca_key_path.clone()),
            telemetry.clone(),
            tls_reload::EVERY,
            rx.clone(),
        ),
        revocation::follow::spawn(
            store.clone(),
            revoked,
            revocations_mark,
            telemetry.revoked_certificates.clone(),
            revocation::follow::EVERY,
            rx.clone(),
        ),
        reach::planner::spawn(
            reach.clone(),
            background,
            store.clone(),
            territory.clone(),
            rx.clone(),
        ),
    ];
    if cfg.probes.wan.enabled {
        tasks.push(reach::wan_prober::spawn(
            reach.clone(),
            territory.clone(),
            cfg.probes.wan.clone(),
            rx.clone(),
        ));
    }
    let mut http_rx = rx;
    let http = tokio::spawn(async move {
        axum::serve(http_listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_rx.wait_for(|stop| *stop).await;
            })
            .await
    });
    tracing::info!(grpc = %grpc_addr, http = %http_addr, store = %cfg.store_path.display(), "collector started");
    Ok(Running {
        grpc_addr,
        http_addr,
        store,
        telemetry,
        territory,
        reach,
        alerts,
        alerts_running,
        shutdown,
        grpc,
        commit_thread,
        http,
        accept,
        tasks,
    })
}

/// An enrollment request is a token and a CSR: a few hundred bytes (an
/// RSA-4096 CSR under 2 KiB). Anyone may send one, so no more is read.
const ENROLL_MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Scrapers and API clients are few and keep their connections: a modest
/// queue, far below the agents' port.
const HTTP_BACKLOG: u32 = 1024;

/// Binds a listener and reads back its address (port 0 becomes the real port).
async fn bind(
    addr: SocketAddr,
    backlog: u32,
    what: &'static str,
) -> Result<(TcpListener, SocketAddr), CollectorError> {
    let err = |source| CollectorError::Bind { addr, what, source };
    let listener = ingest::listen::bind(addr, backlog).await.map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    Ok((listener, local))
}

impl Running {
    /// Stops accepting, lets in-flight requests (and their commits) finish,
    /// then returns.
    pub async fn shutdown(self) -> Result<(), CollectorError> {
        let _ = self.shutdown.send(true);
        self.accept.abort();
        // The server returns once its in-flight requests are answered; it
        // then drops the service and with it the last committer handle, so
        // the committer drains what is queued and stops.
        let grpc = self.grpc.await;
        // A connection that ignores the shutdown could keep a handle alive:
        // wait a bounded time. Nothing is lost by giving up, since only
        // committed requests were acknowledged; agents resend the rest.
        let commit_thread = self.commit_thread;
        let drained = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::task::spawn_blocking(move || commit_thread.join()),
        )
        .await;
        if drained.is_err() {
            tracing::warn!("committer still busy after 30 s; stopping without it");
        }
        // For the next start to notice a store that lost its hosts.
        self.store.write_census();
        self.alerts_running.stop(&self.alerts).await;
        let http = self.http.await;
        for t in self.tasks {
            let _ = t.await;
        }
        let serve_err = |what, message: String| CollectorError::Serve { what, message };
        grpc.map_err(|e| serve_err("gRPC", e.to_string()))?;
        http.map_err(|e| serve_err("HTTP", e.to_string()))?
            .map_err(|e| serve_err("HTTP", e.to_string()))
    }
}
