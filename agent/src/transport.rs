//! The mTLS gRPC client: one lazily connected channel that reconnects by
//! itself, gzip-compressed requests when they are large, and exponential backoff with full jitter between failed sends so
//! a territory of agents coming back after an outage does not arrive at once.

use std::sync::Arc;
use std::time::Duration;

use campanile_proto::INVALID_SEQ_METADATA;
use campanile_proto::v1::ingest_client::IngestClient;
use campanile_proto::v1::{AgentStats, DeliverRequest, DeliverResponse, Report};
use prost::Message as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;

use crate::config::CollectorEndpoint;
use crate::dial;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("collector endpoint {endpoint}: {message}")]
    Endpoint { endpoint: String, message: String },
}

/// How a Deliver call ended, as the send loop needs to act on it.
#[derive(Debug)]
pub enum SendError {
    /// The collector refused one report as invalid: drop it, send the rest.
    InvalidReport { seq: u64, message: String },
    /// The request is larger than the collector accepts: send fewer reports.
    TooLarge { message: String },
    /// The whole request was refused and will never be accepted as is
    /// (wrong host in certificate, malformed request).
    Refused { code: tonic::Code, message: String },
    /// Network, TLS, timeout, collector busy: retry later.
    Retry { message: String },
}

pub struct Transport {
    /// Two clients over the one channel: tonic compresses all of a
    /// client's requests or none, and only large ones are worth it
    /// ([`campanile_proto::COMPRESS_MIN_BYTES`]).
    plain: IngestClient<Channel>,
    gzip: IngestClient<Channel>,
    /// For other calls over the same connection (renewal).
    channel: Channel,
    endpoint: String,
}

impl Transport {
    pub fn new(cfg: &CollectorEndpoint) -> Result<Self, TransportError> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|source| TransportError::Read {
                path: p.to_owned(),
                source,
            })
        };
        let err = |message: String| TransportError::Endpoint {
            endpoint: cfg.endpoint.clone(),
            message,
        };
        let pem = |path: &std::path::Path, what: &str, e: rustls::pki_types::pem::Error| {
            err(format!("{}: {what}: {e}", path.display()))
        };
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&read(&cfg.ca_cert_path)?) {
            let ca = ca.map_err(|e| pem(&cfg.ca_cert_path, "bad CA certificate", e))?;
            roots
                .add(ca)
                .map_err(|e| err(format!("{}: {e}", cfg.ca_cert_path.display())))?;
        }
        let chain = CertificateDer::pem_slice_iter(&read(&cfg.cert_path)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem(&cfg.cert_path, "bad certificate", e))?;
        let key = PrivateKeyDer::from_pem_slice(&read(&cfg.key_path)?)
            .map_err(|e| pem(&cfg.key_path, "no usable private key", e))?;
        let tls = dial::client_config(|b| {
            b.with_root_certificates(roots)
                .with_client_auth_cert(chain, key)
        })
        .map_err(|e| err(format!("TLS: {e}")))?;
        let channel = dial::channel(
            &dial::Dial {
                authority: cfg.authority.clone(),
                server_name: cfg.server_name.clone(),
                connect_timeout: Duration::from_secs(cfg.connect_timeout_secs),
                request_timeout: Duration::from_secs(cfg.request_timeout_secs),
            },
            Arc::new(tls),
        )
        .map_err(|e| err(e.to_string()))?;
        let plain = IngestClient::new(channel.clone()).accept_compressed(CompressionEncoding::Gzip);
        Ok(Self {
            channel,
            // A backlog of similar reports compresses several times over
            // on slow municipal links.
            gzip: plain.clone().send_compressed(CompressionEncoding::Gzip),
            plain,
            endpoint: cfg.endpoint.clone(),
        })
    }

    /// The connection to the collector, for calls beside Deliver.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub async fn deliver(
        &mut self,
        reports: Vec<Report>,
        agent_stats: AgentStats,
    ) -> Result<DeliverResponse, SendError> {
        let request = DeliverRequest {
            reports,
            agent_stats: Some(agent_stats),
            sent_unix_ms: crate::clock::now_ms(),
        };
        let client = if campanile_proto::worth_compressing(request.encoded_len()) {
            &mut self.gzip
        } else {
            &mut self.plain
        };
        match client.deliver(request).await {
            Ok(resp) => Ok(resp.into_inner()),
            Err(status) => Err(classify(&status)),
        }
    }
}

fn classify(status: &tonic::Status) -> SendError {
    use tonic::Code;
    let message = format!("{}: {}", status.code(), status.message());
    match status.code() {
        Code::InvalidArgument => {
            let seq = status
                .metadata()
                .get(INVALID_SEQ_METADATA)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.parse().ok());
            match seq {
                Some(seq) => SendError::InvalidReport { seq, message },
                None => SendError::Refused {
                    code: status.code(),
                    message,
                },
            }
        }
        Code::OutOfRange | Code::ResourceExhausted => SendError::TooLarge { message },
        Code::PermissionDenied | Code::Unauthenticated => SendError::Refused {
            code: status.code(),
            message,
        },
        _ => {
            let cause = source_suffix(status);
            // rustls names the alert the collector sends a revoked
            // certificate; no retry will ever get through.
            if cause.contains("CertificateRevoked") {
                return SendError::Refused {
                    code: status.code(),
                    message: format!(
                        "the collector revoked this agent's certificate: enroll again \
                         (campanile-agent enroll --token ...){cause}"
                    ),
                };
            }
            SendError::Retry {
                message: format!("{message}{cause}"),
            }
        }
    }
}

/// What a status carries of its cause (a connection's error), as ` (...)`.
pub(crate) fn source_suffix(status: &tonic::Status) -> String {
    use std::error::Error;
    status
        .source()
        .map(|s| format!(" ({})", source_chain(s)))
        .unwrap_or_default()
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

/// Exponential backoff with full jitter: each wait is uniform in
/// [0, min(cap, base * 2^attempt)].
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(fastrand::u64(0..=ms))
    }

    /// Delays handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_but_never_exceeds_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for _ in 0..50 {
            assert!(b.next_delay() <= Duration::from_secs(5));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
