//! The kinds of gap the territory shows.

/// The kinds of gap Campanile reports. `docs/territory.md` ("Gaps") says
/// what each means. Every place that names one (the API's JSON, its
/// `?kind=` filter, the CSV export) spells it as [`GapKind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GapKind {
    /// A planned asset that never reported, or not for `missing_after_days`.
    Missing,
    /// A host that reported recently but not within 3 of its intervals.
    Offline,
    /// A reporting host that matches no planned asset.
    Unplanned,
    /// The operating system is past its end of life.
    OsEol,
    /// The operating system is not in the catalog (or not yet known).
    OsUnknown,
    LowMemory,
    SmallDisk,
    OldHardware,
    /// A Windows client that cannot run Windows 11.
    NoWindows11,
    /// A filesystem used at or above `nearly_full_percent`.
    NearlyFull,
}

impl serde::Serialize for GapKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl GapKind {
    /// Every kind, in the order of the docs.
    pub const ALL: [GapKind; 10] = [
        Self::Missing,
        Self::Offline,
        Self::Unplanned,
        Self::OsEol,
        Self::OsUnknown,
        Self::LowMemory,
        Self::SmallDisk,
        Self::OldHardware,
        Self::NoWindows11,
        Self::NearlyFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Offline => "offline",
            Self::Unplanned => "unplanned",
            Self::OsEol => "os_eol",
            Self::OsUnknown => "os_unknown",
            Self::LowMemory => "low_memory",
            Self::SmallDisk => "small_disk",
            Self::OldHardware => "old_hardware",
            Self::NoWindows11 => "no_windows_11",
            Self::NearlyFull => "nearly_full",
        }
    }

    /// Shortfalls that make a machine "under spec".
    pub fn is_under_spec(self) -> bool {
        matches!(
            self,
            Self::LowMemory | Self::SmallDisk | Self::OldHardware | Self::NoWindows11
        )
    }
}
