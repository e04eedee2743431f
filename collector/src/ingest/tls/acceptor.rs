//! The accept loop: TCP connections in, admitted by source
//! ([`super::admission`]), their ClientHello read under a short deadline,
//! TLS handshakes bounded in number and time and handed out fairly
//! ([`super::slots`]), authenticated streams out to the gRPC server.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::HandshakeKind;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::ingest::tls::admission::{Admission, AdmissionGauges, AdmissionLimits, Refused};
use crate::ingest::tls::live::LiveConfig;
use crate::ingest::tls::slots::Slots;
use crate::ingest::tls::source::SourceKey;
use crate::ingest::tls::stream::{
    AuthenticatedStream, Counted, IdleTimer, InFlight, LeafFacts, PeerInfo, identity_from_cert,
};
use crate::revocation::Revoked;
use crate::telemetry::Telemetry;

/// How the accept loop takes connections.
#[derive(Debug, Clone, Copy)]
pub struct Accepting {
    /// A peer whose whole ClientHello has not come by then is dropped
    /// before it takes a handshake slot. An agent sends it at once.
    pub hello_timeout: Duration,
    /// A peer that has not finished its handshake this long after it got
    /// its slot is dropped.
    pub handshake_timeout: Duration,
    /// See [`IdleTimer`]; `None` keeps connections open.
    pub idle_timeout: Option<Duration>,
    /// Handshakes run at once; a connection beyond them waits its turn.
    pub max_handshakes_in_progress: usize,
    /// Handshakes one source runs at once.
    pub max_handshakes_per_source: usize,
    /// How long a connection waits for its turn before it is closed.
    pub slot_wait: Duration,
    /// Connections before authentication, per source and in all.
    pub admission: AdmissionLimits,
}

/// Why a connection ended before it was authenticated.
enum Ended {
    /// Closed unanswered to make room: the `reason` label of
    /// `campanile_grpc_connections_shed_total`.
    Shed(&'static str),
    /// The handshake failed: the `reason` label of
    /// `campanile_tls_handshake_failures_total`, and the error.
    Failed(&'static str, Option<io::Error>),
}

/// What each connection's task shares.
struct Shared {
    config: Arc<LiveConfig>,
    accepting: Accepting,
    admission: Arc<Admission>,
    slots: Arc<Slots>,
    telemetry: Arc<Telemetry>,
    shed_log: Mutex<ShedLog>,
    revoked: Arc<Revoked>,
}

/// Accepts TCP connections and completes TLS handshakes concurrently;
/// yields only authenticated streams. The returned task handle ends the
/// accept loop when aborted.
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
/// the connections beyond wait their turn: a burst (500 agents starting
/// together) only queues. A connection that waited `slot_wait` is closed
/// before any crypto is spent on it; its agent would soon give up on it
/// anyway, and retries later.
///
/// A slot is taken only once the whole ClientHello has come, within
/// `hello_timeout`: peers that connect and send nothing, or half a
/// ClientHello, hold a socket for that long and no slot. Before, 256 of
/// them filled every slot for the whole handshake timeout, and no agent
/// got in.
///
/// `revoked` is checked once more after the handshake: a resumed session
/// does not pass the verifier, and must not bring a certificate revoked
/// since back.
pub fn incoming(
    listener: TcpListener,
    config: Arc<LiveConfig>,
    accepting: Accepting,
    telemetry: Arc<Telemetry>,
    revoked: Arc<Revoked>,
) -> (
    tokio_stream::wrappers::ReceiverStream<io::Result<AuthenticatedStream>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(128);
    let shared = Arc::new(Shared {
        config,
        admission: Admission::new(
            accepting.admission,
            AdmissionGauges {
                unauthenticated: telemetry.unauthenticated_connections.clone(),
                sources: telemetry.unauthenticated_sources.clone(),
                known_sources: telemetry.known_sources.clone(),
            },
        ),
        slots: Slots::new(
            accepting.max_handshakes_in_progress,
            accepting.max_handshakes_per_source,
            telemetry.handshakes_queued.clone(),
            telemetry.handshakes_prioritized.clone(),
        ),
        accepting,
        telemetry,
        shed_log: Mutex::new(ShedLog::default()),
        revoked,
    });
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
            let key = SourceKey::of(remote_addr.ip());
            let ticket = match shared.admission.enter(key) {
                Ok(t) => t,
                Err(refused) => {
                    shared.shed(match refused {
                        Refused::SourceLimit => "source_limit",
                        Refused::TotalLimit => "total_limit",
                    });
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (shared, tx) = (shared.clone(), tx.clone());
            tokio::spawn(async move {
                let outcome = tokio::select! {
                    () = ticket.evicted() => Err(Ended::Shed("evicted")),
                    r = shared.handshake(tcp, key) => r,
                };
                // Authenticated or not, it no longer waits for admission.
                drop(ticket);
                match outcome {
                    Ok(tls) => {
                        if let Some(stream) = shared.authenticated(tls, remote_addr, key) {
                            let _ = tx.send(Ok(stream)).await;
                        }
                    }
                    Err(Ended::Shed(reason)) => shared.shed(reason),
                    Err(Ended::Failed(reason, e)) => {
                        shared
                            .telemetry
                            .handshake_failures
                            .with_label_values(&[reason])
                            .inc();
                        match e {
                            Some(e) => {
                                tracing::info!(peer = %remote_addr, reason, error = %e, "TLS handshake refused")
                            }
                            None => {
                                tracing::info!(peer = %remote_addr, reason, "TLS handshake ended")
                            }
                        }
                    }
                }
            });
        }
    });
    (tokio_stream::wrappers::ReceiverStream::new(rx), task)
}

impl Shared {
    /// The ClientHello, a slot, then the handshake.
    async fn handshake(
        &self,
        tcp: TcpStream,
        key: SourceKey,
    ) -> Result<TlsStream<TcpStream>, Ended> {
        let a = &self.accepting;
        let hello = tokio::time::timeout(
            a.hello_timeout,
            LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp),
        )
        .await
        .map_err(|_| Ended::Shed("hello_timeout"))?
        .map_err(|e| Ended::Failed(handshake_failure_reason(&e), Some(e)))?;
        let slot = self
            .slots
            .acquire(key, self.admission.is_known(key), a.slot_wait)
            .await
            .ok_or(Ended::Shed("slot_wait"))?;
        let _in_progress = Counted::new(&self.telemetry.handshakes_in_progress);
        let accepted =
            tokio::time::timeout(a.handshake_timeout, hello.into_stream(self.config.get())).await;
        drop(slot);
        match accepted {
            Ok(Ok(tls)) => Ok(tls),
            Ok(Err(e)) => Err(Ended::Failed(handshake_failure_reason(&e), Some(e))),
            Err(_) => Err(Ended::Failed("timeout", None)),
        }
    }

    /// The stream for the gRPC server, or `None` if the connection is
    /// refused after all.
    fn authenticated(
        &self,
        tls: TlsStream<TcpStream>,
        remote_addr: std::net::SocketAddr,
        key: SourceKey,
    ) -> Option<AuthenticatedStream> {
        let telemetry = &self.telemetry;
        let conn = tls.get_ref().1;
        let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
        let leaf = conn.peer_certificates().and_then(|c| c.first());
        // Only when enrollment is on does the handshake let such a peer in.
        let enrolling = leaf.is_none();
        let LeafFacts {
            identity,
            not_after_ms: cert_not_after_ms,
            serial: cert_serial,
            key_sha256: cert_key_sha256,
            issuer_sha256: cert_issuer_sha256,
        } = match leaf {
            Some(leaf) => identity_from_cert(leaf),
            None => LeafFacts {
                identity: Err("no client certificate".into()),
                not_after_ms: None,
                serial: None,
                key_sha256: None,
                issuer_sha256: None,
            },
        };
        // A resumed session skips the chain check: its certificate was
        // valid when the session began, and must still be.
        if resumed && cert_not_after_ms.is_some_and(|t| t < crate::clock::now_ms()) {
            telemetry
                .handshake_failures
                .with_label_values(&["resumed_certificate_expired"])
                .inc();
            tracing::info!(peer = %remote_addr, "resumed TLS session refused: its certificate has expired");
            return None;
        }
        if cert_serial
            .as_deref()
            .is_some_and(|s| self.revoked.contains(s))
        {
            telemetry
                .handshake_failures
                .with_label_values(&["revoked"])
                .inc();
            tracing::info!(peer = %remote_addr, resumed, serial = cert_serial.as_deref().unwrap_or(""),
                "TLS session refused: its certificate is revoked");
            return None;
        }
        if identity.is_ok() {
            self.admission.verified(key);
        }
        telemetry
            .handshakes
            .with_label_values(&[if resumed { "resumed" } else { "full" }])
            .inc();
        let in_flight = InFlight::default();
        Some(AuthenticatedStream {
            inner: tls,
            info: PeerInfo {
                remote_addr,
                identity,
                cert_not_after_ms,
                enrolling,
                cert_serial,
                cert_key_sha256,
                cert_issuer_sha256,
            },
            idle: self
                .accepting
                .idle_timeout
                .map(|t| IdleTimer::new(t, in_flight.clone())),
            in_flight,
            _open: Counted::new(&telemetry.grpc_connections),
        })
    }

    fn shed(&self, reason: &'static str) {
        self.telemetry
            .connections_shed
            .with_label_values(&[reason])
            .inc();
        self.shed_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .one(reason);
    }
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

    fn one(&mut self, reason: &'static str) {
        self.since_last += 1;
        let now = Instant::now();
        if self
            .last
            .is_none_or(|t| now.duration_since(t) >= Self::EVERY)
        {
            tracing::warn!(
                shed = self.since_last,
                reason,
                "closing connections before their TLS handshake (see \
                 campanile_grpc_connections_shed_total by reason)"
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
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)) => "revoked",
        Some(rustls::Error::InvalidCertificate(_)) => "invalid_certificate",
        Some(_) => "tls_error",
        None => "io_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio_stream::StreamExt;

    use crate::ingest::tls::config::tests::test_configs_revoking;

    /// Polls `done` until it holds, failing after 10 s.
    async fn wait_for(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    struct Loop {
        addr: SocketAddr,
        client_cfg: Arc<rustls::ClientConfig>,
        streams: tokio_stream::wrappers::ReceiverStream<io::Result<AuthenticatedStream>>,
        accept: tokio::task::JoinHandle<()>,
        telemetry: Arc<Telemetry>,
        _dir: tempfile::TempDir,
    }

    impl Drop for Loop {
        fn drop(&mut self) {
            self.accept.abort();
        }
    }

    /// An accept loop of one handshake slot on a loopback port.
    async fn one_slot(slot_wait: Duration, hello_timeout: Duration) -> Loop {
        one_slot_revoking(slot_wait, hello_timeout, Revoked::new(Default::default())).await
    }

    async fn one_slot_revoking(
        slot_wait: Duration,
        hello_timeout: Duration,
        revoked: Arc<Revoked>,
    ) -> Loop {
        let dir = tempfile::tempdir().unwrap();
        let (server_cfg, client_cfg) = test_configs_revoking(dir.path(), revoked.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let telemetry = Arc::new(Telemetry::new());
        let (streams, accept) = incoming(
            listener,
            LiveConfig::new(server_cfg),
            Accepting {
                hello_timeout,
                handshake_timeout: Duration::from_secs(60),
                idle_timeout: None,
                max_handshakes_in_progress: 1,
                max_handshakes_per_source: 1,
                slot_wait,
                admission: AdmissionLimits {
                    max_per_source: 100,
                    max_total: 100,
                    known_source_ttl: Some(Duration::from_secs(3600)),
                },
            },
            telemetry.clone(),
            revoked,
        );
        Loop {
            addr,
            client_cfg: Arc::new(client_cfg),
            streams,
            accept,
            telemetry,
            _dir: dir,
        }
    }

    /// Connects and sends a whole ClientHello, then nothing more.
    async fn hello_then_silence(l: &Loop) -> TcpStream {
        let mut client =
            rustls::ClientConnection::new(l.client_cfg.clone(), "localhost".try_into().unwrap())
                .unwrap();
        let mut hello = Vec::new();
        client.write_tls(&mut hello).unwrap();
        let mut tcp = TcpStream::connect(l.addr).await.unwrap();
        tcp.write_all(&hello).await.unwrap();
        tcp
    }

    /// Holds the only slot until dropped.
    async fn stall(l: &Loop) -> TcpStream {
        let stalled = hello_then_silence(l).await;
        wait_for("the stalled handshake", || {
            l.telemetry.handshakes_in_progress.get() == 1
        })
        .await;
        stalled
    }

    async fn closed_unanswered(mut tcp: TcpStream, what: &str) {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{what}: still open"));
        assert!(matches!(read, Ok(0) | Err(_)), "{what}: {read:?}");
    }

    fn shed(l: &Loop, reason: &str) -> u64 {
        l.telemetry
            .connections_shed
            .with_label_values(&[reason])
            .get()
    }

    type Client = tokio::task::JoinHandle<io::Result<tokio_rustls::client::TlsStream<TcpStream>>>;

    /// An agent's handshake, begun.
    async fn agent_connects(l: &Loop) -> Client {
        let tcp = TcpStream::connect(l.addr).await.unwrap();
        tokio::spawn(
            tokio_rustls::TlsConnector::from(l.client_cfg.clone())
                .connect("localhost".try_into().unwrap(), tcp),
        )
    }

    /// The authenticated stream of the agent's handshake, once it ends.
    async fn accepted(l: &mut Loop, client: Client) -> AuthenticatedStream {
        let stream = tokio::time::timeout(Duration::from_secs(10), l.streams.next())
            .await
            .expect("in time")
            .expect("a stream")
            .expect("accepted");
        let _client = client.await.unwrap().expect("the agent's handshake");
        stream
    }

    #[tokio::test]
    async fn a_connection_that_waited_too_long_for_a_handshake_slot_is_closed_unanswered() {
        let l = one_slot(Duration::from_millis(200), Duration::from_secs(60)).await;
        let _stalled = stall(&l).await;
        let waiting = hello_then_silence(&l).await;
        closed_unanswered(waiting, "the connection waiting for a slot").await;
        assert_eq!(shed(&l, "slot_wait"), 1);
        assert_eq!(
            l.telemetry.handshakes_in_progress.get(),
            1,
            "the stalled one"
        );
    }

    #[tokio::test]
    async fn a_connection_beyond_the_handshakes_in_progress_waits_for_a_slot() {
        let mut l = one_slot(Duration::from_secs(30), Duration::from_secs(60)).await;
        let stalled = stall(&l).await;
        let client = agent_connects(&l).await;
        // Queued behind the stalled peer: nothing comes out yet.
        wait_for("the agent to queue", || {
            l.telemetry.handshakes_queued.get() == 1
        })
        .await;
        assert!(
            tokio::time::timeout(Duration::from_millis(300), l.streams.next())
                .await
                .is_err(),
            "a second handshake ran beside the first"
        );
        // The stalled peer goes; the agent waiting gets its slot.
        drop(stalled);
        let stream = accepted(&mut l, client).await;
        assert_eq!(
            stream.peer().identity.as_ref().map(|i| i.host_id.as_str()),
            Ok("pc-001")
        );
        assert_eq!(shed(&l, "slot_wait"), 0);
        assert_eq!(
            l.telemetry
                .handshake_failures
                .with_label_values(&["io_error"])
                .get(),
            1,
            "the stalled peer's handshake ended when it left"
        );
    }

    #[tokio::test]
    async fn a_peer_that_sends_nothing_takes_no_slot_and_is_closed_after_the_hello_timeout() {
        let mut l = one_slot(Duration::from_secs(30), Duration::from_millis(300)).await;
        let silent = TcpStream::connect(l.addr).await.unwrap();
        let mut partial = TcpStream::connect(l.addr).await.unwrap();
        // A handshake record header, and half a ClientHello header.
        partial
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .await
            .unwrap();
        wait_for("both to be admitted", || {
            l.telemetry.unauthenticated_connections.get() == 2
        })
        .await;
        // The only slot is free for an agent meanwhile.
        let client = agent_connects(&l).await;
        let stream = accepted(&mut l, client).await;
        assert!(stream.peer().identity.is_ok());
        closed_unanswered(silent, "the silent peer").await;
        closed_unanswered(partial, "the partial ClientHello").await;
        assert_eq!(shed(&l, "hello_timeout"), 2);
        wait_for("the admission to empty", || {
            l.telemetry.unauthenticated_connections.get() == 0
        })
        .await;
        assert_eq!(l.telemetry.known_sources.get(), 1, "the agent's address");
    }

    #[tokio::test]
    async fn a_revoked_certificate_is_refused_whether_its_session_is_new_or_resumed() {
        let revoked = Revoked::new(Default::default());
        let mut l = one_slot_revoking(
            Duration::from_secs(30),
            Duration::from_secs(60),
            revoked.clone(),
        )
        .await;
        let refused = |l: &Loop| {
            l.telemetry
                .handshake_failures
                .with_label_values(&["revoked"])
                .get()
        };
        // Accepted before its revocation; the agent keeps a session ticket,
        // which comes before the first byte the collector sends.
        let client = agent_connects(&l).await;
        let mut server_side = tokio::time::timeout(Duration::from_secs(10), l.streams.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let mut agent = client.await.unwrap().unwrap();
        let serial = server_side.peer().cert_serial.clone().expect("a serial");
        server_side.write_all(b"x").await.unwrap();
        server_side.flush().await.unwrap();
        agent.read_exact(&mut [0u8; 1]).await.unwrap();
        drop((agent, server_side));

        revoked.replace([serial].into());
        // The session resumes (the verifier is not asked) and is refused
        // after the handshake.
        let client = agent_connects(&l).await;
        let mut agent = client.await.unwrap().expect("the handshake itself");
        assert_eq!(
            agent.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Resumed)
        );
        let read = tokio::time::timeout(Duration::from_secs(10), agent.read(&mut [0u8; 8]))
            .await
            .expect("closed in time");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        wait_for("the resumed refusal", || refused(&l) == 1).await;

        // Without a ticket the handshake is full, and the verifier refuses.
        let mut fresh = (*l.client_cfg).clone();
        fresh.resumption = rustls::client::Resumption::disabled();
        let tcp = TcpStream::connect(l.addr).await.unwrap();
        let connected = tokio_rustls::TlsConnector::from(Arc::new(fresh))
            .connect("localhost".try_into().unwrap(), tcp)
            .await;
        // TLS 1.3: the client may finish before the server refuses it; then
        // the refusal comes as an alert on the first read.
        let outcome = match connected {
            Err(e) => e.to_string(),
            Ok(mut agent) => match agent.read(&mut [0u8; 8]).await {
                Err(e) => e.to_string(),
                Ok(n) => format!("read {n} bytes"),
            },
        };
        assert!(outcome.contains("CertificateRevoked"), "{outcome}");
        wait_for("the full handshake's refusal", || refused(&l) == 2).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(200), l.streams.next())
                .await
                .is_err(),
            "a revoked certificate got through"
        );
    }
}
