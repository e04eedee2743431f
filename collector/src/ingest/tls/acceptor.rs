//! The accept loop: TCP connections in, TLS handshakes bounded in number
//! and time, authenticated streams out to the gRPC server.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::HandshakeKind;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::ingest::tls::stream::{
    AuthenticatedStream, Counted, IdleTimer, InFlight, PeerInfo, identity_from_cert,
};
use crate::telemetry::Telemetry;

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
    use std::net::SocketAddr;
    use tokio::net::TcpStream;

    use crate::ingest::tls::config::tests::test_configs;

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
}
