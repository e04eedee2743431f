//! Installed software, as "Apps & features" lists it: the subkeys of
//! `SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall` in the 64-bit
//! registry view and in the 32-bit one (`WOW6432Node`), where 32-bit
//! installers write on 64-bit Windows.

use campanile_proto::v1::Package;

use super::values::Values;

pub const UNINSTALL_KEY: &str = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall";

/// The registry view an entry was read from: its architecture as the
/// inventory reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Native64,
    Wow32,
}

impl View {
    fn arch(self) -> &'static str {
        match self {
            Self::Native64 => "x64",
            Self::Wow32 => "x86",
        }
    }
}

/// One entry as "Apps & features" would show it, or `None` for what it
/// hides: entries without a display name, system components, and the
/// updates and patches listed under their parent product.
pub fn package(values: &Values, view: View) -> Option<Package> {
    let name = values.string("DisplayName")?;
    if values.dword("SystemComponent") == Some(1) || values.string("ParentKeyName").is_some() {
        return None;
    }
    if values.string("ReleaseType").is_some_and(|t| {
        matches!(
            t.to_ascii_lowercase().as_str(),
            "update" | "hotfix" | "security update" | "update rollup" | "service pack"
        )
    }) {
        return None;
    }
    Some(Package {
        name,
        version: values.string("DisplayVersion").unwrap_or_default(),
        arch: view.arch().to_owned(),
        publisher: values.string("Publisher"),
        install_date: values.string("InstallDate").as_deref().and_then(iso_date),
    })
}

/// The list from both views: sorted by name, one entry per name, version
/// and architecture (MSI products often register twice, under their
/// product code and under a friendly key).
pub fn packages(entries: impl IntoIterator<Item = (View, Values)>) -> Vec<Package> {
    let mut out: Vec<Package> = entries
        .into_iter()
        .filter_map(|(view, v)| package(&v, view))
        .collect();
    out.sort_by(|a, b| {
        (a.name.to_lowercase(), &a.version, &a.arch).cmp(&(
            b.name.to_lowercase(),
            &b.version,
            &b.arch,
        ))
    });
    out.dedup_by(|b, a| {
        a.name.eq_ignore_ascii_case(&b.name) && a.version == b.version && a.arch == b.arch
    });
    out
}

/// Installers write `InstallDate` as `YYYYMMDD`; a few write other
/// formats, which are dropped rather than guessed (is 03/04 March or
/// April?).
fn iso_date(s: &str) -> Option<String> {
    let s = s.trim();
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m, d) = (&s[..4], &s[4..6], &s[6..]);
    let month: u8 = m.parse().ok()?;
    let day: u8 = d.parse().ok()?;
    ((1..=12).contains(&month) && (1..=31).contains(&day) && y >= "1980")
        .then(|| format!("{y}-{m}-{d}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::windows::values::fixtures::subkeys;

    const WOW: &str = r"SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall";

    fn from_fixture() -> Vec<Package> {
        let text = include_str!("fixtures/uninstall_win11.txt");
        let native = subkeys(text, &format!(r"HKEY_LOCAL_MACHINE\{UNINSTALL_KEY}"))
            .into_iter()
            .map(|(_, v)| (View::Native64, v));
        let wow = subkeys(text, WOW)
            .into_iter()
            .map(|(_, v)| (View::Wow32, v));
        packages(native.chain(wow))
    }

    #[test]
    fn apps_and_features_entries_from_both_views() {
        let p = from_fixture();
        let names: Vec<(&str, &str, &str)> = p
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.arch.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("7-Zip 23.01 (x64)", "23.01", "x64"),
                ("Adobe Acrobat Reader - Italiano", "24.002.20933", "x86"),
                ("Google Chrome", "131.0.6778.86", "x64"),
                ("LibreOffice 7.6.4.1", "7.6.4.1", "x64"),
                (
                    "Microsoft Visual C++ 2015-2022 Redistributable (x86) - 14.38.33130",
                    "14.38.33130.0",
                    "x86"
                ),
                ("Mozilla Firefox (x64 it)", "133.0", "x64"),
            ]
        );
    }

    #[test]
    fn publisher_and_install_date_are_kept() {
        let p = from_fixture();
        let lo = p
            .iter()
            .find(|p| p.name.starts_with("LibreOffice"))
            .unwrap();
        assert_eq!(lo.publisher.as_deref(), Some("The Document Foundation"));
        assert_eq!(lo.install_date.as_deref(), Some("2024-01-17"));
        // Firefox writes no InstallDate.
        let ff = p.iter().find(|p| p.name.starts_with("Mozilla")).unwrap();
        assert_eq!(ff.install_date, None);
    }

    #[test]
    fn dates_are_taken_only_as_yyyymmdd() {
        assert_eq!(iso_date("20240117").as_deref(), Some("2024-01-17"));
        assert_eq!(iso_date("17/01/2024"), None);
        assert_eq!(iso_date("20241317"), None);
        assert_eq!(iso_date("00000000"), None);
    }
}
