//! From the register, the catalog and the hosts' stored state to the
//! territory's gaps: which host belongs where, what is missing, what is
//! obsolete, and one score per comune.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};

use serde::Serialize;
use time::{Date, OffsetDateTime};

use crate::config::{ScorePart, TerritoryConfig};
use crate::host::{HostState, normalize_hostname};

use crate::eol::{self, EolCatalog, OsFacts};
use crate::gap::GapKind;
use crate::hardware::{self, AgeSource, Machine};
use crate::register::{PlannedAsset, Register, Site};

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
    /// `eol` at 00:00 UTC, for `/metrics`: a timestamp that changes only
    /// when the catalog does (days left are computed by the reader).
    #[serde(skip)]
    pub eol_timestamp_secs: i64,
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
    pub os: Option<Arc<OsLifecycle>>,
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
    pub reason: Arc<str>,
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
    pub score_parts: BTreeMap<ScorePart, f64>,
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
    pub reason: Arc<str>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct View {
    pub hosts: Vec<HostView>,
    pub missing: Vec<MissingAsset>,
    pub sites: Vec<SiteView>,
    pub comuni: Vec<ComuneView>,
}

/// Read-only images, always full: squashfs and erofs (snaps, live
/// systems), ISO 9660 and UDF (optical media, mounted ISOs; CDFS is
/// Windows' name for ISO 9660).
const FULL_BY_DESIGN: [&str; 5] = ["squashfs", "erofs", "iso9660", "udf", "cdfs"];

/// How full a filesystem is, in percent; `None` for those full by design
/// or too small to matter.
pub fn filesystem_used_percent(f: &campanile_proto::v1::Filesystem) -> Option<f64> {
    // Windows names its types in capitals (NTFS, UDF, CDFS): compare
    // without case, so a mounted ISO is not a full disk.
    let image = FULL_BY_DESIGN
        .iter()
        .any(|t| f.fs_type.eq_ignore_ascii_case(t));
    let counts = !image && f.size_bytes >= 256 * 1024 * 1024;
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

/// What of a host's judgement follows from its stored state alone, given
/// the register, the catalog, the configuration and the date: which planned
/// asset it matches and what its inventory and health lack. The rest (which
/// asset it takes, presence, the offline gap) is judged at every evaluation.
#[derive(Debug)]
struct Judged {
    candidate: Option<usize>,
    /// `None` until the host is judged while not stale.
    assessed: Option<Assessed>,
}

#[derive(Debug, Clone, Default)]
struct Assessed {
    os: Option<Arc<OsLifecycle>>,
    gaps: Vec<HostGap>,
    age_years: Option<f64>,
    age_source: Option<AgeSource>,
    windows_11_capable: Option<bool>,
    memory_bytes: Option<u64>,
    system_disk_bytes: Option<u64>,
}

/// Planned assets by each identifier. Serial is the strongest: it follows
/// the machine through reinstalls and renames; then MAC, then hostname.
#[derive(Debug, Default)]
struct AssetIndex {
    by_serial: HashMap<String, usize>,
    by_mac: HashMap<String, usize>,
    by_hostname: HashMap<String, usize>,
}

impl AssetIndex {
    fn of(register: &Register) -> Self {
        let mut index = Self::default();
        for (i, a) in register.assets.iter().enumerate() {
            if let Some(s) = &a.serial {
                index.by_serial.insert(s.to_lowercase(), i);
            }
            if let Some(m) = &a.mac {
                index.by_mac.insert(m.clone(), i);
            }
            if let Some(h) = &a.hostname {
                index.by_hostname.insert(h.clone(), i);
            }
        }
        index
    }

    /// The planned asset a host's identifiers point to.
    fn candidate(&self, h: &HostState) -> Option<usize> {
        h.facts
            .serial
            .as_ref()
            .and_then(|s| self.by_serial.get(&s.to_lowercase()))
            .or_else(|| h.facts.macs.iter().find_map(|m| self.by_mac.get(m)))
            .or_else(|| {
                h.hostname
                    .as_deref()
                    .map(normalize_hostname)
                    .and_then(|n| self.by_hostname.get(&n))
            })
            .or_else(|| self.by_hostname.get(&normalize_hostname(&h.host_id)))
            .copied()
    }
}

/// The hosts judged by one evaluation, for the next to reuse: between two
/// scrapes most hosts have not reported, their stored state is the same
/// `Arc`, and matching and assessing them again (catalog lookups, gap
/// reasons formatted) was about half of an evaluation's cost.
///
/// Valid only with the register, catalog and configuration it was made
/// with; the caller keeps that pairing ([`super::state::Territory`]).
#[derive(Debug, Default)]
pub struct Judgements {
    today: Option<Date>,
    /// Depends on the register alone: kept across days.
    index: Option<Arc<AssetIndex>>,
    /// By the address of the host's state. The `Weak` keeps that allocation
    /// from being freed and reused while this entry exists, so an equal
    /// address is the very same, unchanged state.
    by_host: HashMap<usize, (Weak<HostState>, Arc<Judged>)>,
}

impl Judgements {
    fn get(&self, h: &Arc<HostState>, today: Date) -> Option<&Arc<Judged>> {
        if self.today != Some(today) {
            return None;
        }
        self.by_host
            .get(&(Arc::as_ptr(h) as usize))
            .filter(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(h)))
            .map(|(_, j)| j)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_host.len()
    }
}

pub fn evaluate(
    register: &Register,
    catalog: &EolCatalog,
    cfg: &TerritoryConfig,
    hosts: &[Arc<HostState>],
    now_ms: i64,
) -> View {
    evaluate_with(
        register,
        catalog,
        cfg,
        hosts,
        now_ms,
        &Judgements::default(),
    )
    .0
}

/// [`evaluate`], reusing what `prior` judged of hosts whose state has not
/// changed since; returns the judgements for the next evaluation too.
///
/// In four steps: each host is judged and takes its planned asset
/// ([`judge_hosts`]), the assets no reporting host took are missing
/// ([`missing_assets`]), hosts and assets are counted per site
/// ([`site_views`]), and sites are summed per comune and scored
/// ([`comune_views`]).
pub fn evaluate_with(
    register: &Register,
    catalog: &EolCatalog,
    cfg: &TerritoryConfig,
    hosts: &[Arc<HostState>],
    now_ms: i64,
    prior: &Judgements,
) -> (View, Judgements) {
    let at = Moment {
        now_ms,
        today: date_of(now_ms),
        stale_ms: i64::from(cfg.missing_after_days) * 86_400_000,
    };
    let (host_views, claimed, judged) = judge_hosts(register, catalog, cfg, hosts, &at, prior);
    let missing = missing_assets(register, hosts, &claimed, &at, cfg);
    let sites = site_views(register, &host_views, &missing);
    let comuni = comune_views(register, &sites, cfg);
    (
        View {
            hosts: host_views,
            missing,
            sites,
            comuni,
        },
        judged,
    )
}

/// When an evaluation judges.
struct Moment {
    now_ms: i64,
    today: Date,
    /// Hosts silent this long are stale: counted only as the missing asset
    /// they were.
    stale_ms: i64,
}

impl Moment {
    fn presence(&self, h: &HostState) -> Presence {
        if h.is_up(self.now_ms) {
            Presence::Up
        } else if self.now_ms - h.last_report_ms < self.stale_ms {
            Presence::Offline
        } else {
            Presence::Stale
        }
    }
}

/// Each host's view, in the order of `hosts`, the planned assets taken
/// (asset index to host index), and the judgements for the next evaluation.
fn judge_hosts(
    register: &Register,
    catalog: &EolCatalog,
    cfg: &TerritoryConfig,
    hosts: &[Arc<HostState>],
    at: &Moment,
    prior: &Judgements,
) -> (Vec<HostView>, HashMap<usize, usize>, Judgements) {
    let index = prior
        .index
        .clone()
        .unwrap_or_else(|| Arc::new(AssetIndex::of(register)));
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
    let mut judged = Judgements {
        today: Some(at.today),
        index: Some(index.clone()),
        by_host: HashMap::with_capacity(hosts.len()),
    };
    for i in order {
        let h = &hosts[i];
        let presence = at.presence(h);
        let stale = presence == Presence::Stale;
        let j = match prior.get(h, at.today) {
            Some(j) if stale || j.assessed.is_some() => j.clone(),
            _ => Arc::new(Judged {
                candidate: index.candidate(h),
                assessed: (!stale).then(|| assess_host(h, catalog, cfg, at.today)),
            }),
        };
        let (asset, unplanned) = claim(register, hosts, &mut claimed, i, j.candidate);
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
            gaps: unplanned.into_iter().collect(),
        };
        match j.assessed.as_ref().filter(|_| !stale) {
            // Stale hosts are judged no further: they are no longer there.
            None => view.gaps.clear(),
            Some(a) => {
                if presence == Presence::Offline {
                    view.gaps.push(offline_gap(h, at.now_ms));
                }
                view.gaps.extend(a.gaps.iter().cloned());
                view.os.clone_from(&a.os);
                view.age_years = a.age_years;
                view.age_source = a.age_source;
                view.windows_11_capable = a.windows_11_capable;
                view.memory_bytes = a.memory_bytes;
                view.system_disk_bytes = a.system_disk_bytes;
            }
        }
        judged
            .by_host
            .insert(Arc::as_ptr(h) as usize, (Arc::downgrade(h), j));
        views[i] = Some(view);
    }
    (views.into_iter().flatten().collect(), claimed, judged)
}

/// Host `i` takes the planned asset it matches unless a host that reported
/// later took it first; otherwise it is unplanned, and the gap says why.
fn claim(
    register: &Register,
    hosts: &[Arc<HostState>],
    claimed: &mut HashMap<usize, usize>,
    i: usize,
    candidate: Option<usize>,
) -> (Option<usize>, Option<HostGap>) {
    let h = &hosts[i];
    match candidate {
        Some(a) if !claimed.contains_key(&a) => {
            claimed.insert(a, i);
            (Some(a), None)
        }
        Some(a) => (
            None,
            Some(HostGap {
                kind: GapKind::Unplanned,
                reason: format!(
                    "matches planned asset {} already taken by host {}",
                    asset_label(&register.assets[a]),
                    hosts[claimed[&a]].host_id
                )
                .into(),
            }),
        ),
        None => (
            None,
            Some(HostGap {
                kind: GapKind::Unplanned,
                reason: format!(
                    "matches no planned asset (hostname {}, serial {}, MAC {})",
                    h.hostname.as_deref().unwrap_or("unknown"),
                    h.facts.serial.as_deref().unwrap_or("unknown"),
                    h.facts.macs.first().map_or("unknown", String::as_str),
                )
                .into(),
            }),
        ),
    }
}

/// Planned assets that no host took, or whose host has gone stale.
fn missing_assets(
    register: &Register,
    hosts: &[Arc<HostState>],
    claimed: &HashMap<usize, usize>,
    at: &Moment,
    cfg: &TerritoryConfig,
) -> Vec<MissingAsset> {
    let mut missing = Vec::new();
    for (i, a) in register.assets.iter().enumerate() {
        match claimed.get(&i).map(|&h| &hosts[h]) {
            None => missing.push(MissingAsset {
                asset: i,
                site: a.site.clone(),
                host_id: None,
                reason: "never reported".into(),
            }),
            Some(h) if at.now_ms - h.last_report_ms >= at.stale_ms => missing.push(MissingAsset {
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
    missing
}

/// Every site of the register, and every site only certificates name, with
/// its counts of hosts and assets.
fn site_views(
    register: &Register,
    host_views: &[HostView],
    missing: &[MissingAsset],
) -> Vec<SiteView> {
    let mut site_counts: BTreeMap<String, Counts> = register
        .sites
        .iter()
        .map(|s| (s.id.clone(), Counts::default()))
        .collect();
    for a in &register.assets {
        site_counts.entry(a.site.clone()).or_default().expected += 1;
    }
    for m in missing {
        site_counts.entry(m.site.clone()).or_default().missing += 1;
    }
    for h in host_views.iter().filter(|h| h.presence != Presence::Stale) {
        // The site is almost always known: no key to copy for the lookup.
        let c = match site_counts.get_mut(&h.site) {
            Some(c) => c,
            None => site_counts.entry(h.site.clone()).or_default(),
        };
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
    let register_site: HashMap<&str, &Site> =
        register.sites.iter().map(|s| (s.id.as_str(), s)).collect();
    site_counts
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
        .collect()
}

/// Every comune with at least one site, its sites' counts summed and
/// scored.
fn comune_views(register: &Register, sites: &[SiteView], cfg: &TerritoryConfig) -> Vec<ComuneView> {
    let mut sites_of: HashMap<&str, Vec<&SiteView>> = HashMap::new();
    for s in sites {
        if let Some(code) = &s.istat_code {
            sites_of.entry(code).or_default().push(s);
        }
    }
    // A comune without sites is not (yet) served: the ISTAT list of a whole
    // province can stay in the register without topping the ranking.
    register
        .comuni
        .iter()
        .filter_map(|c| Some((c, sites_of.get(c.istat_code.as_str())?)))
        .map(|(c, its_sites)| {
            let mut counts = Counts::default();
            for s in its_sites {
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
        .collect()
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
/// A comune with no host up or offline scores 1 on every part: nothing
/// there can be shown to be fine.
pub fn score(c: &Counts, cfg: &TerritoryConfig) -> (f64, BTreeMap<ScorePart, f64>) {
    let ratio = |n: u64, d: u64| if d == 0 { 1.0 } else { n as f64 / d as f64 };
    let hosts = |n: u64| ratio(n, c.hosts);
    let part = |p: ScorePart| match p {
        ScorePart::Missing if c.expected > 0 => ratio(c.missing, c.expected),
        // Nothing planned: coverage is judged by whether anything reports.
        ScorePart::Missing => {
            if c.hosts == 0 {
                1.0
            } else {
                0.0
            }
        }
        ScorePart::Offline => hosts(c.offline),
        ScorePart::OsEol => hosts(c.os_eol),
        ScorePart::UnderSpec => hosts(c.under_spec),
        ScorePart::NearlyFull => hosts(c.nearly_full),
        ScorePart::Unplanned => hosts(c.unplanned),
    };
    let parts: BTreeMap<ScorePart, f64> = ScorePart::ALL.iter().map(|&p| (p, part(p))).collect();
    let weights = cfg.score.parts();
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    let weighted: f64 = weights.iter().map(|(p, w)| w * parts[p]).sum();
    ((weighted / total).clamp(0.0, 1.0), parts)
}

fn offline_gap(h: &HostState, now_ms: i64) -> HostGap {
    HostGap {
        kind: GapKind::Offline,
        reason: format!(
            "no report for {} (since {})",
            human_duration((now_ms - h.last_report_ms) / 1000),
            timestamp_of(h.last_report_ms)
        )
        .into(),
    }
}

/// What a host's stored state lacks, the same at every evaluation of the
/// same day.
fn assess_host(
    h: &HostState,
    catalog: &EolCatalog,
    cfg: &TerritoryConfig,
    today: Date,
) -> Assessed {
    let mut out = Assessed::default();
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
                out.gaps.push(HostGap {
                    kind: GapKind::OsEol,
                    reason: format!(
                        "{} reached end of life on {} ({} days ago)",
                        r.name, r.eol, -days
                    )
                    .into(),
                });
            }
            out.os = Some(Arc::new(OsLifecycle {
                release_id: r.id.clone(),
                release: r.name.clone(),
                eol: r.eol.to_string(),
                eol_timestamp_secs: r.eol.midnight().assume_utc().unix_timestamp(),
                days_remaining: days,
                extended_eol: r.extended_eol.map(|d| d.to_string()),
            }));
        }
        None => out.gaps.push(HostGap {
            kind: GapKind::OsUnknown,
            reason: match (&h.os_name, &h.os_version) {
                (Some(n), v) => format!(
                    "{n} {} is not in the end-of-life catalog",
                    v.as_deref().unwrap_or("(no version)")
                )
                .into(),
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
    out.gaps
        .extend(a.shortfalls.into_iter().map(|(kind, reason)| HostGap {
            kind,
            reason: reason.into(),
        }));
    out.age_years = a.age_years.map(|(y, _)| (y * 10.0).round() / 10.0);
    out.age_source = a.age_years.map(|(_, s)| s);
    out.windows_11_capable = a.windows_11_capable;
    out.memory_bytes = a.memory_bytes;
    out.system_disk_bytes = a.system_disk_bytes;

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
        out.gaps.push(HostGap {
            kind: GapKind::NearlyFull,
            reason: format!(
                "filesystem nearly full: {} (limit {}%)",
                full.join(", "),
                cfg.hardware.nearly_full_percent
            )
            .into(),
        });
    }
    out
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
            reason: m.reason.as_str().into(),
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

    #[test]
    fn read_only_images_are_never_full_whatever_the_case_of_their_type() {
        let fs = |fs_type: &str| campanile_proto::v1::Filesystem {
            mount_point: "D:\\".into(),
            device: "cd0".into(),
            fs_type: fs_type.into(),
            size_bytes: 4 << 30,
            available_bytes: 0,
        };
        for t in ["UDF", "CDFS", "cdfs", "iso9660", "SquashFS", "erofs"] {
            assert_eq!(filesystem_used_percent(&fs(t)), None, "{t}");
        }
        assert_eq!(filesystem_used_percent(&fs("NTFS")), Some(100.0));
    }

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

    fn eval_with(hosts: &[Arc<HostState>], now_ms: i64, prior: &Judgements) -> (View, Judgements) {
        evaluate_with(
            &register(),
            &EolCatalog::embedded(),
            &TerritoryConfig::default(),
            hosts,
            now_ms,
            prior,
        )
    }

    fn judged_of<'a>(j: &'a Judgements, h: &Arc<HostState>) -> &'a Arc<Judged> {
        j.get(h, date_of(NOW)).expect("judged")
    }

    #[test]
    fn an_unchanged_host_is_judged_once_and_its_view_is_what_a_fresh_evaluation_gives() {
        let debian = |id: &str, at: i64| {
            let mut h = host(id, at);
            h.os_name = Some("Debian GNU/Linux".into());
            h.os_version = Some("9".into());
            h.facts.memory_total_bytes = Some(1 << 30);
            Arc::new(h)
        };
        let (pc1, stray) = (debian("pc1", NOW - 1_000), debian("stray", NOW - 2_000));
        let hosts = vec![pc1.clone(), stray.clone()];
        let (first, j1) = eval_with(&hosts, NOW, &Judgements::default());
        // Ten minutes on, the same states: pc1 is now offline, and its
        // offline gap says for how long, as a fresh evaluation would.
        let later = NOW + 600_000;
        let (second, j2) = eval_with(&hosts, later, &j1);
        assert!(Arc::ptr_eq(judged_of(&j1, &pc1), judged_of(&j2, &pc1)));
        assert!(Arc::ptr_eq(judged_of(&j1, &stray), judged_of(&j2, &stray)));
        let json = |v: &View| serde_json::to_string(v).unwrap();
        assert_eq!(
            json(&second),
            json(&eval_with(&hosts, later, &Judgements::default()).0)
        );
        assert_ne!(json(&first), json(&second));
        assert!(second.hosts.iter().all(|h| h.has(GapKind::Offline)));
        assert!(
            first
                .hosts
                .iter()
                .all(|h| h.has(GapKind::OsEol) && h.under_spec())
        );

        // A new report is a new state: judged anew, the other host not.
        let mut upgraded = (*pc1).clone();
        upgraded.os_version = Some("13".into());
        upgraded.last_report_ms = later;
        let upgraded = Arc::new(upgraded);
        let hosts = vec![upgraded.clone(), stray.clone()];
        let (third, j3) = eval_with(&hosts, later, &j2);
        assert!(Arc::ptr_eq(judged_of(&j2, &stray), judged_of(&j3, &stray)));
        assert!(
            !judged_of(&j3, &upgraded)
                .assessed
                .as_ref()
                .unwrap()
                .gaps
                .iter()
                .any(|g| g.kind == GapKind::OsEol)
        );
        assert_eq!(
            json(&third),
            json(&eval_with(&hosts, later, &Judgements::default()).0)
        );
        assert_eq!(j3.len(), 2, "the replaced state is not kept");
    }

    #[test]
    fn judgements_of_another_day_are_not_reused() {
        let mut h = host("pc1", NOW - 1_000);
        h.os_name = Some("Debian GNU/Linux".into());
        h.os_version = Some("12".into());
        h.interval_secs = 86_400;
        let hosts = vec![Arc::new(h)];
        let (first, j1) = eval_with(&hosts, NOW, &Judgements::default());
        let (next_day, j2) = eval_with(&hosts, NOW + DAY_MS, &j1);
        assert!(j1.get(&hosts[0], date_of(NOW + DAY_MS)).is_none());
        assert!(j2.get(&hosts[0], date_of(NOW + DAY_MS)).is_some());
        let days = |v: &View| v.hosts[0].os.as_ref().unwrap().days_remaining;
        assert_eq!(days(&first) - 1, days(&next_day));
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
