//! Serves the gRPC routes over HTTP/2 on the connections `tls::incoming`
//! authenticated, each request carrying its connection's [`PeerInfo`].
//!
//! We drive hyper ourselves instead of tonic's `Server` for one setting
//! tonic does not pass on: hyper adds a `date` header to every HTTP/2
//! response, and each new second is a new value the connection's HPACK
//! encoder indexes. An agent's connection lives for hours at one report a
//! minute, so its dynamic table fills with stale dates: about 9 KiB per
//! connection once full (the soak's memory growth at 10,000 agents), and
//! some 30 bytes more per answer on a municipal link. gRPC peers read no
//! `date` (grpc-go sends none), so the collector sends none.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_stream::{Stream, StreamExt};
use tonic::codegen::Service;
use tonic::service::Routes;

use crate::ingest::identity_connections::{Closed, IdentityConnections};
use crate::ingest::request_budget::{Budget, Held, LimitedBody, Pool};
use crate::ingest::tls::AuthenticatedStream;
use crate::revocation::Revoked;
use crate::telemetry::Telemetry;

/// HTTP/2 settings of the gRPC port.
#[derive(Debug, Clone)]
pub struct Http2 {
    /// Pings an idle connection this often, so dead peers are noticed.
    pub keepalive_interval: Duration,
    /// Closes the connection when a ping is not answered within this.
    pub keepalive_timeout: Duration,
    /// After shutdown begins, how long connections may take to finish the
    /// requests in flight before they are dropped.
    pub drain_timeout: Duration,
    /// Streams one connection may have open at once (an agent sends one
    /// request at a time); the peer's streams beyond are refused.
    pub max_streams_per_connection: u32,
    /// A request whose body has not all come this long after its headers
    /// is failed and its stream reset.
    pub request_body_timeout: Duration,
    /// Request bytes one connection's unanswered requests may hold.
    pub max_connection_buffer_bytes: usize,
    /// Request bytes all unanswered requests may hold together.
    pub max_inflight_request_bytes: usize,
    /// Connections one certificate identity may hold.
    pub max_connections_per_identity: usize,
}

/// Header bytes a request may carry: an agent's are a few hundred.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// What connections that present no client certificate are served, when
/// enrollment is on: these routes alone (the Enrollment service), for a
/// bounded time, a bounded number of them at once.
#[derive(Clone)]
pub struct EnrollingRoutes {
    pub routes: Routes,
    pub max_connections: usize,
}

/// Enrollment is one call: a connection that lasts longer is closed.
const ENROLLING_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// The only gRPC path a connection without a certificate may call.
const ENROLLMENT_PATH_PREFIX: &str = "/campanile.v1.Enrollment/";

/// Serves every connection `incoming` yields until `shutdown` turns true,
/// then lets the requests in flight finish (bounded by `drain_timeout`)
/// and returns, dropping the routes and what they hold. Connections with
/// a verified certificate get `routes`; those without one (let in only
/// when enrollment is on) get `enrolling`'s.
pub async fn serve(
    incoming: impl Stream<Item = io::Result<AuthenticatedStream>>,
    routes: Routes,
    enrolling: Option<EnrollingRoutes>,
    settings: Http2,
    telemetry: Arc<Telemetry>,
    revoked: Arc<Revoked>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(settings.keepalive_interval))
        .keep_alive_timeout(settings.keepalive_timeout)
        .max_concurrent_streams(settings.max_streams_per_connection)
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        .auto_date_header(false);
    let budget = Budget {
        pool: Pool::new(settings.max_inflight_request_bytes),
        gauge: telemetry.inflight_request_bytes.clone(),
    };
    let identities = IdentityConnections::new(
        settings.max_connections_per_identity,
        telemetry
            .connections_shed
            .with_label_values(&["identity_limit"]),
    );
    let enrolling_open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut revocations = revoked.subscribe();
    let mut incoming = std::pin::pin!(incoming);
    let mut connections = JoinSet::new();
    // Each connection watches a receiver of its own.
    let watch_each = shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            // Reap finished connections so the set holds only live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            Ok(()) = revocations.changed() => {
                let closed = identities.close_revoked(&revoked.snapshot());
                if closed > 0 {
                    telemetry.revoked_connections_closed.inc_by(closed as u64);
                    tracing::info!(closed, "closing the connections of revoked certificates");
                }
            }
            next = incoming.next() => match next {
                Some(Ok(stream)) => {
                    let peer = stream.peer().clone();
                    let enrolling_peer = peer.enrolling;
                    let (routes, registration, enrolling_slot) = if enrolling_peer {
                        let Some(e) = &enrolling else {
                            continue;
                        };
                        let Some(slot) = EnrollingSlot::take(&enrolling_open, e.max_connections) else {
                            telemetry.connections_shed.with_label_values(&["enrollment_limit"]).inc();
                            continue;
                        };
                        (e.routes.clone(), None, Some(slot))
                    } else {
                        // Connections whose certificate names no host are
                        // refused at their first request; they count together.
                        let registration = identities.register(registration_host(&peer), peer.cert_serial.as_deref());
                        // Revoked since the accept loop checked it: the
                        // revocation's sweep may have missed it.
                        if peer.cert_serial.as_deref().is_some_and(|s| revoked.contains(s)) {
                            telemetry.revoked_connections_closed.inc();
                            continue;
                        }
                        (routes.clone(), Some(registration), None)
                    };
                    let in_flight = stream.in_flight();
                    let (host, remote_addr) = (registration_host(&peer).to_owned(), peer.remote_addr);
                    let connection_buffer = Pool::new(settings.max_connection_buffer_bytes);
                    let (budget, telemetry) = (budget.clone(), telemetry.clone());
                    let body_timeout = settings.request_body_timeout;
                    let service = hyper::service::service_fn(move |req: tonic::codegen::http::Request<hyper::body::Incoming>| {
                        let held = Held::new(connection_buffer.clone(), budget.clone());
                        let mut req = req.map(|body| {
                            LimitedBody::new(body, held.clone(), body_timeout)
                        });
                        req.extensions_mut().insert(peer.clone());
                        // Held until the answer is ready, so a request
                        // waiting for its commit keeps the connection open.
                        let request = in_flight.begin();
                        let allowed = !enrolling_peer || req.uri().path().starts_with(ENROLLMENT_PATH_PREFIX);
                        // Routes are always ready (an axum router).
                        let answer = allowed.then(|| routes.clone().call(req));
                        let telemetry = telemetry.clone();
                        async move {
                            let Some(answer) = answer else {
                                telemetry.requests_rejected.with_label_values(&["no_client_certificate"]).inc();
                                return Ok(tonic::Status::unauthenticated(
                                    "no client certificate: this connection may only enroll",
                                ).into_http());
                            };
                            let r = answer.await;
                            if let Some(why) = held.exceeded() {
                                telemetry
                                    .requests_rejected
                                    .with_label_values(&[why.reason_label()])
                                    .inc();
                            }
                            drop((request, held));
                            r
                        }
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let mut stop = watch_each.clone();
                    connections.spawn(async move {
                        let _enrolling_slot = enrolling_slot;
                        let closed = async {
                            match &registration {
                                Some(r) => r.closed().await,
                                None => std::future::pending().await,
                            }
                        };
                        let lifetime = async {
                            if enrolling_peer {
                                tokio::time::sleep(ENROLLING_CONNECTION_LIFETIME).await
                            } else {
                                std::future::pending().await
                            }
                        };
                        let mut conn = std::pin::pin!(conn);
                        tokio::select! {
                            r = conn.as_mut() => return log_end(r),
                            // Dropped: its requests are not acknowledged,
                            // and an agent's would be sent again.
                            why = closed => {
                                match why {
                                    Closed::Replaced => tracing::info!(%host, peer = %remote_addr, "connection replaced by a newer one of the same certificate"),
                                    Closed::Revoked => tracing::info!(%host, peer = %remote_addr, "connection closed: its certificate is revoked"),
                                }
                                return;
                            }
                            () = lifetime => {
                                tracing::debug!(peer = %remote_addr, "closing an enrolling connection at the end of its time");
                                return;
                            }
                            _ = stop.wait_for(|stop| *stop) => conn.as_mut().graceful_shutdown(),
                        }
                        log_end(conn.await);
                    });
                }
                // The accept loop logs what it could not accept.
                Some(Err(_)) => {}
                None => break,
            },
        }
    }
    drop((routes, enrolling));
    if connections.is_empty() {
        return;
    }
    let open = connections.len();
    let drained = tokio::time::timeout(settings.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        // Nothing is lost: only committed reports were acknowledged, and
        // the agents resend the rest.
        tracing::warn!(
            open,
            left = connections.len(),
            "agent connections still busy at shutdown; closing them"
        );
    }
}

/// One of the enrolling connections open at once, given back when dropped.
struct EnrollingSlot(Arc<std::sync::atomic::AtomicUsize>);

impl EnrollingSlot {
    fn take(open: &Arc<std::sync::atomic::AtomicUsize>, max: usize) -> Option<Self> {
        use std::sync::atomic::Ordering;
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Self(open.clone()))
    }
}

impl Drop for EnrollingSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

fn registration_host(peer: &crate::ingest::tls::PeerInfo) -> &str {
    peer.identity.as_ref().map_or("", |id| id.host_id.as_str())
}

fn log_end(r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        tracing::debug!(error = %e, "agent connection ended with an error");
    }
}
