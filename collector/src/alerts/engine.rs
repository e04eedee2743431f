//! Alert state across evaluations, as Prometheus keeps it: a condition that
//! starts to hold is *pending*, becomes *firing* once it has held for the
//! rule's duration, and *resolved* when it stops holding. Each evaluation
//! also marks which alerts a maintenance window silences and which a
//! site-wide silence inhibits.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use super::maintenance::{Window, silenced_by};
use super::rules::Candidate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Firing,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub fingerprint: u64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// When the condition started to hold.
    pub active_since_ms: i64,
    /// When it fired (`startsAt`).
    pub fired_ms: Option<i64>,
    /// When it stopped holding after firing (`endsAt`).
    pub resolved_ms: Option<i64>,
    pub digest: bool,
    /// Recomputed at each evaluation, never stored.
    pub silenced_by: Option<i64>,
    pub inhibited: bool,
}

impl Alert {
    pub fn state(&self) -> State {
        match (self.fired_ms, self.resolved_ms) {
            (_, Some(_)) => State::Resolved,
            (Some(_), None) => State::Firing,
            (None, None) => State::Pending,
        }
    }

    /// Silenced or inhibited: kept and shown, not notified.
    pub fn muted(&self) -> bool {
        self.silenced_by.is_some() || self.inhibited
    }

    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }
}

/// Prometheus' label-set fingerprint (FNV-1a 64 over sorted names and
/// values, each followed by 0xff), so Alertmanager and receivers see the
/// same identity for the same labels.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    h
}

/// A firing (or resolved) host alert in comune `comune`, for tests.
#[cfg(test)]
pub fn sample_alert(
    name: &str,
    comune: &str,
    host: &str,
    fired: i64,
    resolved: Option<i64>,
) -> Alert {
    let labels: BTreeMap<String, String> = [
        ("alertname", name),
        ("comune", comune),
        ("host", host),
        ("severity", "warning"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Alert {
        fingerprint: fingerprint(&labels),
        labels,
        annotations: [("summary".to_owned(), format!("{host} down"))].into(),
        active_since_ms: fired,
        fired_ms: Some(fired),
        resolved_ms: resolved,
        digest: false,
        silenced_by: None,
        inhibited: false,
    }
}

/// What an evaluation changed that must be stored.
#[derive(Debug, Default)]
pub struct Changes {
    pub upserts: Vec<Arc<Alert>>,
    pub removed: Vec<u64>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removed.is_empty()
    }
}

/// Each alert behind an `Arc` that is replaced only when the alert changes:
/// the published view shares the unchanged ones, so an evaluation with
/// tens of thousands of alerts firing neither copies nor frees their
/// labels.
#[derive(Debug, Default)]
pub struct Engine {
    alerts: BTreeMap<u64, Arc<Alert>>,
}

impl Engine {
    /// Resumes from stored alerts (pending ones keep their start, so a
    /// restart does not reset a rule's duration).
    pub fn new(stored: Vec<Alert>) -> Self {
        Self {
            alerts: stored
                .into_iter()
                .map(|a| (a.fingerprint, Arc::new(a)))
                .collect(),
        }
    }

    pub fn alerts(&self) -> &BTreeMap<u64, Arc<Alert>> {
        &self.alerts
    }

    /// One evaluation. Resolved alerts are kept `keep_resolved_ms`, long
    /// enough for their group to notify them.
    pub fn step(
        &mut self,
        candidates: Vec<Candidate>,
        windows: &[Window],
        now_ms: i64,
        keep_resolved_ms: i64,
    ) -> Changes {
        let mut changes = Changes::default();
        let dark_sites: BTreeSet<String> = candidates
            .iter()
            .filter(|c| c.inhibits_site)
            .filter_map(|c| c.labels.get("site").cloned())
            .collect();
        let mut seen = BTreeSet::new();
        for c in candidates {
            let fp = fingerprint(&c.labels);
            if !seen.insert(fp) {
                continue;
            }
            let inhibited =
                !c.inhibits_site && c.labels.get("site").is_some_and(|s| dark_sites.contains(s));
            let silenced = silenced_by(windows, &c.labels, now_ms);
            let fire_now = |since: i64| now_ms - since >= c.for_ms;
            match self.alerts.get_mut(&fp) {
                Some(a) if a.state() != State::Resolved => {
                    let fires = a.fired_ms.is_none() && fire_now(a.active_since_ms);
                    let same = !fires
                        && a.annotations == c.annotations
                        && a.digest == c.digest
                        && a.silenced_by == silenced
                        && a.inhibited == inhibited;
                    if same {
                        continue;
                    }
                    // A copy only if the published view still holds this one.
                    let m = Arc::make_mut(a);
                    m.annotations = c.annotations;
                    m.digest = c.digest;
                    m.silenced_by = silenced;
                    m.inhibited = inhibited;
                    if fires {
                        m.fired_ms = Some(now_ms);
                        changes.upserts.push(Arc::clone(a));
                    }
                }
                // New, or back after it resolved: a new alert.
                _ => {
                    let a = Alert {
                        fingerprint: fp,
                        fired_ms: fire_now(now_ms).then_some(now_ms),
                        labels: c.labels,
                        annotations: c.annotations,
                        active_since_ms: now_ms,
                        resolved_ms: None,
                        digest: c.digest,
                        silenced_by: silenced,
                        inhibited,
                    };
                    let a = Arc::new(a);
                    changes.upserts.push(a.clone());
                    self.alerts.insert(fp, a);
                }
            }
        }
        self.alerts.retain(|fp, a| {
            if seen.contains(fp) {
                return true;
            }
            match a.state() {
                State::Pending => {
                    changes.removed.push(*fp);
                    false
                }
                State::Firing => {
                    let silenced = silenced_by(windows, &a.labels, now_ms);
                    let m = Arc::make_mut(a);
                    m.resolved_ms = Some(now_ms);
                    m.silenced_by = silenced;
                    m.inhibited = false;
                    changes.upserts.push(Arc::clone(a));
                    true
                }
                State::Resolved => {
                    let keep = now_ms - a.resolved_ms.unwrap_or(now_ms) < keep_resolved_ms;
                    if !keep {
                        changes.removed.push(*fp);
                    }
                    keep
                }
            }
        });
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::maintenance::Scope;

    fn cand(name: &str, site: &str, for_ms: i64) -> Candidate {
        Candidate {
            labels: [("alertname", name), ("site", site)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            annotations: BTreeMap::new(),
            for_ms,
            digest: false,
            inhibits_site: name == "Dark",
        }
    }

    fn site_window(id: i64, site: &str, starts_ms: i64, ends_ms: i64) -> Window {
        Window {
            id,
            scope: Scope::Site(site.into()),
            starts_ms,
            ends_ms,
            reason: String::new(),
            created_by: "t".into(),
        }
    }

    fn state_of(e: &Engine, name: &str) -> Option<State> {
        e.alerts()
            .values()
            .find(|a| a.name() == name)
            .map(|a| a.state())
    }

    #[test]
    fn fingerprints_match_prometheus() {
        // The steps of Prometheus' labelSetToFingerprint, done by hand.
        let l: BTreeMap<String, String> = [("a".to_owned(), "b".to_owned())].into();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in [b'a', 0xff, b'b', 0xff] {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        assert_eq!(fingerprint(&l), h);
        assert_eq!(fingerprint(&BTreeMap::new()), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn pending_then_firing_after_its_duration_then_resolved_then_forgotten() {
        let mut e = Engine::default();
        e.step(vec![cand("Down", "s", 10_000)], &[], 0, 60_000);
        assert_eq!(state_of(&e, "Down"), Some(State::Pending));
        e.step(vec![cand("Down", "s", 10_000)], &[], 9_999, 60_000);
        assert_eq!(state_of(&e, "Down"), Some(State::Pending));
        let c = e.step(vec![cand("Down", "s", 10_000)], &[], 10_000, 60_000);
        assert_eq!(state_of(&e, "Down"), Some(State::Firing));
        assert_eq!(c.upserts.len(), 1);
        // Nothing changed: nothing to store.
        assert!(
            e.step(vec![cand("Down", "s", 10_000)], &[], 11_000, 60_000)
                .is_empty()
        );
        e.step(vec![], &[], 12_000, 60_000);
        assert_eq!(state_of(&e, "Down"), Some(State::Resolved));
        let c = e.step(vec![], &[], 72_000, 60_000);
        assert_eq!(state_of(&e, "Down"), None);
        assert_eq!(c.removed.len(), 1);
    }

    #[test]
    fn a_pending_alert_that_clears_is_dropped_without_resolving() {
        let mut e = Engine::default();
        e.step(vec![cand("Down", "s", 10_000)], &[], 0, 60_000);
        let c = e.step(vec![], &[], 5_000, 60_000);
        assert_eq!(state_of(&e, "Down"), None);
        assert_eq!(c.removed.len(), 1);
    }

    #[test]
    fn a_dark_site_inhibits_its_own_alerts_only() {
        let mut e = Engine::default();
        e.step(
            vec![
                cand("Down", "s1", 0),
                cand("Down", "s2", 0),
                cand("Dark", "s1", 0),
            ],
            &[],
            0,
            60_000,
        );
        let by = |site: &str, name: &str| {
            e.alerts()
                .values()
                .find(|a| a.name() == name && a.labels["site"] == site)
                .unwrap()
                .inhibited
        };
        assert!(by("s1", "Down"));
        assert!(!by("s2", "Down"));
        assert!(!by("s1", "Dark"));
    }

    #[test]
    fn an_unchanged_alert_stays_shared_and_a_changed_one_is_copied_for_the_engine_alone() {
        let w = [site_window(3, "s1", 2_000, 9_000)];
        let mut e = Engine::default();
        e.step(vec![cand("Down", "s1", 0)], &w, 0, 60_000);
        let published = Arc::clone(e.alerts().values().next().unwrap());
        e.step(vec![cand("Down", "s1", 0)], &w, 1_000, 60_000);
        assert!(Arc::ptr_eq(&published, e.alerts().values().next().unwrap()));
        e.step(vec![cand("Down", "s1", 0)], &w, 2_000, 60_000);
        let now = e.alerts().values().next().unwrap();
        assert_eq!(now.silenced_by, Some(3));
        assert_eq!(published.silenced_by, None, "the view keeps what it showed");
    }

    #[test]
    fn a_window_silences_while_it_lasts() {
        let w = [site_window(7, "s1", 0, 1_000)];
        let mut e = Engine::default();
        e.step(vec![cand("Down", "s1", 0)], &w, 500, 60_000);
        assert_eq!(e.alerts().values().next().unwrap().silenced_by, Some(7));
        e.step(vec![cand("Down", "s1", 0)], &w, 1_000, 60_000);
        assert_eq!(e.alerts().values().next().unwrap().silenced_by, None);
        assert_eq!(state_of(&e, "Down"), Some(State::Firing));
    }
}
