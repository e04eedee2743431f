//! The Enrollment gRPC service, served only to connections that present
//! no client certificate (`ingest::grpc_server` gives those nothing else),
//! and the Certificates service (renewal), served to agents over their own
//! mTLS connection.

use std::sync::Arc;

use campanile_proto::v1::certificates_server::Certificates;
use campanile_proto::v1::enrollment_server::Enrollment;
use campanile_proto::v1::{EnrollRequest, EnrollResponse, RenewRequest, RenewResponse};
use tonic::{Request, Response, Status};

use super::Enroller;
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
        let source = request
            .extensions()
            .get::<PeerInfo>()
            .map(|p| SourceKey::of(p.remote_addr.ip()))
            .ok_or_else(|| Status::internal("request without its connection's peer"))?;
        let req = request.into_inner();
        let enroller = self.enroller.clone();
        // A store transaction and a signature: off the async threads.
        let issued = tokio::task::spawn_blocking(move || enroller.enroll(source, &req))
            .await
            .map_err(|e| Status::internal(format!("enrollment task failed: {e}")))?;
        match issued {
            Ok(certificate) => Ok(Response::new(EnrollResponse {
                certificate: Some(certificate),
            })),
            Err(refusal) => Err(refusal.status()),
        }
    }
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
        let peer = request
            .extensions()
            .get::<PeerInfo>()
            .cloned()
            .ok_or_else(|| Status::internal("request without its connection's peer"))?;
        let req = request.into_inner();
        let enroller = self.enroller.clone();
        let issued = tokio::task::spawn_blocking(move || enroller.renew(&peer, &req.csr_der))
            .await
            .map_err(|e| Status::internal(format!("renewal task failed: {e}")))?;
        match issued {
            Ok(certificate) => Ok(Response::new(RenewResponse {
                certificate: Some(certificate),
            })),
            Err(refusal) => Err(refusal.status()),
        }
    }
}
