//! The collector's own metrics: what it accepted, refused and how fast.
//! Long-lived (counters), unlike the host series rendered at scrape time.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub struct Telemetry {
    pub registry: Registry,
    pub reports_accepted: IntCounter,
    pub reports_duplicate: IntCounter,
    pub requests_rejected: IntCounterVec,
    pub handshake_failures: IntCounterVec,
    /// Completed handshakes by kind: `full` or `resumed`.
    pub handshakes: IntCounterVec,
    /// Agent connections open now (past the handshake).
    pub grpc_connections: IntGauge,
    /// TLS handshakes begun and not yet ended.
    pub handshakes_in_progress: IntGauge,
    /// Connections closed before or after their handshake to make room,
    /// by reason ([`SHED_REASONS`]).
    pub connections_shed: IntCounterVec,
    /// Connections accepted whose handshake has not ended.
    pub unauthenticated_connections: IntGauge,
    /// Sources (addresses, IPv6 /64s) those connections come from.
    pub unauthenticated_sources: IntGauge,
    /// Sources that recently presented a verified certificate.
    pub known_sources: IntGauge,
    /// Connections with a whole ClientHello waiting for a handshake slot.
    pub handshakes_queued: IntGauge,
    /// Slots given to a known source ahead of an unknown one.
    pub handshakes_prioritized: IntCounter,
    /// Request bytes received and held by requests not yet answered.
    pub inflight_request_bytes: IntGauge,
    /// Agent figures set aside as beyond any real agent's.
    pub agent_stats_refused: IntCounter,
    /// Send times so far off that the clock offset was clamped.
    pub clock_offsets_clamped: IntCounter,
    pub ingest_duration: Histogram,
    pub probe_results_ignored: IntCounter,
    pub reports_backfilled: IntCounter,
    pub commit_duration: Histogram,
    pub commit_reports: Histogram,
    pub checkpoint_duration: Histogram,
    pub alert_notifications: IntCounterVec,
    pub alertmanager_posts: IntCounterVec,
    pub alert_evaluation_failures: IntCounter,
    pub alert_evaluation_duration: Histogram,
    /// By where the evaluation's snapshot came from: `own` (read for it)
    /// or `scrape` (a `/metrics` scrape's, handed on).
    pub alert_evaluations: IntCounterVec,
    /// `campanile_enrollments_total{result}`.
    pub enrollments: IntCounterVec,
    /// `campanile_renewals_total{result}`.
    pub renewals: IntCounterVec,
    /// Open connections closed because their certificate was revoked.
    pub revoked_connections_closed: IntCounter,
    /// Revoked certificates in force (not yet expired).
    pub revoked_certificates: IntGauge,
    /// When the gRPC port's certificate in force expires (Unix seconds).
    pub server_certificate_expiry: IntGauge,
    /// Reloads of the certificates, by result: `ok` or `failed`.
    pub tls_reloads: IntCounterVec,
    /// Agents holding a valid certificate, by CA.
    pub agent_certificates: IntGaugeVec,
}

/// Reasons a request is refused; pre-registered so every series exists from
/// the start (a rate over a series that appears late misses its first hit).
pub const REJECT_REASONS: &[&str] = &[
    "wrong_host",
    "invalid_report",
    "bad_request",
    "unauthenticated",
    "no_client_certificate",
    "store_error",
    "implausible_seq",
    "body_timeout",
    "connection_buffer",
    "memory_budget",
];
/// Why connections are closed to make room (`campanile_grpc_connections_shed_total`).
pub const SHED_REASONS: &[&str] = &[
    "source_limit",
    "total_limit",
    "evicted",
    "hello_timeout",
    "slot_wait",
    "identity_limit",
    "enrollment_limit",
];
/// Results of enrollment attempts (`campanile_enrollments_total`): `ok`,
/// or the refusal's label (`enroll::Refusal::reason_label`).
pub const ENROLLMENT_RESULTS: &[&str] = &[
    "ok",
    "rate_limited",
    "unknown_token",
    "token_expired",
    "token_used_up",
    "token_revoked",
    "bad_csr",
    "bad_host_id",
    "extra_san",
    "wrong_site",
    "ca_requested",
    "weak_key",
    "unsupported_key",
    "host_taken",
    "store_error",
    "signing_failed",
];
/// Results of renewals (`campanile_renewals_total`).
pub const RENEWAL_RESULTS: &[&str] = &[
    "ok",
    "unauthenticated",
    "bad_csr",
    "bad_host_id",
    "extra_san",
    "wrong_host",
    "wrong_site",
    "ca_requested",
    "weak_key",
    "unsupported_key",
    "same_key",
    "revoked",
    "store_error",
    "signing_failed",
];
pub const HANDSHAKE_REASONS: &[&str] = &[
    "no_client_certificate",
    "certificate_expired",
    "resumed_certificate_expired",
    "unknown_issuer",
    "revoked",
    "invalid_certificate",
    "tls_error",
    "io_error",
    "timeout",
];

impl Telemetry {
    pub fn new() -> Self {
        let registry = Registry::new();
        let reports_accepted = IntCounter::new(
            "campanile_ingest_reports_accepted_total",
            "Reports committed to the store.",
        )
        .expect("valid metric");
        let reports_duplicate = IntCounter::new(
            "campanile_ingest_reports_duplicate_total",
            "Reports acknowledged but dropped as already stored (same host, epoch and seq).",
        )
        .expect("valid metric");
        let requests_rejected = IntCounterVec::new(
            Opts::new(
                "campanile_ingest_requests_rejected_total",
                "Deliver requests refused, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let handshake_failures = IntCounterVec::new(
            Opts::new(
                "campanile_tls_handshake_failures_total",
                "TLS handshakes on the gRPC port that failed, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let handshakes = IntCounterVec::new(
            Opts::new(
                "campanile_tls_handshakes_total",
                "TLS handshakes on the gRPC port that succeeded: full (certificate checked and \
                 signed) or resumed (a session ticket of an earlier connection).",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let grpc_connections = IntGauge::new(
            "campanile_grpc_connections",
            "Agent connections open now (TLS established).",
        )
        .expect("valid metric");
        let handshakes_in_progress = IntGauge::new(
            "campanile_tls_handshakes_in_progress",
            "TLS handshakes on the gRPC port begun and not yet ended.",
        )
        .expect("valid metric");
        let connections_shed = IntCounterVec::new(
            Opts::new(
                "campanile_grpc_connections_shed_total",
                "Connections on the gRPC port closed to make room, by reason: source_limit \
                 (its source held grpc.max_connections_per_source before authentication), \
                 total_limit (all grpc.max_unauthenticated_connections taken), evicted (its \
                 place given to a smaller source's), hello_timeout (no whole ClientHello \
                 within grpc.client_hello_timeout_ms), slot_wait (no handshake slot within \
                 half of grpc.handshake_timeout_secs), identity_limit (replaced by a newer \
                 connection of the same certificate identity).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let unauthenticated_connections = IntGauge::new(
            "campanile_grpc_unauthenticated_connections",
            "Connections on the gRPC port accepted whose TLS handshake has not ended.",
        )
        .expect("valid metric");
        let unauthenticated_sources = IntGauge::new(
            "campanile_grpc_unauthenticated_sources",
            "Sources (IPv4 addresses, IPv6 /64 prefixes) of those connections.",
        )
        .expect("valid metric");
        let known_sources = IntGauge::new(
            "campanile_grpc_known_sources",
            "Sources that presented a verified certificate within grpc.known_source_ttl_secs; \
             their handshakes go first when slots are scarce.",
        )
        .expect("valid metric");
        let handshakes_queued = IntGauge::new(
            "campanile_tls_handshakes_queued",
            "Connections whose ClientHello has come, waiting for a handshake slot.",
        )
        .expect("valid metric");
        let handshakes_prioritized = IntCounter::new(
            "campanile_tls_handshakes_prioritized_total",
            "Handshake slots given to a known source ahead of an unknown one that waited longer.",
        )
        .expect("valid metric");
        let revoked_connections_closed = IntCounter::new(
            "campanile_revoked_connections_closed_total",
            "Open agent connections closed because their certificate was revoked.",
        )
        .expect("valid metric");
        let revoked_certificates = IntGauge::new(
            "campanile_revoked_certificates",
            "Revoked certificates the gRPC port refuses (those not yet expired, or of unknown \
             expiry).",
        )
        .expect("valid metric");
        let server_certificate_expiry = IntGauge::new(
            "campanile_server_certificate_expiry_timestamp_seconds",
            "When the certificate the gRPC port presents expires.",
        )
        .expect("valid metric");
        let tls_reloads = IntCounterVec::new(
            Opts::new(
                "campanile_tls_reloads_total",
                "Reloads of the gRPC port's certificates (SIGHUP or a changed file), by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        for r in ["ok", "failed"] {
            tls_reloads.with_label_values(&[r]);
        }
        let agent_certificates = IntGaugeVec::new(
            Opts::new(
                "campanile_agent_certificates",
                "Agents holding a valid certificate, by the SHA-256 of the CA that signed it \
                 (by_hand: issued by hand, not by enrollment).",
            ),
            &["ca"],
        )
        .expect("valid metric");
        let inflight_request_bytes = IntGauge::new(
            "campanile_grpc_inflight_request_bytes",
            "Request bytes received and held by requests not yet answered (bounded by \
             grpc.max_inflight_request_bytes).",
        )
        .expect("valid metric");
        let agent_stats_refused = IntCounter::new(
            "campanile_ingest_agent_stats_refused_total",
            "Agents' figures about themselves (spool, drops) set aside as beyond any real \
             agent's; the reports that carried them were kept.",
        )
        .expect("valid metric");
        let clock_offsets_clamped = IntCounter::new(
            "campanile_ingest_clock_offsets_clamped_total",
            "Requests whose send time was farther from the collector's clock than \
             limits.max_clock_offset_secs; the offset recorded is that bound.",
        )
        .expect("valid metric");
        let ingest_duration = Histogram::with_opts(
            HistogramOpts::new(
                "campanile_ingest_duration_seconds",
                "Time to validate and commit one Deliver request.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )
        .expect("valid metric");
        let probe_results_ignored = IntCounter::new(
            "campanile_probe_results_ignored_total",
            "Probe results ignored because their target is not in probes.targets.",
        )
        .expect("valid metric");
        let reports_backfilled = IntCounter::new(
            "campanile_ingest_reports_backfilled_total",
            "Reports committed that were collected before the host's current state: \
             counted, not made current.",
        )
        .expect("valid metric");
        let commit_duration = Histogram::with_opts(
            HistogramOpts::new(
                "campanile_store_commit_duration_seconds",
                "Time to commit one group of requests (one SQLite transaction, one fsync).",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
        )
        .expect("valid metric");
        let checkpoint_duration = Histogram::with_opts(
            HistogramOpts::new(
                "campanile_store_checkpoint_duration_seconds",
                "Time to copy the WAL back into the database (a passive checkpoint, \
                 off the commit path).",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )
        .expect("valid metric");
        let commit_reports = Histogram::with_opts(
            HistogramOpts::new(
                "campanile_store_commit_reports",
                "Reports per group commit (per SQLite transaction).",
            )
            .buckets(vec![
                1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
            ]),
        )
        .expect("valid metric");
        let alert_notifications = IntCounterVec::new(
            Opts::new(
                "campanile_alert_notifications_total",
                "Webhook notifications by receiver and outcome: delivered, retried (an attempt \
                 failed with 5xx, 429 or a timeout), rejected (another 4xx; not retried), \
                 expired (older than outbox_max_age_secs).",
            ),
            &["receiver", "outcome"],
        )
        .expect("valid metric");
        let alertmanager_posts = IntCounterVec::new(
            Opts::new(
                "campanile_alertmanager_posts_total",
                "Pushes of the alert state to an Alertmanager, by outcome.",
            ),
            &["alertmanager", "outcome"],
        )
        .expect("valid metric");
        let alert_evaluation_failures = IntCounter::new(
            "campanile_alert_evaluation_failures_total",
            "Alert evaluations that could not read the store or store their result.",
        )
        .expect("valid metric");
        let alert_evaluation_duration = Histogram::with_opts(
            HistogramOpts::new(
                "campanile_alert_evaluation_duration_seconds",
                "Time to evaluate every alert rule over the territory once.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .expect("valid metric");
        let alert_evaluations = IntCounterVec::new(
            Opts::new(
                "campanile_alert_evaluations_total",
                "Alert evaluations, by whose snapshot of the territory they read: their own, or a scrape's.",
            ),
            &["snapshot"],
        )
        .expect("valid metric");
        for s in ["own", "scrape"] {
            alert_evaluations.with_label_values(&[s]);
        }
        let enrollments = IntCounterVec::new(
            Opts::new(
                "campanile_enrollments_total",
                "Enrollment attempts (a token traded for a certificate), by result: ok, or why \
                 it was refused.",
            ),
            &["result"],
        )
        .expect("valid metric");
        for r in ENROLLMENT_RESULTS {
            enrollments.with_label_values(&[r]);
        }
        let renewals = IntCounterVec::new(
            Opts::new(
                "campanile_renewals_total",
                "Certificate renewals asked by agents over their own connection, by result: ok, \
                 or why it was refused.",
            ),
            &["result"],
        )
        .expect("valid metric");
        for r in RENEWAL_RESULTS {
            renewals.with_label_values(&[r]);
        }
        for r in REJECT_REASONS {
            requests_rejected.with_label_values(&[r]);
        }
        for r in HANDSHAKE_REASONS {
            handshake_failures.with_label_values(&[r]);
        }
        for r in SHED_REASONS {
            connections_shed.with_label_values(&[r]);
        }
        for k in ["full", "resumed"] {
            handshakes.with_label_values(&[k]);
        }
        for c in [
            Box::new(reports_accepted.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reports_duplicate.clone()),
            Box::new(requests_rejected.clone()),
            Box::new(handshake_failures.clone()),
            Box::new(handshakes.clone()),
            Box::new(grpc_connections.clone()),
            Box::new(handshakes_in_progress.clone()),
            Box::new(connections_shed.clone()),
            Box::new(unauthenticated_connections.clone()),
            Box::new(unauthenticated_sources.clone()),
            Box::new(known_sources.clone()),
            Box::new(handshakes_queued.clone()),
            Box::new(handshakes_prioritized.clone()),
            Box::new(inflight_request_bytes.clone()),
            Box::new(agent_stats_refused.clone()),
            Box::new(clock_offsets_clamped.clone()),
            Box::new(ingest_duration.clone()),
            Box::new(probe_results_ignored.clone()),
            Box::new(reports_backfilled.clone()),
            Box::new(commit_duration.clone()),
            Box::new(commit_reports.clone()),
            Box::new(checkpoint_duration.clone()),
            Box::new(alert_notifications.clone()),
            Box::new(alertmanager_posts.clone()),
            Box::new(alert_evaluation_failures.clone()),
            Box::new(alert_evaluation_duration.clone()),
            Box::new(alert_evaluations.clone()),
            Box::new(enrollments.clone()),
            Box::new(renewals.clone()),
            Box::new(revoked_connections_closed.clone()),
            Box::new(revoked_certificates.clone()),
            Box::new(server_certificate_expiry.clone()),
            Box::new(tls_reloads.clone()),
            Box::new(agent_certificates.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Self {
            registry,
            reports_accepted,
            reports_duplicate,
            requests_rejected,
            handshake_failures,
            handshakes,
            grpc_connections,
            handshakes_in_progress,
            connections_shed,
            unauthenticated_connections,
            unauthenticated_sources,
            known_sources,
            handshakes_queued,
            handshakes_prioritized,
            inflight_request_bytes,
            agent_stats_refused,
            clock_offsets_clamped,
            ingest_duration,
            probe_results_ignored,
            reports_backfilled,
            commit_duration,
            commit_reports,
            checkpoint_duration,
            alert_notifications,
            alertmanager_posts,
            alert_evaluation_failures,
            alert_evaluation_duration,
            alert_evaluations,
            enrollments,
            renewals,
            revoked_connections_closed,
            revoked_certificates,
            server_certificate_expiry,
            tls_reloads,
            agent_certificates,
        }
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}
