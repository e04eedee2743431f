//! The notification a receiver gets: the Alertmanager webhook payload,
//! version 4, field for field, so receivers written for Alertmanager work
//! unchanged; optionally signed with HMAC-SHA256.
//!
//! Signing (documented in the README, "Alert webhooks"): the collector sends
//! `X-Campanile-Timestamp: <unix seconds>` and
//! `X-Campanile-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
//! The timestamp is inside the signed bytes, so a receiver that refuses old
//! timestamps also refuses replays.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::engine::{Alert, State};
use super::timefmt::{ZERO_TIME, rfc3339};

pub const TIMESTAMP_HEADER: &str = "X-Campanile-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Campanile-Signature";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    pub receiver: String,
    pub status: String,
    pub alerts: Vec<PayloadAlert>,
    pub group_labels: BTreeMap<String, String>,
    pub common_labels: BTreeMap<String, String>,
    pub common_annotations: BTreeMap<String, String>,
    #[serde(rename = "externalURL")]
    pub external_url: String,
    pub version: String,
    pub group_key: String,
    pub truncated_alerts: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadAlert {
    pub status: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

pub fn generator_url(external_url: &str, a: &Alert) -> String {
    format!(
        "{external_url}/api/v1/alerts?fingerprint={:016x}",
        a.fingerprint
    )
}

pub fn payload_alert(a: &Alert, external_url: &str) -> PayloadAlert {
    let resolved = a.state() == State::Resolved;
    PayloadAlert {
        status: if resolved { "resolved" } else { "firing" }.into(),
        labels: a.labels.clone(),
        annotations: a.annotations.clone(),
        starts_at: rfc3339(a.fired_ms.unwrap_or(a.active_since_ms)),
        ends_at: a.resolved_ms.map_or_else(|| ZERO_TIME.to_owned(), rfc3339),
        generator_url: generator_url(external_url, a),
        fingerprint: format!("{:016x}", a.fingerprint),
    }
}

/// Labels (or annotations) every alert shares with the same value.
fn common<'a>(
    maps: impl Iterator<Item = &'a BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut out: Option<BTreeMap<String, String>> = None;
    for m in maps {
        match &mut out {
            None => out = Some(m.clone()),
            Some(c) => c.retain(|k, v| m.get(k) == Some(v)),
        }
    }
    out.unwrap_or_default()
}

/// Firing alerts first, then resolved, each oldest first; past
/// `max_alerts` (0 = no limit) the rest are counted, not sent.
pub fn build(
    receiver: &str,
    group_key: &str,
    group_labels: BTreeMap<String, String>,
    alerts: &[&Alert],
    max_alerts: usize,
    external_url: &str,
) -> Payload {
    let mut sorted: Vec<&Alert> = alerts.to_vec();
    sorted.sort_by_key(|a| {
        (
            a.state() == State::Resolved,
            a.fired_ms.unwrap_or(a.active_since_ms),
            a.fingerprint,
        )
    });
    let firing = sorted.iter().any(|a| a.state() != State::Resolved);
    let common_labels = common(sorted.iter().map(|a| &a.labels));
    let common_annotations = common(sorted.iter().map(|a| &a.annotations));
    let total = sorted.len();
    if max_alerts > 0 {
        sorted.truncate(max_alerts);
    }
    Payload {
        receiver: receiver.to_owned(),
        status: if firing { "firing" } else { "resolved" }.into(),
        truncated_alerts: (total - sorted.len()) as u64,
        alerts: sorted
            .iter()
            .map(|a| payload_alert(a, external_url))
            .collect(),
        group_labels,
        common_labels,
        common_annotations,
        external_url: external_url.to_owned(),
        version: "4".into(),
        group_key: group_key.to_owned(),
    }
}

/// `sha256=<hex>` over `"<timestamp>.<body>"`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let mut hex = String::with_capacity(71);
    hex.push_str("sha256=");
    for b in tag.as_ref() {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// What a receiver verifies: the signature header against its secret, in
/// constant time.
pub fn verify(secret: &[u8], timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(hex) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Some(tag) = decode_hex(hex) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut msg = Vec::with_capacity(timestamp.len() + 1 + body.len());
    msg.extend_from_slice(timestamp.as_bytes());
    msg.push(b'.');
    msg.extend_from_slice(body);
    ring::hmac::verify(&key, &msg, &tag).is_ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// 5xx, 429, timeouts and connection errors: try again later, not
    /// before `retry_after` when the receiver said so.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Any other answer (4xx): the receiver will not take it; retrying
    /// would only repeat the refusal.
    Rejected {
        reason: String,
    },
}

pub fn classify(status: reqwest::StatusCode, retry_after: Option<&str>, body: &str) -> Attempt {
    let snippet: String = body.chars().take(200).collect();
    if status.is_success() {
        Attempt::Delivered
    } else if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Attempt::Retry {
            reason: format!("HTTP {status}: {snippet}"),
            retry_after: retry_after
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        }
    } else {
        Attempt::Rejected {
            reason: format!("HTTP {status}: {snippet}"),
        }
    }
}

/// POSTs one JSON body, signed when a secret is given.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &str,
    secret: Option<&[u8]>,
    now_ms: i64,
) -> Attempt {
    let mut req = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_owned());
    if let Some(secret) = secret {
        let ts = now_ms.div_euclid(1000);
        req = req
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, signature(secret, ts, body.as_bytes()));
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let text = resp.text().await.unwrap_or_default();
            classify(status, retry_after.as_deref(), &text)
        }
        Err(e) => Attempt::Retry {
            reason: if e.is_timeout() {
                "timed out".to_owned()
            } else {
                error_chain(&e)
            },
            retry_after: None,
        },
    }
}

/// reqwest's top-level message hides the cause ("error sending request");
/// operators need the connection refused / certificate reason under it.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// A client for one receiver or sink: its timeout, its extra CA.
pub fn client(
    timeout: Duration,
    ca_cert_path: Option<&std::path::Path>,
) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("campanile-collector/", env!("CARGO_PKG_VERSION")));
    if let Some(p) = ca_cert_path {
        let pem = std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: {e}", p.display()))?;
        b = b.tls_certs_merge(certs);
    }
    b.build().map_err(|e| error_chain(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str, host: &str, fired: i64, resolved: Option<i64>) -> Alert {
        super::super::engine::sample_alert(name, "Borgo", host, fired, resolved)
    }

    #[test]
    fn payload_has_the_alertmanager_v4_shape() {
        let a = alert("HostDown", "pc-1", 1_795_334_400_000, None);
        let b = alert(
            "HostDown",
            "pc-2",
            1_795_334_460_000,
            Some(1_795_334_520_000),
        );
        let p = build(
            "noc",
            "{}/{receiver=\"noc\"}:{alertname=\"HostDown\", comune=\"Borgo\"}",
            [("alertname".to_owned(), "HostDown".to_owned())].into(),
            &[&b, &a],
            0,
            "http://noc:9471",
        );
        let v: serde_json::Value = serde_json::to_value(&p).unwrap();
        for key in [
            "receiver",
            "status",
            "alerts",
            "groupLabels",
            "commonLabels",
            "commonAnnotations",
            "externalURL",
            "version",
            "groupKey",
            "truncatedAlerts",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
        assert_eq!(v["version"], "4");
        assert_eq!(v["status"], "firing");
        let first = &v["alerts"][0];
        for key in [
            "status",
            "labels",
            "annotations",
            "startsAt",
            "endsAt",
            "generatorURL",
            "fingerprint",
        ] {
            assert!(first.get(key).is_some(), "{key} missing in {first}");
        }
        assert_eq!(first["labels"]["host"], "pc-1", "firing first");
        assert_eq!(first["endsAt"], ZERO_TIME);
        assert_eq!(v["alerts"][1]["status"], "resolved");
        assert_eq!(v["alerts"][1]["endsAt"], "2026-11-22T08:02:00Z");
        assert_eq!(v["commonLabels"]["comune"], "Borgo");
        assert!(v["commonLabels"].get("host").is_none());
        assert!(v["commonAnnotations"].get("summary").is_none());
        assert_eq!(first["fingerprint"].as_str().unwrap().len(), 16);
    }

    #[test]
    fn truncates_past_max_alerts_and_counts_the_rest() {
        let alerts: Vec<Alert> = (0..5)
            .map(|i| alert("HostDown", &format!("pc-{i}"), i, None))
            .collect();
        let refs: Vec<&Alert> = alerts.iter().collect();
        let p = build("noc", "k", BTreeMap::new(), &refs, 2, "http://x");
        assert_eq!(p.alerts.len(), 2);
        assert_eq!(p.truncated_alerts, 3);
    }

    #[test]
    fn a_signature_verifies_and_a_tampered_body_does_not() {
        let secret = b"0123456789abcdef-secret";
        let body = br#"{"status":"firing"}"#;
        let sig = signature(secret, 1_795_334_400, body);
        assert!(sig.starts_with("sha256=") && sig.len() == 71, "{sig}");
        assert!(verify(secret, "1795334400", body, &sig));
        assert!(!verify(
            secret,
            "1795334400",
            br#"{"status":"resolved"}"#,
            &sig
        ));
        assert!(!verify(secret, "1795334401", body, &sig));
        assert!(!verify(b"another-secret-of-16", "1795334400", body, &sig));
        assert!(!verify(secret, "1795334400", body, "sha256=zz"));
    }

    #[test]
    fn retries_server_errors_and_429_but_not_other_refusals() {
        use reqwest::StatusCode as S;
        assert_eq!(classify(S::OK, None, ""), Attempt::Delivered);
        assert_eq!(classify(S::NO_CONTENT, None, ""), Attempt::Delivered);
        assert!(matches!(
            classify(S::SERVICE_UNAVAILABLE, Some("7"), ""),
            Attempt::Retry { retry_after: Some(d), .. } if d == Duration::from_secs(7)
        ));
        assert!(matches!(
            classify(S::TOO_MANY_REQUESTS, None, ""),
            Attempt::Retry { .. }
        ));
        assert!(
            matches!(classify(S::BAD_REQUEST, None, "bad"), Attempt::Rejected { reason } if reason.contains("bad"))
        );
        assert!(matches!(
            classify(S::NOT_FOUND, None, ""),
            Attempt::Rejected { .. }
        ));
    }
}
