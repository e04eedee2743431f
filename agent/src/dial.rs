//! How the agent reaches the collector: TCP, then TLS with a rustls
//! configuration of the caller's (reports: the CA bundle and the agent's
//! certificate; enrollment: the token's pinned CA and no certificate),
//! then gRPC over that stream.
//!
//! Both go through this one connector so the HTTP/2 client is compiled
//! once, for one stream type: two (tonic's own TLS beside this one) cost a
//! router's binary about 130 KB.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint};

/// Where to dial and how long to wait.
#[derive(Debug, Clone)]
pub struct Dial {
    /// `host:port`.
    pub authority: String,
    /// The name the collector's certificate must be valid for.
    pub server_name: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("{0:?} is not a name or address a certificate can carry")]
    ServerName(String),
    #[error("{authority}: {message}")]
    Endpoint { authority: String, message: String },
}

/// The TLS settings every connection to the collector shares: ring,
/// TLS 1.2 or 1.3, HTTP/2 by ALPN.
pub fn client_config(
    build: impl FnOnce(
        rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>,
    ) -> Result<rustls::ClientConfig, rustls::Error>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = build(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?,
    )?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// A channel that connects (again) when a call needs it, over TLS with
/// `tls`.
pub fn channel(dial: &Dial, tls: Arc<rustls::ClientConfig>) -> Result<Channel, DialError> {
    let server_name = ServerName::try_from(dial.server_name.clone())
        .map_err(|_| DialError::ServerName(dial.server_name.clone()))?;
    let connector = tokio_rustls::TlsConnector::from(tls);
    let authority = dial.authority.clone();
    let connect = tower::service_fn(move |_: tonic::codegen::http::Uri| {
        let (connector, server_name, authority) =
            (connector.clone(), server_name.clone(), authority.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect(authority.as_str()).await?;
            let _ = tcp.set_nodelay(true);
            let stream = connector.connect(server_name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    // http: the connector does the TLS itself.
    let endpoint = Endpoint::from_shared(format!("http://{}", dial.authority)).map_err(|e| {
        DialError::Endpoint {
            authority: dial.authority.clone(),
            message: e.to_string(),
        }
    })?;
    Ok(endpoint
        .connect_timeout(dial.connect_timeout)
        .timeout(dial.request_timeout)
        .http2_keep_alive_interval(Duration::from_secs(60))
        .keep_alive_timeout(Duration::from_secs(20))
        .connect_with_connector_lazy(connect))
}
