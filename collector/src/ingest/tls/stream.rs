//! An authenticated connection: the identity read from its verified
//! certificate ([`PeerInfo`]), and the idle timer that closes it once
//! nothing crosses it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use campanile_proto::identity::HostIdentity;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

/// What `grpc_server` attaches to every request of a connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub remote_addr: SocketAddr,
    /// The identity from the verified client certificate, or why the
    /// certificate (signed by our CA) does not carry a usable one.
    pub identity: Result<HostIdentity, String>,
    /// When that certificate expires (Unix ms), for the expiry alert.
    pub cert_not_after_ms: Option<i64>,
    /// The peer presented no certificate: it may only enroll.
    pub enrolling: bool,
    /// The certificate's serial number (lower-case hex).
    pub cert_serial: Option<String>,
    /// SHA-256 of its public key (SubjectPublicKeyInfo DER): a renewal
    /// must bring another.
    pub cert_key_sha256: Option<[u8; 32]>,
    /// SHA-256 of its issuer's name (DER): whether the CA that signs now
    /// signed it (in a CA rollover, agents under the old one renew).
    pub cert_issuer_sha256: Option<[u8; 32]>,
}

/// What the collector reads of a verified leaf certificate.
#[derive(Debug, Clone)]
pub struct LeafFacts {
    pub identity: Result<HostIdentity, String>,
    pub not_after_ms: Option<i64>,
    pub serial: Option<String>,
    pub key_sha256: Option<[u8; 32]>,
    pub issuer_sha256: Option<[u8; 32]>,
}

/// A TLS connection whose handshake completed.
pub struct AuthenticatedStream {
    pub(super) inner: TlsStream<TcpStream>,
    pub(super) info: PeerInfo,
    pub(super) idle: Option<IdleTimer>,
    pub(super) in_flight: InFlight,
    /// Counts the connection in `campanile_grpc_connections` while it lives.
    pub(super) _open: Counted,
}

/// Ends a connection nothing has crossed for `timeout` while no request was
/// in flight: reads then see end of stream, and hyper closes the connection.
/// The agent, idle by then, sees the close and reconnects at its next
/// report. A request waiting for its commit moves no bytes, yet the
/// connection is not idle: closing it would throw away the agent's
/// handshake and request, and under load (when commits are slow) make more
/// of both. The timer is re-armed only when it fires, so traffic costs a
/// clock read, not a timer update.
pub(super) struct IdleTimer {
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
    pub(super) fn new(timeout: Duration, in_flight: InFlight) -> Self {
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
pub(super) struct Counted(prometheus::IntGauge);

impl Counted {
    pub(super) fn new(gauge: &prometheus::IntGauge) -> Self {
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

/// Reads the host identity, the expiry time, the serial and the key of
/// the leaf certificate rustls verified.
pub fn identity_from_cert(der: &CertificateDer<'_>) -> LeafFacts {
    match x509_parser::parse_x509_certificate(der.as_ref()) {
        Ok((_, cert)) => LeafFacts {
            identity: identity_of(&cert),
            not_after_ms: Some(cert.validity().not_after.timestamp().saturating_mul(1000)),
            serial: Some(crate::pki::serial_hex(cert.raw_serial())),
            key_sha256: Some(campanile_proto::sha256(
                cert.tbs_certificate.subject_pki.raw,
            )),
            issuer_sha256: Some(campanile_proto::sha256(
                cert.tbs_certificate.issuer.as_raw(),
            )),
        },
        Err(e) => LeafFacts {
            identity: Err(format!("unparsable certificate: {e}")),
            not_after_ms: None,
            serial: None,
            key_sha256: None,
            issuer_sha256: None,
        },
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
