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
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_stream::{Stream, StreamExt};
use tonic::codegen::Service;
use tonic::service::Routes;

use crate::ingest::tls::AuthenticatedStream;

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
}

/// Serves every connection `incoming` yields until `shutdown` turns true,
/// then lets the requests in flight finish (bounded by `drain_timeout`)
/// and returns, dropping the routes and what they hold.
pub async fn serve(
    incoming: impl Stream<Item = io::Result<AuthenticatedStream>>,
    routes: Routes,
    settings: Http2,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(settings.keepalive_interval))
        .keep_alive_timeout(settings.keepalive_timeout)
        .auto_date_header(false);
    let mut incoming = std::pin::pin!(incoming);
    let mut connections = JoinSet::new();
    // Each connection watches a receiver of its own.
    let watch_each = shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            // Reap finished connections so the set holds only live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            next = incoming.next() => match next {
                Some(Ok(stream)) => {
                    let peer = stream.peer().clone();
                    let in_flight = stream.in_flight();
                    let routes = routes.clone();
                    let service = hyper::service::service_fn(move |mut req: tonic::codegen::http::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(peer.clone());
                        // Held until the answer is ready, so a request
                        // waiting for its commit keeps the connection open.
                        let request = in_flight.begin();
                        // Routes are always ready (an axum router).
                        let answer = routes.clone().call(req);
                        async move {
                            let r = answer.await;
                            drop(request);
                            r
                        }
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let mut stop = watch_each.clone();
                    connections.spawn(async move {
                        let mut conn = std::pin::pin!(conn);
                        tokio::select! {
                            r = conn.as_mut() => return log_end(r),
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
    drop(routes);
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

fn log_end(r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        tracing::debug!(error = %e, "agent connection ended with an error");
    }
}
