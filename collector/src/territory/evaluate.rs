//! From the register, the catalog and the hosts' stored state to the
//! territory's gaps: which host belongs where, what is missing, what is
//! obsolete, and one score per comune.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use time::{Date, OffsetDateTime};

use crate::config::TerritoryConfig;
use crate::store::HostState;

use super::GapKind;
use super::eol::{self, EolCatalog, OsFacts};
use super::hardware::{self, AgeSource, Machine};
use super::register::{PlannedAsset, Register, normalize_hostname};

/// How recently a host reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Within 3 of its intervals.
    Up,
    /// Later than that, but within `missing_after_days`.
    Offline,
    /// Silent for longer: no longer counted anywhere but as a missing asset.
    Stale,
}

impl Presence {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Offline => "offline",
            Self::Stale => "stale",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OsLifecycle {
    pub release_id: String,
    pub release: String,
    pub eol: String,
    pub days_remaining: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extended_eol: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostView {
    pub host_id: String,
    /// The assigned site: the planned asset's, else the certificate's.
    pub site: String,
    /// The site the host's certificate names.
    pub certificate_site: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub istat_code: Option<String>,
    pub planned: bool,
    /// Index into the register's assets.
    #[serde(skip)]
    pub asset: Option<usize>,
    pub presence: Presence,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<OsLifecycle>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_years: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_source: Option<AgeSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows_11_capable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_disk_bytes: Option<u64>,
    pub gaps: Vec<HostGap>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostGap {
    pub kind: GapKind,
    pub reason: String,
}

impl HostView {
    pub fn has(&self, kind: GapKind) -> bool {
        self.gaps.iter().any(|g| g.kind == kind)
    }
    pub fn under_spec(&self) -> bool {
        self.gaps.iter().any(|g| g.kind.is_under_spec())
    }
}

/// A planned asset that does not report.
#[derive(Debug, Clone, Serialize)]
pub struct MissingAsset {
    #[serde(skip)]
    pub asset: usize,
    pub site: String,
    /// The host it matched, if it ever reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Planned assets.
    pub expected: u64,
    /// Hosts up now (planned or not).
    pub reporting: u64,
    pub offline: u64,
    pub missing: u64,
    pub unplanned: u64,
    /// Hosts up or offline (not stale): the base of the ratios below.
    pub hosts: u64,
    pub os_eol: u64,
    pub os_unknown: u64,
    pub under_spec: u64,
    pub nearly_full: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SiteView {
    pub id: String,
    /// `None` for a site that only certificates name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub istat_code: Option<String>,
    pub counts: Counts,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComuneView {
    pub istat_code: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub province: Option<String>,
    pub counts: Counts,
    /// 0 (no gap) to 1; see [`score`].
    pub gap_score: f64,
    /// Each part's ratio before weighting, by name.
    pub score_parts: BTreeMap<&'static str, f64>,
}

/// One concrete gap, as `/api/v1/gaps` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Gap {
    pub kind: GapKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub istat_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comune: Option<String>,
    pub site: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    /// How the register names a missing asset (name, hostname, serial or MAC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct View {
    pub hosts: Vec<HostView>,
    pub missing: Vec<MissingAsset>,
    pub sites: Vec<SiteView>,
    pub comuni: Vec<ComuneView>,
}

/// How full a filesystem is, in percent; `None` for those full by design
/// or too small to matter.
pub fn filesystem_used_percent(f: &campanile_proto::v1::Filesystem) -> Option<f64> {
    let counts = !matches!(f.fs_type.as_str(), "squashfs" | "iso9660" | "udf" | "erofs")
        && f.size_bytes >= 256 * 1024 * 1024;
    counts.then(|| 100.0 * (1.0 - f.available_bytes as f64 / f.size_bytes as f64))
}

/// How a missing asset is named in a gap.
pub fn asset_label(a: &PlannedAsset) -> String {
    a.name
        .clone()
        .or_else(|| a.hostname.clone())
        .or_else(|| a.serial.as_ref().map(|s| format!("serial {s}")))
        .or_else(|| a.mac.as_ref().map(|m| format!("MAC {m}")))
        .unwrap_or_default()
}

pub fn evaluate(
    register: &Register,
    catalog: &EolCatalog,
    cfg: &TerritoryConfig,
    hosts: &[Arc<HostState>],
    now_ms: i64,
) -> View {
    let today = date_of(now_ms);
    let stale_ms = i64::from(cfg.missing_after_days) * 86_400_000;

    // Planned assets by each identifier. Serial is the strongest: it follows
    // the machine through reinstalls and renames; then MAC, then hostname.
    let mut by_serial = HashMap::new();
    let mut by_mac = HashMap::new();
    let mut by_hostname = HashMap::new();
    for (i, a) in register.assets.iter().enumerate() {
        if let Some(s) = &a.serial {
            by_serial.insert(s.to_lowercase(), i);
        }
        if let Some(m) = &a.mac {
            by_mac.insert(m.clone(), i);
        }
        if let Some(h) = &a.hostname {
            by_hostname.insert(h.clone(), i);
        }
    }
    let site_comune: HashMap<&str, &str> = register
        .sites
        .iter()
        .map(|s| (s.id.as_str(), s.istat_code.as_str()))
        .collect();

    // Most recent reporter first, so a replaced machine's old record does not
    // hold its asset against the new one.
    let mut order: Vec<usize> = (0..hosts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(hosts[i].last_report_ms));
    let mut claimed: HashMap<usize, usize> = HashMap::new();
    let mut views: Vec<Option<HostView>> = vec![None; hosts.len()];
    for i in order {
        let h = &hosts[i];
        let candidate = h
            .facts
            .serial
            .as_ref()
            .and_then(|s| by_serial.get(&s.to_lowercase()))
            .or_else(|| h.facts.macs.iter().find_map(|m| by_mac.get(m)))
            .or_else(|| {
                h.hostname
                    .as_deref()
                    .map(normalize_hostname)
                    .and_then(|n| by_hostname.get(&n))
            })
            .or_else(|| by_hostname.get(&normalize_hostname(&h.host_id)))
            .copied();
        let presence = if h.is_up(now_ms) {
            Presence::Up
        } else if now_ms - h.last_report_ms < stale_ms {
            Presence::Offline
        } else {
            Presence::Stale
        };
        let mut gaps = Vec::new();
        let asset = match candidate {
            Some(a) if !claimed.contains_key(&a) => {
                claimed.insert(a, i);
                Some(a)
            }
            Some(a) => {
                gaps.push(HostGap {
                    kind: GapKind::Unplanned,
                    reason: format!(
                        "matches planned asset {} already taken by host {}",
                        asset_label(&register.assets[a]),
                        hosts[claimed[&a]].host_id
                    ),
                });
                None
            }
            None => {
                gaps.push(HostGap {
                    kind: GapKind::Unplanned,
                    reason: format!(
                        "matches no planned asset (hostname {}, serial {}, MAC {})",
                        h.hostname.as_deref().unwrap_or("unknown"),
                        h.facts.serial.as_deref().unwrap_or("unknown"),
                        h.facts.macs.first().map_or("unknown", String::as_str),
                    ),
                });
                None
            }
        };
        let site = asset.map_or(h.site.clone(), |a| register.assets[a].site.clone());
        let istat_code = site_comune.get(site.as_str()).map(|c| (*c).to_owned());
        let mut view = HostView {
            host_id: h.host_id.clone(),
            certificate_site: h.site.clone(),
            site,
            istat_code,
            planned: asset.is_some(),
            asset,
            presence,
            os: None,
            age_years: None,
            age_source: None,
            windows_11_capable: None,
            memory_bytes: None,
            system_disk_bytes: None,
            gaps,
        };
        if presence == Presence::Stale {
            // Stale hosts are judged no further: they are no longer there.
            view.gaps.clear();
        } else {
            assess_host(&mut view, h, catalog, cfg, today, now_ms);
        }
        views[i] = Some(view);
    }
    let hosts_view: Vec<HostView> = views.into_iter().flatten().collect();

    let mut missing = Vec::new();
    for (i, a) in register.assets.iter().enumerate() {
        match claimed.get(&i).map(|&h| &hosts[h]) {
            None => missing.push(MissingAsset {
                asset: i,
                site: a.site.clone(),
                host_id: None,
                reason: "never reported".into(),
            }),
            Some(h) if now_ms - h.last_report_ms >= stale_ms => missing.push(MissingAsset {
                asset: i,
                site: a.site.clone(),
                host_id: Some(h.host_id.clone()),
                reason: format!(
                    "host {} silent since {} (more than {} days)",
                    h.host_id,
                    date_of(h.last_report_ms),
                    cfg.missing_after_days
                ),
            }),
            Some(_) => {}
        }
    }

    let mut site_counts: BTreeMap<String, Counts> = register
        .sites
        .iter()
        .map(|s| (s.id.clone(), Counts::default()))
        .collect();
    for a in &register.assets {
        site_counts.entry(a.site.clone()).or_default().expected += 1;
    }
    for m in &missing {
        site_counts.entry(m.site.clone()).or_default().missing += 1;
    }
    for h in hosts_view.iter().filter(|h| h.presence != Presence::Stale) {
        let c = site_counts.entry(h.site.clone()).or_default();
        c.hosts += 1;
        match h.presence {
            Presence::Up => c.reporting += 1,
            Presence::Offline => c.offline += 1,
            Presence::Stale => {}
        }
        c.unplanned += u64::from(!h.planned);
        c.os_eol += u64::from(h.has(GapKind::OsEol));
        c.os_unknown += u64::from(h.has(GapKind::OsUnknown));
        c.under_spec += u64::from(h.under_spec());
        c.nearly_full += u64::from(h.has(GapKind::NearlyFull));
    }
    let register_site: HashMap<&str, &super::register::Site> =
        register.sites.iter().map(|s| (s.id.as_str(), s)).collect();
    let sites: Vec<SiteView> = site_counts
        .into_iter()
        .map(|(id, counts)| {
            let s = register_site.get(id.as_str());
            SiteView {
                name: s.map(|s| s.name.clone()),
                kind: s.map(|s| s.kind.clone()),
                istat_code: s.map(|s| s.istat_code.clone()),
                id,
                counts,
            }
        })
        .collect();

    // A comune without sites is not (yet) served: the ISTAT list of a whole
    // province can stay in the register without topping the ranking.
    let served: std::collections::HashSet<&str> = register
        .sites
        .iter()
        .map(|s| s.istat_code.as_str())
        .collect();
    let comuni = register
        .comuni
        .iter()
        .filter(|c| served.contains(c.istat_code.as_str()))
        .map(|c| {
            let mut counts = Counts::default();
            for s in sites
                .iter()
                .filter(|s| s.istat_code.as_deref() == Some(&c.istat_code))
            {
                add(&mut counts, &s.counts);
            }
            let (gap_score, score_parts) = score(&counts, cfg);
            ComuneView {
                istat_code: c.istat_code.clone(),
                name: c.name.clone(),
                province: c.province.clone(),
                counts,
                gap_score,
                score_parts,
            }
        })
        .collect();

    View {
        hosts: hosts_view,
        missing,
        sites,
        comuni,
    }
}

fn add(to: &mut Counts, c: &Counts) {
    to.expected += c.expected;
    to.reporting += c.reporting;
    to.offline += c.offline;
    to.missing += c.missing;
    to.unplanned += c.unplanned;
    to.hosts += c.hosts;
    to.os_eol += c.os_eol;
    to.os_unknown += c.os_unknown;
    to.under_spec += c.under_spec;
    to.nearly_full += c.nearly_full;
}

/// The gap score of a comune: the weighted mean of six ratios,
///
/// - missing = missing planned assets / planned assets
/// - offline, os_eol, under_spec, nearly_full, unplanned = such hosts / hosts
///   (hosts = up or offline, not stale)
///
/// A comune where no host reports scores 1 on every part: nothing there can
/// be shown to be fine.
pub fn score(c: &Counts, cfg: &TerritoryConfig) -> (f64, BTreeMap<&'static str, f64>) {
    let ratio = |n: u64, d: u64| if d == 0 { 1.0 } else { n as f64 / d as f64 };
    let hosts = |n: u64| ratio(n, c.hosts);
    let parts: BTreeMap<&'static str, f64> = cfg
        .score
        .parts()
        .iter()
        .map(|(name, _)| {
            let v = match *name {
                "missing" if c.expected > 0 => ratio(c.missing, c.expected),
                // Nothing planned: coverage is judged by whether anything reports.
                "missing" => {
                    if c.hosts == 0 {
                        1.0
                    } else {
                        0.0
                    }
                }
                "offline" => hosts(c.offline),
                "os_eol" => hosts(c.os_eol),
                "under_spec" => hosts(c.under_spec),
                "nearly_full" => hosts(c.nearly_full),
                _ => hosts(c.unplanned),
            };
            (*name, v)
        })
        .collect();
    let total: f64 = cfg.score.parts().iter().map(|(_, w)| w).sum();
    let weighted: f64 = cfg
        .score
        .parts()
        .iter()
        .map(|(name, w)| w * parts[name])
        .sum();
    ((weighted / total).clamp(0.0, 1.0), parts)
}

fn assess_host(
    view: &mut HostView,
    h: &HostState,
    catalog: &EolCatalog,
    cfg: &TerritoryConfig,
    today: Date,
    now_ms: i64,
) {
    if view.presence == Presence::Offline {
        view.gaps.push(HostGap {
            kind: GapKind::Offline,
            reason: format!(
                "no report for {} (since {})",
                human_duration((now_ms - h.last_report_ms) / 1000),
                timestamp_of(h.last_report_ms)
            ),
        });
    }
    let os = OsFacts {
        name: h.os_name.as_deref(),
        version: h.os_version.as_deref(),
        kernel: h.kernel.as_deref(),
        edition: h.facts.os_edition.as_deref(),
    };
    match catalog.lookup(&os) {
        Some(r) => {
            let days = eol::days_remaining(r, today);
            if days < 0 {
                view.gaps.push(HostGap {
                    kind: GapKind::OsEol,
                    reason: format!(
                        "{} reached end of life on {} ({} days ago)",
                        r.name, r.eol, -days
                    ),
                });
            }
            view.os = Some(OsLifecycle {
                release_id: r.id.clone(),
                release: r.name.clone(),
                eol: r.eol.to_string(),
                days_remaining: days,
                extended_eol: r.extended_eol.map(|d| d.to_string()),
            });
        }
        None => view.gaps.push(HostGap {
            kind: GapKind::OsUnknown,
            reason: match (&h.os_name, &h.os_version) {
                (Some(n), v) => format!(
                    "{n} {} is not in the end-of-life catalog",
                    v.as_deref().unwrap_or("(no version)")
                ),
                (None, _) => "operating system not known yet (no inventory)".into(),
            },
        }),
    }
    let family = h
        .os_name
        .as_deref()
        .and_then(|n| eol::os_family(n, h.facts.os_edition.as_deref()));
    let a = hardware::assess(
        &Machine {
            facts: &h.facts,
            health: h.health.as_ref(),
            first_seen: date_of(h.first_seen_ms),
            os_family: family,
            os_version: h.os_version.as_deref(),
            arch: h.arch.as_deref(),
        },
        &cfg.hardware,
        today,
    );
    view.gaps.extend(
        a.shortfalls
            .into_iter()
            .map(|(kind, reason)| HostGap { kind, reason }),
    );
    view.age_years = a.age_years.map(|(y, _)| (y * 10.0).round() / 10.0);
    view.age_source = a.age_years.map(|(_, s)| s);
    view.windows_11_capable = a.windows_11_capable;
    view.memory_bytes = a.memory_bytes;
    view.system_disk_bytes = a.system_disk_bytes;

    let full: Vec<String> = h
        .health
        .iter()
        .flat_map(|hl| &hl.filesystems)
        .filter_map(|f| {
            let used = filesystem_used_percent(f)?;
            (used >= cfg.hardware.nearly_full_percent)
                .then(|| format!("{} {used:.0}%", f.mount_point))
        })
        .collect();
    if !full.is_empty() {
        view.gaps.push(HostGap {
            kind: GapKind::NearlyFull,
            reason: format!(
                "filesystem nearly full: {} (limit {}%)",
                full.join(", "),
                cfg.hardware.nearly_full_percent
            ),
        });
    }
}

/// Every concrete gap: missing assets first, then hosts', each sorted by
/// comune, site and host.
pub fn gaps(view: &View, register: &Register) -> Vec<Gap> {
    let places = register.places();
    let comune_of = |site: &str| {
        let (code, name) = places.of(site);
        (code.map(str::to_owned), name.map(str::to_owned))
    };
    let mut out = Vec::new();
    for m in &view.missing {
        let (istat_code, comune) = comune_of(&m.site);
        out.push(Gap {
            kind: GapKind::Missing,
            istat_code,
            comune,
            site: m.site.clone(),
            host_id: m.host_id.clone(),
            asset: Some(asset_label(&register.assets[m.asset])),
            reason: m.reason.clone(),
        });
    }
    for h in &view.hosts {
        for g in &h.gaps {
            let (istat_code, comune) = comune_of(&h.site);
            out.push(Gap {
                kind: g.kind,
                istat_code,
                comune,
                site: h.site.clone(),
                host_id: Some(h.host_id.clone()),
                asset: None,
                reason: g.reason.clone(),
            });
        }
    }
    out.sort_by(|a, b| {
        (&a.istat_code, &a.site, &a.host_id, a.kind).cmp(&(
            &b.istat_code,
            &b.site,
            &b.host_id,
            b.kind,
        ))
    });
    out
}

pub fn date_of(ms: i64) -> Date {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .map(OffsetDateTime::date)
        .unwrap_or(Date::MIN)
}

fn timestamp_of(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).map_or_else(
        |_| ms.to_string(),
        |t| format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute()),
    )
}

fn human_duration(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: i64 = 86_400_000;
    const NOW: i64 = 1_795_000_000_000;

    fn register() -> Register {
        Register::parse(
            r#"
            [[comune]]
            istat_code = "000001"
            name = "Uno"
            [[comune]]
            istat_code = "000002"
            name = "Due"
            [[site]]
            id = "uno"
            comune = "000001"
            name = "Municipio"
            [[asset]]
            site = "uno"
            hostname = "pc1"
            [[asset]]
            site = "uno"
            serial = "S2"
            "#,
            "t",
        )
        .unwrap()
    }

    fn host(id: &str, last_report_ms: i64) -> HostState {
        HostState {
            first_seen_ms: NOW - 30 * DAY_MS,
            hostname: Some(id.to_uppercase()),
            ..HostState::reported(id, "uno", last_report_ms)
        }
    }

    fn eval(hosts: &[HostState]) -> View {
        let hosts: Vec<_> = hosts.iter().cloned().map(Arc::new).collect();
        evaluate(
            &register(),
            &EolCatalog::embedded(),
            &TerritoryConfig::default(),
            &hosts,
            NOW,
        )
    }

    #[test]
    fn a_planned_host_silent_for_missing_after_days_is_missing_and_judged_no_further() {
        let v = eval(&[host("pc1", NOW - 15 * DAY_MS)]);
        assert_eq!(v.hosts[0].presence, Presence::Stale);
        assert!(v.hosts[0].gaps.is_empty());
        let reasons: Vec<&str> = v.missing.iter().map(|m| m.reason.as_str()).collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].contains("silent since"), "{reasons:?}");
        assert_eq!(reasons[1], "never reported");
        let uno = &v.sites[0].counts;
        assert_eq!((uno.expected, uno.missing, uno.hosts), (2, 2, 0));
    }

    #[test]
    fn a_second_host_claiming_the_same_asset_is_unplanned() {
        let mut old = host("pc1-old", NOW - 10_000);
        old.hostname = Some("pc1".into());
        let v = eval(&[host("pc1", NOW - 1_000), old]);
        assert!(v.hosts[0].planned, "the latest reporter takes the asset");
        let dup = &v.hosts[1];
        assert!(!dup.planned);
        assert!(
            dup.gaps[0].reason.contains("already taken by host pc1"),
            "{:?}",
            dup.gaps
        );
    }

    #[test]
    fn serial_matches_before_hostname_and_unknown_os_stays_unknown() {
        let mut h = host("whatever", NOW - 1_000);
        h.facts.serial = Some("s2".into());
        h.os_name = Some("Plan 9".into());
        let v = eval(&[h]);
        assert!(v.hosts[0].planned);
        assert!(v.hosts[0].os.is_none());
        assert!(v.hosts[0].has(GapKind::OsUnknown));
        assert!(
            !v.hosts[0].has(GapKind::OsEol),
            "unknown is not past end of life"
        );
    }

    #[test]
    fn a_comune_where_nothing_reports_scores_one() {
        let v = eval(&[]);
        assert!(
            v.comuni.iter().all(|c| c.istat_code != "000002"),
            "a comune without sites is not scored"
        );
        let uno = v.comuni.iter().find(|c| c.istat_code == "000001").unwrap();
        assert_eq!(uno.gap_score, 1.0, "all planned assets missing, no host");
        let v = eval(&[host("pc1", NOW - 1_000)]);
        let uno = v.comuni.iter().find(|c| c.istat_code == "000001").unwrap();
        // Half the planned assets missing (0.30 * 0.5); the one host has an
        // unknown OS, which the score does not count.
        assert!((uno.gap_score - 0.15).abs() < 1e-9, "{}", uno.gap_score);
    }
}
