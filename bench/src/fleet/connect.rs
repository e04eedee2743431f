//! Identities and connections of the simulated agents: one certificate per
//! host, issued by the territory's CA, and an mTLS HTTP/2 channel made
//! with it. The simulator does the TLS itself (rustls, as tonic does for
//! the real agent) so that one parsed certificate serves every connection
//! of a host, and so connections can leave from several loopback source
//! addresses: one address has only ~28,000 ephemeral ports.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use campanile_collector::pki::Ca;
use campanile_proto::identity::HostIdentity;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tonic::transport::{Channel, Endpoint};

/// Where the simulated agents connect and how.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub server_name: String,
    /// Connections leave from these addresses in turn (loopback only).
    pub source_addrs: Vec<IpAddr>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

/// Issues one client certificate per host, on every core: 50,000
/// identities take seconds, not minutes.
pub fn issue_identities(
    ca: &Ca,
    identities: &[HostIdentity],
    days: i64,
) -> Result<Vec<Arc<ClientConfig>>> {
    let mut roots = RootCertStore::empty();
    for cert in pem_certs(&ca.cert_pem)? {
        roots.add(cert).context("CA certificate")?;
    }
    let roots = Arc::new(roots);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = identities.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = identities
            .chunks(chunk)
            .map(|part| {
                let roots = roots.clone();
                scope.spawn(move || -> Result<Vec<Arc<ClientConfig>>> {
                    part.iter()
                        .map(|id| {
                            let issued = ca.issue_agent(id, days)?;
                            client_config(&roots, &issued.cert_pem, &issued.key_pem)
                        })
                        .collect()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(identities.len());
        for h in handles {
            out.extend(
                h.join()
                    .map_err(|_| anyhow::anyhow!("issuing thread panicked"))??,
            );
        }
        Ok(out)
    })
}

fn pem_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("parse PEM certificates")
}

fn client_config(
    roots: &Arc<RootCertStore>,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    let chain = pem_certs(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("parse agent key")?;
    let mut cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// When each connection began and how long its TCP connect and TLS
/// handshake took together: a report that had to reconnect spends that
/// inside its RPC, and this tells the two apart.
#[derive(Default)]
pub struct ConnectLog(Mutex<Vec<(tokio::time::Instant, Duration)>>);

impl ConnectLog {
    /// Durations of the connections begun at or after `from`.
    pub fn since(&self, from: tokio::time::Instant) -> Vec<Duration> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(at, _)| *at >= from)
            .map(|(_, took)| *took)
            .collect()
    }
}

/// Simulated agents per source address: about a town hall's PCs behind
/// its router. The collector bounds connections per source before
/// authentication (`grpc.max_connections_per_source`), so a fleet from a
/// handful of addresses would measure that bound, not the collector.
pub const AGENTS_PER_SOURCE: usize = 25;

/// Loopback source addresses for `agents` agents, [`AGENTS_PER_SOURCE`]
/// each: 127.0.b.a with a in 1..=250 (Linux answers all of 127/8).
pub fn loopback_sources(agents: usize) -> Vec<IpAddr> {
    (0..agents.div_ceil(AGENTS_PER_SOURCE).max(1))
        .map(|n| {
            IpAddr::V4(std::net::Ipv4Addr::new(
                127,
                0,
                u8::try_from(n / 250).unwrap_or(u8::MAX),
                (1 + n % 250) as u8,
            ))
        })
        .collect()
}

/// Lets the kernel pick the source port at `connect`, not at `bind`.
///
/// Bound to `(source, 0)`, a socket gets a port of its own at bind time:
/// the kernel skips every port still held, TIME_WAIT included, and cannot
/// reuse one for another peer. A fleet that connects once per report after
/// an earlier step's 25,000 connections closed then searches a nearly full
/// port range on every connect. With this option the port is chosen by the
/// whole four-tuple at connect time, where loopback TIME_WAIT ports are
/// reused (`net.ipv4.tcp_tw_reuse`), as for an unbound socket.
fn defer_port_choice_to_connect(socket: &tokio::net::TcpSocket) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: the descriptor is the live socket borrowed for this call;
        // the option value is a c_int on our stack, passed with its exact
        // size, which the kernel only reads (ip(7), IP_BIND_ADDRESS_NO_PORT,
        // valid on IPv4 and IPv6 TCP sockets).
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                std::ptr::from_ref(&on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
    Ok(())
}

/// A lazily connected channel for one host, as the real agent keeps one:
/// it connects on the first call and reconnects by itself.
pub fn channel(
    target: &Target,
    tls: Arc<ClientConfig>,
    source: Option<IpAddr>,
    log: Arc<ConnectLog>,
) -> Result<Channel> {
    let server_name = ServerName::try_from(target.server_name.clone()).context("server name")?;
    let addr = target.addr;
    let connect_timeout = target.connect_timeout;
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let tls = tls.clone();
        let server_name = server_name.clone();
        let log = log.clone();
        async move {
            let began = tokio::time::Instant::now();
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            if let Some(src) = source {
                defer_port_choice_to_connect(&socket)?;
                socket.bind(SocketAddr::new(src, 0))?;
            }
            let tcp = tokio::time::timeout(connect_timeout, socket.connect(addr))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timeout")
                })??;
            tcp.set_nodelay(true)?;
            let stream = tokio::time::timeout(
                connect_timeout,
                tokio_rustls::TlsConnector::from(tls).connect(server_name, tcp),
            )
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timeout")
            })??;
            log.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((began, began.elapsed()));
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    // The scheme says plain HTTP/2 because the connector above already
    // speaks TLS; tonic must not wrap it again.
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .timeout(target.request_timeout)
        .http2_keep_alive_interval(Duration::from_secs(60))
        .keep_alive_timeout(Duration::from_secs(20))
        .connect_with_connector_lazy(connector))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The port is left open at bind and chosen at connect, for both
    /// address families the simulator may be given as sources.
    #[tokio::test]
    async fn a_source_bound_socket_gets_its_port_at_connect() {
        for loopback in [
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
        ] {
            let Ok(listener) = tokio::net::TcpListener::bind((loopback, 0)).await else {
                // A host without IPv6 loopback has nothing to check for it.
                assert!(loopback.is_ipv6(), "cannot listen on {loopback}");
                continue;
            };
            let socket = if loopback.is_ipv4() {
                tokio::net::TcpSocket::new_v4().unwrap()
            } else {
                tokio::net::TcpSocket::new_v6().unwrap()
            };
            defer_port_choice_to_connect(&socket).unwrap();
            socket.bind(SocketAddr::new(loopback, 0)).unwrap();
            assert_eq!(socket.local_addr().unwrap().port(), 0, "{loopback}");
            let tcp = socket
                .connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let local = tcp.local_addr().unwrap();
            assert_eq!(local.ip(), loopback);
            assert_ne!(local.port(), 0, "{loopback}");
        }
    }
}
