//! The collector's own metrics: what it accepted, refused and how fast.
//! Long-lived (counters), unlike the host series rendered at scrape time.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

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
    /// Connections closed unanswered after waiting too long for one of
    /// `grpc.max_handshakes_in_progress`.
    pub connections_shed: IntCounter,
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
}

/// Reasons a request is refused; pre-registered so every series exists from
/// the start (a rate over a series that appears late misses its first hit).
pub const REJECT_REASONS: &[&str] = &[
    "wrong_host",
    "invalid_report",
    "bad_request",
    "unauthenticated",
    "store_error",
];
pub const HANDSHAKE_REASONS: &[&str] = &[
    "no_client_certificate",
    "certificate_expired",
    "resumed_certificate_expired",
    "unknown_issuer",
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
        let connections_shed = IntCounter::new(
            "campanile_grpc_connections_shed_total",
            "Connections on the gRPC port closed before their TLS handshake after waiting \
             half of grpc.handshake_timeout_secs for one of grpc.max_handshakes_in_progress \
             (the collector is overloaded; the agents retry later).",
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
        for r in REJECT_REASONS {
            requests_rejected.with_label_values(&[r]);
        }
        for r in HANDSHAKE_REASONS {
            handshake_failures.with_label_values(&[r]);
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
        }
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}
