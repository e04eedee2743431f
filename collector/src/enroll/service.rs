//! The Enrollment gRPC service, served only to connections that present
//! no client certificate (`ingest::grpc_server` gives those nothing else),
//! and the Certificates service (renewal), served to agents over their own
//! mTLS connection.

use std::sync::Arc;

use campanile_proto::v1::certificates_server::Certificates;
use campanile_proto::v1::enrollment_server::Enrollment;
use campanile_proto::v1::{
    EnrollRequest, EnrollResponse, IssuedCertificate, RenewRequest, RenewResponse,
};
use tonic::{Request, Response, Status};

use super::{Enroller, Refusal};
use crate::ingest::tls::PeerInfo;
use crate::ingest::tls::source::SourceKey;

pub struct EnrollmentService {
    enroller: Arc<Enroller>,
}

impl EnrollmentService {
    pub fn new(enroller: Arc<Enroller>) -> Self {
        Self { enroller }
    }
}

#[tonic::async_trait]
impl Enrollment for EnrollmentService {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let certificate = off_thread(&self.enroller, request, |e, peer, req| {
            e.enroll(SourceKey::of(peer.remote_addr.ip()), &req)
        })
        .await?;
        Ok(Response::new(EnrollResponse {
            certificate: Some(certificate),
        }))
    }
}

/// Runs `work` (a store transaction and a signature) off the async
/// threads with the request and its connection's peer; a refusal becomes
/// its status.
async fn off_thread<R: Send + 'static>(
    enroller: &Arc<Enroller>,
    request: Request<R>,
    work: impl FnOnce(&Enroller, PeerInfo, R) -> Result<IssuedCertificate, Refusal> + Send + 'static,
) -> Result<IssuedCertificate, Status> {
    let peer = request
        .extensions()
        .get::<PeerInfo>()
        .cloned()
        .ok_or_else(|| Status::internal("request without its connection's peer"))?;
    let req = request.into_inner();
    let enroller = enroller.clone();
    tokio::task::spawn_blocking(move || work(&enroller, peer, req))
        .await
        .map_err(|e| Status::internal(format!("certificate task failed: {e}")))?
        .map_err(|refusal| refusal.status())
}

pub struct CertificatesService {
    enroller: Arc<Enroller>,
}

impl CertificatesService {
    pub fn new(enroller: Arc<Enroller>) -> Self {
        Self { enroller }
    }
}

#[tonic::async_trait]
impl Certificates for CertificatesService {
    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        let certificate = off_thread(&self.enroller, request, |e, peer, req| {
            e.renew(&peer, &req.csr_der)
        })
        .await?;
        Ok(Response::new(RenewResponse {
            certificate: Some(certificate),
        }))
    }
}
