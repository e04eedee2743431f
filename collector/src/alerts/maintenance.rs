//! Maintenance windows: for a time, a site's or a comune's alerts are
//! silenced. Alerts keep being evaluated meanwhile, so one whose condition
//! still holds when the window ends is notified then.

use std::collections::BTreeMap;

use serde::Serialize;

use super::timefmt::rfc3339;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Site(String),
    /// By ISTAT code: every site of the comune.
    Comune(String),
}

impl Scope {
    /// Exactly one of the two.
    pub fn new(site: Option<String>, istat_code: Option<String>) -> Result<Self, String> {
        match (site, istat_code) {
            (Some(s), None) if !s.trim().is_empty() => Ok(Self::Site(s.trim().to_owned())),
            (None, Some(c)) if !c.trim().is_empty() => Ok(Self::Comune(c.trim().to_owned())),
            _ => Err("give either site or istat_code (not both, not empty)".into()),
        }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let (key, want) = match self {
            Self::Site(s) => ("site", s),
            Self::Comune(c) => ("istat_code", c),
        };
        labels.get(key) == Some(want)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Windows set through the API have positive ids; those from the config
    /// negative ones (they cannot be deleted through the API).
    pub id: i64,
    pub scope: Scope,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub reason: String,
    /// The API token's name, or "config".
    pub created_by: String,
}

impl Window {
    pub fn active(&self, now_ms: i64) -> bool {
        self.starts_ms <= now_ms && now_ms < self.ends_ms
    }

    pub fn view(&self, now_ms: i64) -> WindowView {
        let (site, istat_code) = match &self.scope {
            Scope::Site(s) => (Some(s.clone()), None),
            Scope::Comune(c) => (None, Some(c.clone())),
        };
        WindowView {
            id: self.id,
            site,
            istat_code,
            starts_at: rfc3339(self.starts_ms),
            ends_at: rfc3339(self.ends_ms),
            reason: self.reason.clone(),
            created_by: self.created_by.clone(),
            active: self.active(now_ms),
        }
    }
}

/// A window as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WindowView {
    pub id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub istat_code: Option<String>,
    pub starts_at: String,
    pub ends_at: String,
    pub reason: String,
    pub created_by: String,
    pub active: bool,
}

/// The first active window that covers an alert with these labels.
pub fn silenced_by(
    windows: &[Window],
    labels: &BTreeMap<String, String>,
    now_ms: i64,
) -> Option<i64> {
    windows
        .iter()
        .find(|w| w.active(now_ms) && w.scope.matches(labels))
        .map(|w| w.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(site: &str, istat: &str) -> BTreeMap<String, String> {
        [("site", site), ("istat_code", istat)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn a_window_silences_its_site_or_comune_only_while_it_lasts() {
        let w = [
            Window {
                id: 1,
                scope: Scope::Site("s1".into()),
                starts_ms: 1_000,
                ends_ms: 2_000,
                reason: String::new(),
                created_by: "t".into(),
            },
            Window {
                id: -1,
                scope: Scope::Comune("001".into()),
                starts_ms: 5_000,
                ends_ms: 6_000,
                reason: String::new(),
                created_by: "config".into(),
            },
        ];
        assert_eq!(silenced_by(&w, &labels("s1", "009"), 1_500), Some(1));
        assert_eq!(silenced_by(&w, &labels("s1", "009"), 2_000), None);
        assert_eq!(silenced_by(&w, &labels("s2", "009"), 1_500), None);
        assert_eq!(silenced_by(&w, &labels("s9", "001"), 5_000), Some(-1));
        assert_eq!(silenced_by(&w, &labels("s9", "001"), 4_999), None);
    }
}
