//! mTLS for the gRPC port: a rustls server that requires a client
//! certificate signed by the configured CA, and an accept loop that hands
//! the gRPC server (`grpc_server`) only connections whose handshake
//! succeeded, each carrying the identity read from its verified certificate.
//!
//! We use our own acceptor rather than tonic's built-in TLS because that one
//! takes one client CA and no CRL, and because handshakes must run off the
//! accept loop: a peer that stalls mid-handshake must not stop others.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use campanile_proto::identity::HostIdentity;
use rustls::server::WebPkiClientVerifier;
use rustls::{HandshakeKind, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::telemetry::Telemetry;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    Pem {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Builds the server config: our certificate, client certificates required
/// and verified against `ca_cert_path`.
/// `session_resumption`: TLS 1.3 resumption with stateless tickets. The
/// session (the client chain with it) travels encrypted in the ticket under
/// a key only this process holds, rotated every 6 hours, so a reconnect costs
/// one key exchange instead of two signatures and a chain verification, and
/// the collector keeps nothing per agent. A server-side cache would hold a
/// session per agent and rustls searches it linearly on every resumption:
/// at 50,000 agents that search alone took 6 % of the collector's CPU.
pub fn server_config(
    ca_cert_path: &Path,
    cert_path: &Path,
    key_path: &Path,
    session_resumption: bool,
) -> Result<rustls::ServerConfig, TlsError> {
    let mut provider = rustls::crypto::ring::default_provider();
    // AES-128-GCM with SHA-256 first, whatever the client prefers (rustls
    // clients, the agent among them, offer AES-256-GCM with SHA-384 first).
    // Both are TLS 1.3's own suites; the difference is the hash every
    // handshake runs its key schedule and transcript through: SHA-256 has
    // instructions on the CPUs the collector runs on (SHA-NI, ARMv8), SHA-384
    // does not. At 50,000 agents reconnecting once a minute the SHA-384 key
    // schedule alone took 3.5 % of a client's CPU.
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    let provider = Arc::new(provider);
    let mut roots = RootCertStore::empty();
    for ca in load_certs(ca_cert_path)? {
        roots.add(ca).map_err(|e| TlsError::Pem {
            path: ca_cert_path.to_owned(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?;
    let certs = load_certs(cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::Pem {
        path: key_path.to_owned(),
        message: format!("no usable private key: {e}"),
    })?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(format!("server certificate/key: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    cfg.ignore_client_order = true;
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    if session_resumption {
        cfg.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| TlsError::Config(format!("session ticket keys: {e}")))?;
        // Each resumption hands out a fresh ticket: one is enough.
        cfg.send_tls13_tickets = 1;
    } else {
        cfg.send_tls13_tickets = 0;
    }
    Ok(cfg)
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::Pem {
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("no certificate found".into()));
    }
    Ok(certs)
}

/// What `grpc_server` attaches to every request of a connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub remote_addr: SocketAddr,
    /// The identity from the verified client certificate, or why the
    /// certificate (signed by our CA) does not carry a usable one.
    pub identity: Result<HostIdentity, String>,
    /// When that certificate expires (Unix ms), for the expiry alert.
    pub cert_not_after_ms: Option<i64>,
}

/// A TLS connection whose handshake completed.
pub struct AuthenticatedStream {
    inner: TlsStream<TcpStream>,
    info: PeerInfo,
    idle: Option<IdleTimer>,
    in_flight: InFlight,
    /// Counts the connection in `campanile_grpc_connections` while it lives.
    _open: Counted,
}

/// Ends a connection nothing has crossed for `timeout` while no request was
/// in flight: reads then see end of stream, and hyper closes the connection.
/// The agent, idle by then, sees the close and reconnects at its next
/// report. A request waiting for its commit moves no bytes, yet the
/// connection is not idle: closing it would throw away the agent's
/// handshake and request, and under load (when commits are slow) make more
/// of both. The timer is re-armed only when it fires, so traffic costs a
/// clock read, not a timer update.
struct IdleTimer {
    timeout: Duration,
    last_activity: Instant,
    in_flight: InFlight,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

/// The requests of one connection that have not been answered yet: the
/// gRPC server holds an [`InFlightRequest`] for each.
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Counts one request until the returned guard is dropped.
    pub fn begin(&self) -> InFlightRequest {
        self.0.fetch_add(1, Ordering::Relaxed);
        InFlightRequest(self.0.clone())
    }

    fn any(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }
}

/// One request being served; see [`InFlight::begin`].
#[derive(Debug)]
pub struct InFlightRequest(Arc<AtomicUsize>);

impl Drop for InFlightRequest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl IdleTimer {
    fn new(timeout: Duration, in_flight: InFlight) -> Self {
        let now = Instant::now();
        Self {
            timeout,
            last_activity: now,
            in_flight,
            sleep: Box::pin(tokio::time::sleep_until(now + timeout)),
        }
    }

    fn touch(&mut self) {
        self.last_activity = Instant::now();
    }

    /// Ready once the connection has been idle for the timeout.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            if self.in_flight.any() {
                // Counted from the answer on (its bytes touch the timer).
                self.last_activity = now;
            }
            let due = self.last_activity + self.timeout;
            if due <= now {
                return Poll::Ready(());
            }
            self.sleep.as_mut().reset(due);
        }
    }
}

/// Counts what it stands for in a gauge while it lives.
struct Counted(prometheus::IntGauge);

impl Counted {
    fn new(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl AuthenticatedStream {
    pub fn peer(&self) -> &PeerInfo {
        &self.info
    }

    /// The connection's unanswered requests, which keep it from being
    /// closed as idle.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.clone()
    }
}

impl AsyncRead for AuthenticatedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before
                    && let Some(idle) = &mut this.idle
                {
                    idle.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let expired = this
                    .idle
                    .as_mut()
                    .is_some_and(|idle| idle.poll_expired(cx).is_ready());
                if expired {
                    // Nothing read into `buf`: hyper takes it as end of stream.
                    tracing::debug!(peer = %this.info.remote_addr, "closing an idle agent connection");
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl AuthenticatedStream {
    fn wrote(&mut self, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let (Poll::Ready(Ok(n)), Some(idle)) = (&r, &mut self.idle)
            && *n > 0
        {
            idle.touch();
        }
        r
    }
}

impl AsyncWrite for AuthenticatedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(r)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(r)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Reads the host identity and the expiry time from the leaf certificate
/// rustls verified.
pub fn identity_from_cert(der: &CertificateDer<'_>) -> (Result<HostIdentity, String>, Option<i64>) {
    match x509_parser::parse_x509_certificate(der.as_ref()) {
        Ok((_, cert)) => {
            let not_after = cert.validity().not_after.timestamp().saturating_mul(1000);
            (identity_of(&cert), Some(not_after))
        }
        Err(e) => (Err(format!("unparsable certificate: {e}")), None),
    }
}

fn identity_of(
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<HostIdentity, String> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("bad subjectAltName: {e}"))?
        .ok_or("certificate has no subjectAltName")?;
    let uris = san.value.general_names.iter().filter_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(u) => Some(*u),
        _ => None,
    });
    HostIdentity::from_san_uris(uris).map_err(|e| e.to_string())
}

/// How the accept loop takes connections.
#[derive(Debug, Clone, Copy)]
pub struct Accepting {
    /// A peer that has not finished its handshake by then is dropped.
    pub handshake_timeout: Duration,
    /// See [`IdleTimer`]; `None` keeps connections open.
    pub idle_timeout: Option<Duration>,
    /// Handshakes run at once; a connection beyond them waits its turn.
    pub max_handshakes_in_progress: usize,
    /// How long a connection waits for its turn before it is closed.
    pub slot_wait: Duration,
}

/// Accepts TCP connections and completes TLS handshakes concurrently, each
/// bounded by `handshake_timeout`; yields only authenticated streams. The
/// returned task handle ends the accept loop when aborted.
///
/// Handshakes are what an overloaded collector spends its CPU on: every
/// agent that reconnects at once after a restart, or every report of a
/// territory whose connections are closed when idle. Unbounded, each new
/// connection takes a share of the CPU from the handshakes already begun,
/// all of them slow down past the agents' timeouts, the work is lost and the
/// agents come back for more: at 50,000 simulated agents on 2 cores a slow
/// minute turned into thousands of handshakes in progress, a p99 of 20 s and
/// tens of thousands of failed reports. So at most
/// `max_handshakes_in_progress` run at once, each finishing quickly, and
/// the connections beyond wait their turn in arrival order: a burst (500
/// agents starting together) only queues. A connection that waited
/// `slot_wait` is closed before any crypto is spent on it; its agent would
/// soon give up on it anyway, and retries later.
pub fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    accepting: Accepting,
    telemetry: Arc<Telemetry>,
) -> (
    tokio_stream::wrappers::ReceiverStream<io::Result<AuthenticatedStream>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(128);
    let Accepting {
        handshake_timeout,
        idle_timeout,
        max_handshakes_in_progress,
        slot_wait,
    } = accepting;
    let slots = Arc::new(Semaphore::new(max_handshakes_in_progress));
    let shed = Arc::new(Mutex::new(ShedLog::default()));
    let task = tokio::spawn(async move {
        loop {
            let (tcp, remote_addr) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx, telemetry) = (acceptor.clone(), tx.clone(), telemetry.clone());
            let (slots, shed) = (slots.clone(), shed.clone());
            tokio::spawn(async move {
                // The semaphore is fair: connections get slots in the
                // order they came. It is never closed.
                let Ok(Ok(slot)) = tokio::time::timeout(slot_wait, slots.acquire_owned()).await
                else {
                    telemetry.connections_shed.inc();
                    shed.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .one(max_handshakes_in_progress);
                    return;
                };
                let in_progress = Counted::new(&telemetry.handshakes_in_progress);
                let accepted = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await;
                drop((slot, in_progress));
                match accepted {
                    Ok(Ok(tls)) => {
                        let conn = tls.get_ref().1;
                        let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
                        let (identity, cert_not_after_ms) =
                            match conn.peer_certificates().and_then(|c| c.first()) {
                                Some(leaf) => identity_from_cert(leaf),
                                None => (Err("no client certificate".into()), None),
                            };
                        // A resumed session skips the chain check: its
                        // certificate was valid when the session began, and
                        // must still be.
                        if resumed && cert_not_after_ms.is_some_and(|t| t < crate::clock::now_ms())
                        {
                            telemetry
                                .handshake_failures
                                .with_label_values(&["resumed_certificate_expired"])
                                .inc();
                            tracing::info!(peer = %remote_addr, "resumed TLS session refused: its certificate has expired");
                            return;
                        }
                        telemetry
                            .handshakes
                            .with_label_values(&[if resumed { "resumed" } else { "full" }])
                            .inc();
                        let info = PeerInfo {
                            remote_addr,
                            identity,
                            cert_not_after_ms,
                        };
                        let in_flight = InFlight::default();
                        let stream = AuthenticatedStream {
                            inner: tls,
                            info,
                            idle: idle_timeout.map(|t| IdleTimer::new(t, in_flight.clone())),
                            in_flight,
                            _open: Counted::new(&telemetry.grpc_connections),
                        };
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => {
                        let reason = handshake_failure_reason(&e);
                        telemetry
                            .handshake_failures
                            .with_label_values(&[reason])
                            .inc();
                        tracing::info!(peer = %remote_addr, reason, error = %e, "TLS handshake refused");
                    }
                    Err(_) => {
                        telemetry
                            .handshake_failures
                            .with_label_values(&["timeout"])
                            .inc();
                        tracing::info!(peer = %remote_addr, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    (tokio_stream::wrappers::ReceiverStream::new(rx), task)
}

/// Logs shedding without a line per connection: at most one warning per
/// [`Self::EVERY`], with the count closed since the last one.
#[derive(Default)]
struct ShedLog {
    last: Option<Instant>,
    since_last: u64,
}

impl ShedLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn one(&mut self, limit: usize) {
        self.since_last += 1;
        let now = Instant::now();
        if self
            .last
            .is_none_or(|t| now.duration_since(t) >= Self::EVERY)
        {
            tracing::warn!(
                shed = self.since_last,
                max_handshakes_in_progress = limit,
                "overloaded: closing new agent connections before their TLS handshake"
            );
            self.last = Some(now);
            self.since_last = 0;
        }
    }
}

fn handshake_failure_reason(e: &io::Error) -> &'static str {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::NoCertificatesPresented) => "no_client_certificate",
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. },
        )) => "certificate_expired",
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => {
            "unknown_issuer"
        }
        Some(rustls::Error::InvalidCertificate(_)) => "invalid_certificate",
        Some(_) => "tls_error",
        None => "io_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn expired_within(timer: &mut IdleTimer, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        tokio::select! {
            () = std::future::poll_fn(|cx| timer.poll_expired(cx)) => true,
            () = tokio::time::sleep_until(deadline) => false,
        }
    }

    /// Runs a TLS handshake between the two in memory.
    fn handshake(client: &mut rustls::ClientConnection, server: &mut rustls::ServerConnection) {
        let mut wire = Vec::new();
        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                return;
            }
            wire.clear();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            server.read_tls(&mut wire.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            wire.clear();
            while server.wants_write() {
                server.write_tls(&mut wire).unwrap();
            }
            client.read_tls(&mut wire.as_slice()).unwrap();
            client.process_new_packets().unwrap();
        }
        panic!("the handshake did not complete");
    }

    /// The collector's server config and an agent's client config (ring,
    /// as the agent has it), from one test CA written into `dir`.
    fn test_configs(dir: &Path) -> (rustls::ServerConfig, rustls::ClientConfig) {
        let ca = crate::pki::Ca::generate("Campanile test CA", 1).unwrap();
        let server = ca.issue_server(&["localhost".into()], &[], 1).unwrap();
        let identity = HostIdentity::new("pc-001", "site-a").unwrap();
        let agent = ca.issue_agent(&identity, 1).unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let cfg = server_config(
            &file("ca.pem", &ca.cert_pem),
            &file("server.pem", &server.cert_pem),
            &file("server.key", &server.key_pem),
            true,
        )
        .unwrap();
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let client_cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(agent.cert_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(agent.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
        (cfg, client_cfg)
    }

    #[test]
    fn agents_get_aes_128_with_sha_256_though_they_offer_sha_384_first() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, client_cfg) = test_configs(dir.path());
        assert_eq!(
            client_cfg.crypto_provider().cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
            "the client side of this test must prefer SHA-384"
        );
        let mut client =
            rustls::ClientConnection::new(Arc::new(client_cfg), "localhost".try_into().unwrap())
                .unwrap();
        let mut server = rustls::ServerConnection::new(Arc::new(cfg)).unwrap();
        handshake(&mut client, &mut server);

        assert_eq!(
            server.negotiated_cipher_suite().map(|s| s.suite()),
            Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
        assert!(server.peer_certificates().is_some_and(|c| !c.is_empty()));
    }

    /// Polls `done` until it holds, failing after 10 s.
    async fn wait_for(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// An accept loop of one handshake slot on a loopback port.
    async fn one_slot(
        slot_wait: Duration,
    ) -> (
        SocketAddr,
        rustls::ClientConfig,
        tokio_stream::wrappers::ReceiverStream<io::Result<AuthenticatedStream>>,
        tokio::task::JoinHandle<()>,
        Arc<Telemetry>,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (server_cfg, client_cfg) = test_configs(dir.path());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let telemetry = Arc::new(Telemetry::new());
        let (streams, accept) = incoming(
            listener,
            TlsAcceptor::from(Arc::new(server_cfg)),
            Accepting {
                handshake_timeout: Duration::from_secs(60),
                idle_timeout: None,
                max_handshakes_in_progress: 1,
                slot_wait,
            },
            telemetry.clone(),
        );
        (addr, client_cfg, streams, accept, telemetry, dir)
    }

    /// Connects and says nothing, holding the only slot until dropped.
    async fn stall(addr: SocketAddr, telemetry: &Telemetry) -> TcpStream {
        let stalled = TcpStream::connect(addr).await.unwrap();
        wait_for("the stalled handshake", || {
            telemetry.handshakes_in_progress.get() == 1
        })
        .await;
        stalled
    }

    #[tokio::test]
    async fn a_connection_that_waited_too_long_for_a_handshake_slot_is_closed_unanswered() {
        use tokio::io::AsyncReadExt;

        let (addr, _, _streams, accept, telemetry, _dir) =
            one_slot(Duration::from_millis(200)).await;
        let _stalled = stall(addr, &telemetry).await;
        let mut shed = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(10), shed.read(&mut buf))
            .await
            .expect("the waiting connection is closed once its wait is over");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert_eq!(telemetry.connections_shed.get(), 1);
        assert_eq!(telemetry.handshakes_in_progress.get(), 1, "the stalled one");
        accept.abort();
    }

    #[tokio::test]
    async fn a_connection_beyond_the_handshakes_in_progress_waits_for_a_slot() {
        use tokio_stream::StreamExt;

        let (addr, client_cfg, mut streams, accept, telemetry, _dir) =
            one_slot(Duration::from_secs(30)).await;
        let stalled = stall(addr, &telemetry).await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        let client = tokio::spawn(
            tokio_rustls::TlsConnector::from(Arc::new(client_cfg))
                .connect("localhost".try_into().unwrap(), tcp),
        );
        // Queued behind the stalled peer: nothing comes out yet.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), streams.next())
                .await
                .is_err(),
            "a second handshake ran beside the first"
        );
        // The stalled peer goes; the agent waiting gets its slot.
        drop(stalled);
        let stream = tokio::time::timeout(Duration::from_secs(10), streams.next())
            .await
            .expect("in time")
            .expect("a stream")
            .expect("accepted");
        let _client = client.await.unwrap().expect("the agent's handshake");
        assert_eq!(
            stream.peer().identity.as_ref().map(|i| i.host_id.as_str()),
            Ok("pc-001")
        );
        assert_eq!(telemetry.connections_shed.get(), 0);
        assert_eq!(
            telemetry
                .handshake_failures
                .with_label_values(&["io_error"])
                .get(),
            1,
            "the stalled peer's handshake ended when it left"
        );
        accept.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_once_nothing_crossed_it_for_the_timeout() {
        let mut timer = IdleTimer::new(Duration::from_secs(5), InFlight::default());
        assert!(!expired_within(&mut timer, Duration::from_secs(4)).await);
        timer.touch();
        assert!(!expired_within(&mut timer, Duration::from_secs(4)).await);
        assert!(expired_within(&mut timer, Duration::from_secs(2)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_waiting_for_its_answer_keeps_the_connection_open() {
        let in_flight = InFlight::default();
        let mut timer = IdleTimer::new(Duration::from_secs(5), in_flight.clone());
        let request = in_flight.begin();
        assert!(
            !expired_within(&mut timer, Duration::from_secs(60)).await,
            "closed with a request in flight"
        );
        drop(request);
        // The answer's bytes touch the timer; the timeout counts from them.
        timer.touch();
        assert!(!expired_within(&mut timer, Duration::from_secs(4)).await);
        assert!(expired_within(&mut timer, Duration::from_secs(6)).await);
    }
}
