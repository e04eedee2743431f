//! `[territory]`: where the register and the catalog come from and how gaps
//! are judged, parsed ([`RawTerritory`]) then validated ([`validate`]).

use std::path::{Path, PathBuf};

use campanile_proto::config::ConfigError;
use serde::Deserialize;

/// `[territory]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTerritory {
    register_path: Option<PathBuf>,
    eol_catalog_path: Option<PathBuf>,
    #[serde(default = "default_missing_after_days")]
    missing_after_days: u32,
    #[serde(default = "default_reload_check_secs")]
    reload_check_secs: u64,
    #[serde(default)]
    hardware: HardwareThresholds,
    #[serde(default)]
    score: ScoreWeights,
}

impl Default for RawTerritory {
    fn default() -> Self {
        Self {
            register_path: None,
            eol_catalog_path: None,
            missing_after_days: default_missing_after_days(),
            reload_check_secs: default_reload_check_secs(),
            hardware: HardwareThresholds::default(),
            score: ScoreWeights::default(),
        }
    }
}

fn default_missing_after_days() -> u32 {
    14
}
fn default_reload_check_secs() -> u64 {
    10
}

/// Below these a host is "under spec" (see `docs/territory.md`, "Gaps").
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HardwareThresholds {
    /// RAM as installed; the OS reports a little less, so a host counts as
    /// short below 90% of it.
    pub min_memory_mib: u64,
    /// System disk size in decimal gigabytes, as disks are sold.
    pub min_system_disk_gb: u64,
    /// A filesystem is nearly full from this share of its size in use.
    pub nearly_full_percent: f64,
    /// Hardware older than this (BIOS date, else first seen) is under spec.
    pub max_hardware_age_years: u32,
    /// Flag Windows client hosts that cannot run Windows 11.
    pub check_windows_11: bool,
}

impl Default for HardwareThresholds {
    fn default() -> Self {
        Self {
            min_memory_mib: 8192,
            min_system_disk_gb: 120,
            nearly_full_percent: 90.0,
            max_hardware_age_years: 8,
            check_windows_11: true,
        }
    }
}

/// The parts of `campanile_comune_gap_score`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScorePart {
    Missing,
    Offline,
    OsEol,
    UnderSpec,
    NearlyFull,
    Unplanned,
}

impl ScorePart {
    pub const ALL: [ScorePart; 6] = [
        Self::Missing,
        Self::Offline,
        Self::OsEol,
        Self::UnderSpec,
        Self::NearlyFull,
        Self::Unplanned,
    ];

    /// The name in the config (`[territory.score]`) and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Offline => "offline",
            Self::OsEol => "os_eol",
            Self::UnderSpec => "under_spec",
            Self::NearlyFull => "nearly_full",
            Self::Unplanned => "unplanned",
        }
    }
}

impl serde::Serialize for ScorePart {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Weights of the parts of `campanile_comune_gap_score`; only their ratios
/// matter (the score divides by their sum).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScoreWeights {
    pub missing: f64,
    pub offline: f64,
    pub os_eol: f64,
    pub under_spec: f64,
    pub nearly_full: f64,
    pub unplanned: f64,
}

impl Default for ScoreWeights {
    fn default() -> Self {
        Self {
            missing: 0.30,
            offline: 0.20,
            os_eol: 0.25,
            under_spec: 0.15,
            nearly_full: 0.05,
            unplanned: 0.05,
        }
    }
}

impl ScoreWeights {
    pub fn weight(&self, part: ScorePart) -> f64 {
        match part {
            ScorePart::Missing => self.missing,
            ScorePart::Offline => self.offline,
            ScorePart::OsEol => self.os_eol,
            ScorePart::UnderSpec => self.under_spec,
            ScorePart::NearlyFull => self.nearly_full,
            ScorePart::Unplanned => self.unplanned,
        }
    }

    /// Every part with its weight.
    pub fn parts(&self) -> [(ScorePart, f64); 6] {
        ScorePart::ALL.map(|p| (p, self.weight(p)))
    }
}

/// Where the register and the catalog come from and how gaps are judged.
#[derive(Debug, Clone)]
pub struct TerritoryConfig {
    /// Without a register every host is unplanned and no asset is missing.
    pub register_path: Option<PathBuf>,
    /// Without it the catalog built into the binary is used.
    pub eol_catalog_path: Option<PathBuf>,
    pub missing_after_days: u32,
    pub reload_check_secs: u64,
    pub hardware: HardwareThresholds,
    pub score: ScoreWeights,
}

impl Default for TerritoryConfig {
    fn default() -> Self {
        let raw = RawTerritory::default();
        Self {
            register_path: None,
            eol_catalog_path: None,
            missing_after_days: raw.missing_after_days,
            reload_check_secs: raw.reload_check_secs,
            hardware: raw.hardware,
            score: raw.score,
        }
    }
}

/// Validates `[territory]`; relative paths are taken from `base`, and
/// `invalid` makes the error that names the field.
pub fn validate(
    raw: RawTerritory,
    base: &Path,
    invalid: &impl Fn(&'static str, String) -> ConfigError,
) -> Result<TerritoryConfig, ConfigError> {
    let h = &raw.hardware;
    if !(h.nearly_full_percent > 0.0 && h.nearly_full_percent <= 100.0) {
        return Err(invalid(
            "territory.hardware.nearly_full_percent",
            "must be above 0 and at most 100".into(),
        ));
    }
    if raw.missing_after_days == 0 {
        return Err(invalid(
            "territory.missing_after_days",
            "must be positive".into(),
        ));
    }
    if raw.reload_check_secs == 0 {
        return Err(invalid(
            "territory.reload_check_secs",
            "must be positive".into(),
        ));
    }
    let parts = raw.score.parts();
    if let Some((part, _)) = parts.iter().find(|(_, w)| !(w.is_finite() && *w >= 0.0)) {
        return Err(invalid(
            "territory.score",
            format!("weight {} must be a number of 0 or more", part.as_str()),
        ));
    }
    if parts.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 {
        return Err(invalid(
            "territory.score",
            "at least one weight must be above 0".into(),
        ));
    }
    Ok(TerritoryConfig {
        register_path: raw.register_path.map(|p| base.join(p)),
        eol_catalog_path: raw.eol_catalog_path.map(|p| base.join(p)),
        missing_after_days: raw.missing_after_days,
        reload_check_secs: raw.reload_check_secs,
        hardware: raw.hardware,
        score: raw.score,
    })
}
