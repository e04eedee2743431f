//! Which OS release a host runs, where the platform reads more of it than
//! sysinfo does (Windows: the edition, feature update and patch level).

#[derive(Debug, Default, Clone, PartialEq)]
pub struct OsRelease {
    /// "Windows" or "Windows Server".
    pub name: String,
    /// "11 (22631)", "10 (19045)", "2019 (17763)": the end-of-life
    /// catalog's version, then the build in parentheses, as sysinfo
    /// writes it.
    pub version: Option<String>,
    /// "Windows 11 Pro", "Windows 10 Enterprise LTSC 2019".
    pub edition: Option<String>,
    /// The feature update: "23H2" (DisplayVersion), or "1809" (ReleaseId)
    /// on builds older than 20H2.
    pub display_version: Option<String>,
    pub build: Option<u32>,
    /// The update build revision: the patch level within the build.
    pub build_revision: Option<u32>,
    /// When the OS was installed (or last upgraded in place), Unix seconds.
    pub install_time_seconds: Option<i64>,
}
