//! Alerts and maintenance windows:
//!
//! - `GET /alerts` — every pending, firing and recently resolved alert, with
//!   whether a window silences it or a dark site inhibits it (`?state=`,
//!   `?alertname=`, `?severity=`, `?site=`, `?istat_code=`, `?fingerprint=`)
//! - `GET /maintenance` — windows from the config and from the API
//! - `POST /maintenance` — a new window (role `maintain`): JSON with `site`
//!   or `istat_code`, `ends_at` or `duration_secs`, optional `starts_at`
//!   (default now) and `reason`
//! - `DELETE /maintenance/{id}` — ends a window set through the API

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use crate::alerts::maintenance::{Scope, Window};
use crate::alerts::timefmt::{parse_rfc3339_ms, rfc3339};
use crate::clock::now_ms;
use crate::http::auth::Caller;
use crate::http::config::Role;
use crate::http::reply::not_found;
use crate::http::state::HttpState;

/// The longest window the API sets: a forgotten one must not hide a comune
/// for good.
const MAX_WINDOW_MS: i64 = 31 * 86_400_000;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

#[derive(Deserialize)]
pub(super) struct AlertFilter {
    state: Option<String>,
    alertname: Option<String>,
    severity: Option<String>,
    site: Option<String>,
    istat_code: Option<String>,
    fingerprint: Option<String>,
}

#[derive(Serialize)]
struct AlertOut<'a> {
    fingerprint: String,
    state: &'static str,
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
    active_since: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    starts_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ends_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    silenced_by: Option<i64>,
    inhibited: bool,
    /// Sent in the daily digest rather than on its own.
    digest: bool,
}

pub(super) async fn list(State(s): State<HttpState>, Query(f): Query<AlertFilter>) -> Response {
    let view = s.alerts.view();
    let label_is = |a: &crate::alerts::engine::Alert, k: &str, want: &Option<String>| {
        want.as_ref()
            .is_none_or(|w| a.labels.get(k).is_some_and(|v| v == w))
    };
    let alerts: Vec<AlertOut<'_>> = view
        .alerts
        .iter()
        .filter(|a| f.state.as_ref().is_none_or(|st| a.state().as_str() == st))
        .filter(|a| label_is(a, "alertname", &f.alertname))
        .filter(|a| label_is(a, "severity", &f.severity))
        .filter(|a| label_is(a, "site", &f.site))
        .filter(|a| label_is(a, "istat_code", &f.istat_code))
        .filter(|a| {
            f.fingerprint
                .as_ref()
                .is_none_or(|fp| format!("{:016x}", a.fingerprint) == *fp)
        })
        .map(|a| AlertOut {
            fingerprint: format!("{:016x}", a.fingerprint),
            state: a.state().as_str(),
            labels: &a.labels,
            annotations: &a.annotations,
            active_since: rfc3339(a.active_since_ms),
            starts_at: a.fired_ms.map(rfc3339),
            ends_at: a.resolved_ms.map(rfc3339),
            silenced_by: a.silenced_by,
            inhibited: a.inhibited,
            digest: a.digest,
        })
        .collect();
    Json(serde_json::json!({
        "evaluated_at": view.evaluated_ms.map(rfc3339),
        "alerts": alerts,
    }))
    .into_response()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::alerts::AlertStoreError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "alert store");
            Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
        }
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("task failed: {e}"),
        )),
    }
}

pub(super) async fn windows(State(s): State<HttpState>) -> Response {
    let alerts = s.alerts.clone();
    match blocking(move || alerts.windows()).await {
        Ok(w) => {
            let now = now_ms();
            Json(w.iter().map(|w| w.view(now)).collect::<Vec<_>>()).into_response()
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewWindow {
    site: Option<String>,
    istat_code: Option<String>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    duration_secs: Option<u64>,
    #[serde(default)]
    reason: String,
}

/// `None` when the caller may change windows, else the refusal.
fn refuse_unless_maintainer(caller: &Caller) -> Option<Response> {
    if caller.role == Role::Maintain {
        None
    } else {
        Some(error(
            StatusCode::FORBIDDEN,
            format!(
                "token {} may only read; maintenance windows need role \"maintain\"",
                caller.token
            ),
        ))
    }
}

/// The window the request describes, or why not.
fn window(s: &HttpState, body: NewWindow, caller: &Caller, now: i64) -> Result<Window, String> {
    let scope = Scope::new(body.site, body.istat_code)?;
    let register = &s.territory.current().register;
    let known = match &scope {
        Scope::Site(id) => register.sites.is_empty() || register.sites.iter().any(|x| x.id == *id),
        Scope::Comune(c) => {
            register.comuni.is_empty() || register.comuni.iter().any(|x| x.istat_code == *c)
        }
    };
    if !known {
        return Err(format!("{scope:?} is not in the register"));
    }
    let starts_ms = match &body.starts_at {
        Some(t) => parse_rfc3339_ms(t).ok_or_else(|| format!("starts_at {t:?} is not RFC 3339"))?,
        None => now,
    };
    let ends_ms = match (&body.ends_at, body.duration_secs) {
        (Some(t), None) => {
            parse_rfc3339_ms(t).ok_or_else(|| format!("ends_at {t:?} is not RFC 3339"))?
        }
        (None, Some(d)) => {
            starts_ms.saturating_add(i64::try_from(d).unwrap_or(i64::MAX).saturating_mul(1000))
        }
        _ => return Err("give either ends_at or duration_secs".into()),
    };
    if ends_ms <= starts_ms.max(now) {
        return Err("the window must end after it starts and in the future".into());
    }
    if ends_ms - starts_ms > MAX_WINDOW_MS {
        return Err("a window lasts at most 31 days".into());
    }
    Ok(Window {
        id: 0,
        scope,
        starts_ms,
        ends_ms,
        reason: body.reason.chars().take(500).collect(),
        created_by: caller.token.clone(),
    })
}

pub(super) async fn add_window(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<NewWindow>,
) -> Response {
    if let Some(r) = refuse_unless_maintainer(&caller) {
        return r;
    }
    let now = now_ms();
    let w = match window(&s, body, &caller, now) {
        Ok(w) => w,
        Err(reason) => return error(StatusCode::UNPROCESSABLE_ENTITY, reason),
    };
    let alerts = s.alerts.clone();
    match blocking(move || alerts.add_window(w)).await {
        Ok(w) => {
            tracing::info!(id = w.id, token = %caller.token, scope = ?w.scope, ends = %rfc3339(w.ends_ms), "maintenance window set");
            (StatusCode::CREATED, Json(w.view(now))).into_response()
        }
        Err(r) => r,
    }
}

pub(super) async fn delete_window(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Response {
    if let Some(r) = refuse_unless_maintainer(&caller) {
        return r;
    }
    if id < 0 {
        return error(
            StatusCode::CONFLICT,
            "this window is set in the collector's config; remove it there",
        );
    }
    let alerts = s.alerts.clone();
    match blocking(move || alerts.delete_window(id)).await {
        Ok(true) => {
            tracing::info!(id, token = %caller.token, "maintenance window removed");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => not_found(format!("no maintenance window {id}")),
        Err(r) => r,
    }
}
