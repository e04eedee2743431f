//! The gRPC service agents call: identity from the certificate, validation,
//! then the group committer; the ack goes out only after the commit.

use std::sync::Arc;
use std::time::Instant;

use campanile_proto::INVALID_SEQ_METADATA;
use campanile_proto::v1::ingest_server::Ingest;
use campanile_proto::v1::{DeliverRequest, DeliverResponse, Directives};
use tonic::{Request, Response, Status};

use crate::clock::now_ms;
use crate::ingest::tls::PeerInfo;
use crate::ingest::validate::{self, Limits, Refusal};
use crate::pki::CurrentSigner;
use crate::reach::Reach;
use crate::store::StoreError;
use crate::store::commit::{self, CommitError, Committer};
use crate::telemetry::Telemetry;
use campanile_territory::host::PeerFacts;

pub struct IngestService {
    committer: Committer,
    limits: Limits,
    telemetry: Arc<Telemetry>,
    reach: Arc<Reach>,
    signer: Arc<CurrentSigner>,
}

impl IngestService {
    pub fn new(
        committer: Committer,
        limits: Limits,
        telemetry: Arc<Telemetry>,
        reach: Arc<Reach>,
        signer: Arc<CurrentSigner>,
    ) -> Self {
        Self {
            committer,
            limits,
            telemetry,
            reach,
            signer,
        }
    }

    fn reject(&self, reason: &str) {
        self.telemetry
            .requests_rejected
            .with_label_values(&[reason])
            .inc();
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn deliver(
        &self,
        request: Request<DeliverRequest>,
    ) -> Result<Response<DeliverResponse>, Status> {
        let started = Instant::now();
        let peer = request.extensions().get::<PeerInfo>().cloned();
        let Some(peer) = peer else {
            // Only reachable if the server is wired without our TLS acceptor.
            self.reject("unauthenticated");
            return Err(Status::unauthenticated("no verified client certificate"));
        };
        let identity = match peer.identity {
            Ok(id) => id,
            Err(reason) => {
                self.reject("unauthenticated");
                tracing::warn!(peer = %peer.remote_addr, %reason, "certificate carries no usable identity");
                return Err(Status::unauthenticated(format!(
                    "client certificate: {reason}"
                )));
            }
        };
        let mut body = request.into_inner();
        let now = now_ms();
        let clock_offset = validate::clock_offset_ms(body.sent_unix_ms, now, &self.limits);
        if let Err(refusal) = validate::request(&body, &identity, &self.limits, now, clock_offset) {
            self.reject(refusal.reason_label());
            tracing::warn!(host = %identity.host_id, peer = %peer.remote_addr, reason = %refusal, "report refused");
            return Err(match &refusal {
                Refusal::WrongHost { .. } => Status::permission_denied(refusal.to_string()),
                Refusal::Invalid { seq, .. } => invalid_report(*seq, refusal.to_string()),
                _ => Status::invalid_argument(refusal.to_string()),
            });
        }
        if let Some(stats) = &body.agent_stats
            && let Err(reason) = validate::agent_stats(stats)
        {
            self.telemetry.agent_stats_refused.inc();
            tracing::warn!(host = %identity.host_id, %reason, "agent figures refused; its reports are kept");
            body.agent_stats = None;
        }
        if clock_offset.is_some_and(|o| o.clamped) {
            self.telemetry.clock_offsets_clamped.inc();
            tracing::warn!(host = %identity.host_id, sent_unix_ms = body.sent_unix_ms, "agent clock beyond limits.max_clock_offset_secs; its offset is recorded as that bound");
        }
        // One plan for the whole request: the site the figures count for
        // and the duty in the ack come from the same snapshot.
        let plan = self.reach.plan();
        let held_duty = body
            .reports
            .last()
            .map(|r| r.probe_duty_sha256.clone())
            .unwrap_or_default();
        // The register's site when the plan knows the host; a new host
        // counts for its certificate's site until then.
        let site = plan
            .site_of(&identity.host_id)
            .unwrap_or(&identity.site)
            .to_owned();
        let request = commit::Request {
            identity: identity.clone(),
            reports: body.reports,
            agent_stats: body.agent_stats,
            received_ms: now,
            site,
            peer: PeerFacts {
                clock_offset_ms: clock_offset.map(|o| o.ms),
                cert_not_after_ms: peer.cert_not_after_ms,
            },
        };
        let outcome = match self.committer.commit(request).await {
            Ok(o) => o,
            Err(CommitError::Store(StoreError::Implausible { seq, reason, .. })) => {
                self.reject("implausible_seq");
                tracing::warn!(host = %identity.host_id, peer = %peer.remote_addr, seq, %reason, "report refused");
                return Err(invalid_report(seq, format!("report seq={seq}: {reason}")));
            }
            Err(CommitError::Store(e)) => {
                self.reject("store_error");
                tracing::error!(host = %identity.host_id, error = %e, "store commit failed");
                return Err(Status::unavailable(
                    "collector cannot store reports now; retry later",
                ));
            }
            Err(CommitError::Stopped) => {
                return Err(Status::unavailable(
                    "collector is shutting down; retry later",
                ));
            }
        };
        self.telemetry
            .reports_accepted
            .inc_by(outcome.accepted as u64);
        self.telemetry
            .reports_duplicate
            .inc_by(outcome.duplicates as u64);
        self.telemetry
            .reports_backfilled
            .inc_by(outcome.backfilled as u64);
        if outcome.ignored_probe_results > 0 {
            self.telemetry
                .probe_results_ignored
                .inc_by(outcome.ignored_probe_results as u64);
            tracing::debug!(host = %identity.host_id, ignored = outcome.ignored_probe_results, "probe results for targets not in probes.targets ignored");
        }
        self.telemetry
            .ingest_duration
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(
            host = %identity.host_id,
            accepted = outcome.accepted,
            duplicates = outcome.duplicates,
            committed_seq = outcome.committed_seq,
            "reports committed"
        );
        let answer = DeliverResponse {
            committed_seq: outcome.committed_seq,
            directives: Some(Directives {
                interval_secs: 0,
                send_full_inventory: outcome.need_full_inventory,
                probe_duty: plan.directive(&identity.host_id, &held_duty),
                renew_certificate: self.signer.wants_renewal(peer.cert_issuer_sha256),
            }),
        };
        Ok(answer_compressed_if_large(answer))
    }
}

/// INVALID_ARGUMENT naming the report: the agent drops that one report
/// (it will never be accepted) and sends the rest.
fn invalid_report(seq: u64, message: String) -> Status {
    let mut s = Status::invalid_argument(message);
    if let Ok(v) = seq.to_string().parse() {
        s.metadata_mut().insert(INVALID_SEQ_METADATA, v);
    }
    s
}

/// An answer is a few bytes unless it carries a probe duty: gzip would
/// make it larger, at the cost of a compressor per answer.
pub fn answer_compressed_if_large<M: prost::Message>(answer: M) -> Response<M> {
    let large = campanile_proto::worth_compressing(answer.encoded_len());
    let mut response = Response::new(answer);
    if !large {
        response.disable_compression();
    }
    response
}

#[cfg(test)]
mod tests {
    use campanile_proto::v1::{DeviceProbe, ProbeDuty};
    use tonic::codec::SingleMessageCompressionOverride;

    use super::*;

    fn compression(r: &Response<DeliverResponse>) -> Option<SingleMessageCompressionOverride> {
        r.extensions()
            .get::<SingleMessageCompressionOverride>()
            .copied()
    }

    #[test]
    fn a_plain_ack_goes_uncompressed_and_a_long_probe_duty_compressed() {
        let ack = answer_compressed_if_large(DeliverResponse {
            committed_seq: 7,
            directives: Some(Directives::default()),
        });
        assert_eq!(
            compression(&ack),
            Some(SingleMessageCompressionOverride::Disable)
        );
        let devices = (0..64)
            .map(|i| DeviceProbe {
                device: format!("switch-floor-{i}"),
                address: format!("10.20.{i}.254"),
                tcp_port: None,
            })
            .collect();
        let duty = answer_compressed_if_large(DeliverResponse {
            committed_seq: 7,
            directives: Some(Directives {
                probe_duty: Some(ProbeDuty {
                    sha256: vec![1; 32],
                    devices,
                }),
                ..Default::default()
            }),
        });
        assert_eq!(compression(&duty), None, "as the client negotiated");
    }
}
