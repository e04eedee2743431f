//! The API under `/api/v1` (bearer token required, see [`crate::http::auth`]):
//!
//! - `GET /comuni` — every comune with its gap score and counts, worst first
//! - `GET /comuni/{istat_code}` — one comune: its sites, hosts and missing assets
//! - `GET /hosts/{host_id}` — one host: state, gaps, inventory, change history
//! - `GET /reachability` — every site's state (dark, line up...), its WAN
//!   probe, its probe targets and its agentless devices (`?site=`)
//! - `GET /gaps` — every concrete gap with its reason (`?kind=`, `?istat_code=`, `?site=`)
//! - `GET /inventory.csv` — one row per host, for planning purchases
//! - `GET /alerts`, `GET|POST /maintenance`, `DELETE /maintenance/{id}` —
//!   see [`alerts`]

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};

mod alerts;
mod enrollment;

use crate::http::reply::not_found;
use crate::http::state::HttpState;
use crate::read::snapshot::Snapshot;
use campanile_territory::evaluate::{self, ComuneView, HostView, Presence, SiteView};
use campanile_territory::host::HostState;

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/comuni", get(comuni))
        .route("/comuni/{istat_code}", get(comune))
        .route("/hosts/{host_id}", get(host))
        .route("/gaps", get(gaps))
        .route("/reachability", get(reachability))
        .route("/inventory.csv", get(inventory_csv))
        .route("/alerts", get(alerts::list))
        .route(
            "/maintenance",
            get(alerts::windows).post(alerts::add_window),
        )
        .route("/maintenance/{id}", delete(alerts::delete_window))
        .route(
            "/enrollment/tokens",
            get(enrollment::list).post(enrollment::create),
        )
        .route("/enrollment/tokens/{id}", delete(enrollment::revoke))
}

async fn comuni(State(s): State<HttpState>) -> Response {
    s.with_snapshot(|_, snap| {
        let mut comuni = snap.view.comuni;
        comuni.sort_by(|a, b| {
            b.gap_score
                .total_cmp(&a.gap_score)
                .then_with(|| a.name.cmp(&b.name))
        });
        Json(comuni).into_response()
    })
    .await
    .unwrap_or_else(|r| r)
}

#[derive(Serialize)]
struct ComuneDetail {
    #[serde(flatten)]
    comune: ComuneView,
    sites: Vec<SiteDetail>,
}

#[derive(Serialize)]
struct SiteDetail {
    #[serde(flatten)]
    site: SiteView,
    hosts: Vec<HostView>,
    missing: Vec<evaluate::Gap>,
}

async fn comune(State(s): State<HttpState>, Path(code): Path<String>) -> Response {
    s.with_snapshot(move |_, snap| {
        let Some(comune) = snap
            .view
            .comuni
            .iter()
            .find(|c| c.istat_code == code)
            .cloned()
        else {
            return not_found(format!("no comune with ISTAT code {code} in the register"));
        };
        let all_gaps = evaluate::gaps(&snap.view, &snap.loaded.register);
        let sites = snap
            .view
            .sites
            .iter()
            .filter(|site| site.istat_code.as_deref() == Some(code.as_str()))
            .map(|site| SiteDetail {
                hosts: snap
                    .view
                    .hosts
                    .iter()
                    .filter(|h| h.site == site.id && h.presence != Presence::Stale)
                    .cloned()
                    .collect(),
                missing: all_gaps
                    .iter()
                    .filter(|g| {
                        g.site == site.id && g.kind == campanile_territory::gap::GapKind::Missing
                    })
                    .cloned()
                    .collect(),
                site: site.clone(),
            })
            .collect();
        Json(ComuneDetail { comune, sites }).into_response()
    })
    .await
    .unwrap_or_else(|r| r)
}

#[derive(Serialize)]
struct HostDetail {
    #[serde(flatten)]
    view: HostView,
    first_seen_ms: i64,
    last_report_ms: i64,
    interval_secs: u32,
    agent_version: String,
    health: Option<campanile_proto::v1::Health>,
    inventory: Option<campanile_proto::v1::Inventory>,
    inventory_updated_ms: Option<i64>,
    changes: Vec<Change>,
    /// The latest report's probe results: gateway, resolvers, collector,
    /// configured targets and the devices of its probe duty.
    probes: Option<campanile_proto::v1::Probes>,
    /// Devices this host probes for the collector (as of the last plan).
    probe_duty: Vec<String>,
    /// The agent's own health as of its last Deliver call: spool depth and
    /// bytes, oldest unsent age, drops by reason, send failures.
    agent_stats: Option<campanile_proto::v1::AgentStats>,
    /// Agent clock minus collector clock at its last request.
    #[serde(skip_serializing_if = "Option::is_none")]
    clock_offset_ms: Option<i64>,
    /// When the agent's certificate expires (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_not_after: Option<String>,
}

#[derive(Serialize)]
struct Change {
    changed_ms: i64,
    field: String,
    old: Option<String>,
    new: Option<String>,
}

async fn host(State(s): State<HttpState>, Path(host_id): Path<String>) -> Response {
    s.with_snapshot(move |s, snap| {
        let Some(i) = snap.hosts.iter().position(|h| h.host_id == host_id) else {
            return not_found(format!("no host {host_id}"));
        };
        let h = &snap.hosts[i];
        let stored = match (
            s.store.inventory(&host_id),
            s.store.inventory_changes(&host_id),
        ) {
            (Ok(inv), Ok(changes)) => (inv, changes),
            (Err(e), _) | (_, Err(e)) => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("store error: {e}\n"),
                )
                    .into_response();
            }
        };
        Json(HostDetail {
            view: snap.view.hosts[i].clone(),
            first_seen_ms: h.first_seen_ms,
            last_report_ms: h.last_report_ms,
            interval_secs: h.interval_secs,
            agent_version: h.agent_version.clone(),
            health: h.health.clone(),
            probes: h.probes.clone(),
            agent_stats: h.agent_stats,
            clock_offset_ms: h.peer.clock_offset_ms,
            certificate_not_after: h
                .peer
                .cert_not_after_ms
                .map(crate::alerts::timefmt::rfc3339),
            probe_duty: s
                .reach
                .plan()
                .duty_of(&host_id)
                .map(|d| d.devices.iter().map(|d| d.device.clone()).collect())
                .unwrap_or_default(),
            inventory_updated_ms: stored.0.as_ref().map(|s| s.updated_ms),
            inventory: stored.0.map(|s| s.inventory),
            changes: stored
                .1
                .into_iter()
                .map(|c| Change {
                    changed_ms: c.changed_ms,
                    field: c.field,
                    old: c.old_value,
                    new: c.new_value,
                })
                .collect(),
        })
        .into_response()
    })
    .await
    .unwrap_or_else(|r| r)
}

#[derive(Deserialize)]
struct SiteFilter {
    site: Option<String>,
}

#[derive(Serialize)]
struct SiteReach {
    site: String,
    istat_code: Option<String>,
    state: &'static str,
    hosts_up: u64,
    hosts_silent: u64,
    wan: Option<crate::reach::wan::WanSite>,
    targets: Vec<TargetReach>,
    devices: Vec<crate::reach::aggregate::DeviceSummary>,
}

#[derive(Serialize)]
struct TargetReach {
    target: String,
    hosts: u32,
    success_ratio: Option<f64>,
    loss_ratio: Option<f64>,
    rtt_seconds: Option<f64>,
}

async fn reachability(State(s): State<HttpState>, Query(f): Query<SiteFilter>) -> Response {
    s.with_snapshot(move |s, snap| {
        let probes = snap.site_probes(&s.reach.config.targets);
        let wan = s.reach.wan();
        let sites: Vec<SiteReach> = snap
            .view
            .sites
            .iter()
            .filter(|v| f.site.as_ref().is_none_or(|x| *x == v.id))
            .map(|v| SiteReach {
                site: v.id.clone(),
                istat_code: v.istat_code.clone(),
                state: crate::reach::classify::classify(&v.counts, wan.site_up(&v.id)).as_str(),
                hosts_up: v.counts.reporting,
                hosts_silent: v.counts.offline,
                wan: wan.sites.get(&v.id).cloned(),
                targets: probes
                    .targets
                    .iter()
                    .filter(|((site, _), _)| *site == v.id)
                    .map(|((_, target), t)| TargetReach {
                        target: target.clone(),
                        hosts: t.hosts,
                        success_ratio: t.success_ratio(),
                        loss_ratio: t.loss_ratio(),
                        rtt_seconds: t.rtt_seconds(),
                    })
                    .collect(),
                devices: probes
                    .devices
                    .iter()
                    .filter(|d| d.site == v.id)
                    .cloned()
                    .collect(),
            })
            .collect();
        Json(sites).into_response()
    })
    .await
    .unwrap_or_else(|r| r)
}

#[derive(Deserialize)]
struct GapFilter {
    kind: Option<String>,
    istat_code: Option<String>,
    site: Option<String>,
}

async fn gaps(State(s): State<HttpState>, Query(f): Query<GapFilter>) -> Response {
    s.with_snapshot(move |_, snap| {
        let list: Vec<evaluate::Gap> = evaluate::gaps(&snap.view, &snap.loaded.register)
            .into_iter()
            .filter(|g| f.kind.as_deref().is_none_or(|k| g.kind.as_str() == k))
            .filter(|g| {
                f.istat_code
                    .as_deref()
                    .is_none_or(|c| g.istat_code.as_deref() == Some(c))
            })
            .filter(|g| f.site.as_deref().is_none_or(|s| g.site == s))
            .collect();
        Json(list).into_response()
    })
    .await
    .unwrap_or_else(|r| r)
}

/// Columns of the planning export.
pub const CSV_COLUMNS: &[&str] = &[
    "comune",
    "istat_code",
    "site",
    "host_id",
    "hostname",
    "role",
    "planned",
    "presence",
    "vendor",
    "model",
    "serial",
    "cpu_model",
    "cpu_cores",
    "memory_gib",
    "system_disk_gb",
    "os",
    "os_version",
    "os_release",
    "os_eol",
    "os_days_remaining",
    "age_years",
    "age_source",
    "windows_11_capable",
    "gaps",
];

async fn inventory_csv(State(s): State<HttpState>) -> Response {
    s.with_snapshot(|_, snap| match planning_csv(&snap) {
        Ok(body) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"campanile-inventory.csv\"",
                ),
            ],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("csv: {e}\n")).into_response(),
    })
    .await
    .unwrap_or_else(|r| r)
}

/// One row per host that is not stale, ordered by comune, site and host.
pub fn planning_csv(snap: &Snapshot) -> Result<Vec<u8>, csv::Error> {
    let register = &snap.loaded.register;
    let names: std::collections::HashMap<&str, &str> = register
        .comuni
        .iter()
        .map(|c| (c.istat_code.as_str(), c.name.as_str()))
        .collect();
    let comune_name = |code: &Option<String>| {
        code.as_deref()
            .and_then(|c| names.get(c))
            .map(|n| (*n).to_owned())
            .unwrap_or_default()
    };
    let mut rows: Vec<(&HostState, &HostView)> = snap
        .hosts
        .iter()
        .map(AsRef::as_ref)
        .zip(&snap.view.hosts)
        .filter(|(_, v)| v.presence != Presence::Stale)
        .collect();
    rows.sort_by(|a, b| {
        (&a.1.istat_code, &a.1.site, &a.1.host_id).cmp(&(&b.1.istat_code, &b.1.site, &b.1.host_id))
    });
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_COLUMNS)?;
    for (h, v) in rows {
        let opt = |x: &Option<String>| x.clone().unwrap_or_default();
        let num =
            |x: Option<f64>, digits: usize| x.map(|x| format!("{x:.digits$}")).unwrap_or_default();
        let role = v
            .asset
            .map(|a| register.assets[a].role.clone())
            .unwrap_or_default();
        let mut kinds: Vec<&str> = v.gaps.iter().map(|g| g.kind.as_str()).collect();
        kinds.dedup();
        w.write_record([
            comune_name(&v.istat_code),
            opt(&v.istat_code),
            v.site.clone(),
            v.host_id.clone(),
            opt(&h.hostname),
            role,
            v.planned.to_string(),
            v.presence.as_str().to_owned(),
            opt(&h.facts.vendor),
            opt(&h.facts.model),
            opt(&h.facts.serial),
            opt(&h.facts.cpu_model),
            h.facts.cpu_cores.map(|c| c.to_string()).unwrap_or_default(),
            num(
                v.memory_bytes
                    .map(|b| b as f64 / (1024.0 * 1024.0 * 1024.0)),
                1,
            ),
            num(v.system_disk_bytes.map(|b| b as f64 / 1e9), 0),
            opt(&h.os_name),
            opt(&h.os_version),
            v.os.as_ref().map(|o| o.release.clone()).unwrap_or_default(),
            v.os.as_ref().map(|o| o.eol.clone()).unwrap_or_default(),
            v.os.as_ref()
                .map(|o| o.days_remaining.to_string())
                .unwrap_or_default(),
            num(v.age_years, 1),
            v.age_source
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            v.windows_11_capable
                .map(|b| b.to_string())
                .unwrap_or_default(),
            kinds.join(" "),
        ])?;
    }
    w.into_inner().map_err(|e| e.into_error().into())
}
