//! The yardstick for the collector's ingest rate: a bare tonic server with
//! tonic's own mTLS that decodes the same `DeliverRequest` (gzip and all)
//! and acknowledges it without looking further: no identity check, no
//! validation, no store. What the collector reaches against it shows what
//! its own work costs.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use campanile_proto::v1::ingest_server::{Ingest, IngestServer};
use campanile_proto::v1::{DeliverRequest, DeliverResponse};
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

struct Bare;

#[tonic::async_trait]
impl Ingest for Bare {
    async fn deliver(
        &self,
        request: Request<DeliverRequest>,
    ) -> Result<Response<DeliverResponse>, Status> {
        let committed_seq = request
            .get_ref()
            .reports
            .iter()
            .map(|r| r.seq)
            .max()
            .unwrap_or(0);
        // Answered as the collector answers, compressed only if large.
        Ok(
            campanile_collector::ingest::service::answer_compressed_if_large(DeliverResponse {
                committed_seq,
                directives: None,
            }),
        )
    }
}

/// Serves on `listener` with the server certificate and CA in `pki_dir`
/// (`server.pem`, `server.key`, `ca.pem`) until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, pki_dir: &Path) -> Result<()> {
    let read =
        |name: &str| std::fs::read(pki_dir.join(name)).with_context(|| format!("read {name}"));
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(read("server.pem")?, read("server.key")?))
        .client_ca_root(Certificate::from_pem(read("ca.pem")?));
    Server::builder()
        .tls_config(tls)?
        .add_service(
            IngestServer::new(Bare)
                .max_decoding_message_size(16 << 20)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip),
        )
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await?;
    Ok(())
}

/// Binds `addr` and returns the listener with its real address.
pub async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
