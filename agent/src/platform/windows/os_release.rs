//! Which Windows this is, from `HKLM\SOFTWARE\Microsoft\Windows NT\
//! CurrentVersion`: name, version and build as the end-of-life catalog
//! reads them, the edition, the feature update (22H2) and the patch level.

use super::values::Values;
use crate::platform::release::OsRelease;

pub const CURRENT_VERSION_KEY: &str = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion";

/// Windows 11 kept Windows 10's major version (10) and, in `ProductName`,
/// its name: only the build tells them apart.
const FIRST_WINDOWS_11_BUILD: u32 = 22000;

pub fn from_values(v: &Values) -> OsRelease {
    let build = v
        .string("CurrentBuild")
        .or_else(|| v.string("CurrentBuildNumber"))
        .and_then(|b| b.trim().parse::<u32>().ok());
    // "Microsoft Windows XP" in old releases (and in Wine): the edition
    // starts at "Windows".
    let product = v.string("ProductName").map(|p| {
        let p = p.trim();
        p.strip_prefix("Microsoft ").unwrap_or(p).to_owned()
    });
    let server = v
        .string("InstallationType")
        .is_some_and(|t| t.starts_with("Server"))
        || product.as_deref().is_some_and(|p| p.contains("Server"));
    let edition = product.map(|p| match build {
        Some(b) if b >= FIRST_WINDOWS_11_BUILD && !server => {
            p.replacen("Windows 10", "Windows 11", 1)
        }
        _ => p,
    });
    let version = if server {
        edition.as_deref().and_then(server_year)
    } else {
        client_version(v, build, edition.as_deref())
    };
    let with_build = |ver: String| match build {
        Some(b) => format!("{ver} ({b})"),
        None => ver,
    };
    OsRelease {
        name: if server { "Windows Server" } else { "Windows" }.to_owned(),
        version: version.map(with_build),
        edition,
        display_version: v
            .string("DisplayVersion")
            .or_else(|| v.string("ReleaseId"))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
        build,
        build_revision: v.dword("UBR"),
        install_time_seconds: v.dword("InstallDate").map(i64::from).filter(|t| *t > 0),
    }
}

/// "11", "10", or for the releases before 10 the number in the product
/// name ("Windows 7 Professional" -> "7", "Windows 8.1 Pro" -> "8.1").
fn client_version(v: &Values, build: Option<u32>, edition: Option<&str>) -> Option<String> {
    if build.is_some_and(|b| b >= FIRST_WINDOWS_11_BUILD) {
        return Some("11".into());
    }
    if let Some(major) = v.dword("CurrentMajorVersionNumber") {
        return Some(major.to_string());
    }
    let name = edition?.strip_prefix("Windows ")?;
    let number = name.split_whitespace().next()?;
    number
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.')
        .then(|| number.to_owned())
}

/// "Windows Server 2012 R2 Standard" -> "2012 R2".
fn server_year(product: &str) -> Option<String> {
    let rest = product.split("Server").nth(1)?;
    let mut words = rest.split_whitespace();
    let year = words
        .next()
        .filter(|w| w.len() == 4 && w.chars().all(|c| c.is_ascii_digit()))?;
    Some(match words.next() {
        Some("R2") => format!("{year} R2"),
        _ => year.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::windows::values::RegValue;
    use crate::platform::windows::values::fixtures::key;

    fn release(fixture: &str) -> OsRelease {
        from_values(&key(fixture, CURRENT_VERSION_KEY))
    }

    #[test]
    fn windows_11_is_told_from_10_by_its_build() {
        let os = release(include_str!("fixtures/current_version_win11_23h2.txt"));
        assert_eq!(
            os,
            OsRelease {
                name: "Windows".into(),
                version: Some("11 (22631)".into()),
                edition: Some("Windows 11 Pro".into()),
                display_version: Some("23H2".into()),
                build: Some(22631),
                build_revision: Some(3880),
                install_time_seconds: Some(1_699_992_225),
            }
        );
    }

    #[test]
    fn windows_10_22h2() {
        let os = release(include_str!("fixtures/current_version_win10_22h2.txt"));
        assert_eq!(os.version.as_deref(), Some("10 (19045)"));
        assert_eq!(os.edition.as_deref(), Some("Windows 10 Pro"));
        assert_eq!(os.display_version.as_deref(), Some("22H2"));
        assert_eq!(os.build_revision, Some(3803));
    }

    #[test]
    fn ltsc_before_20h2_has_its_release_id_and_its_edition() {
        let os = release(include_str!("fixtures/current_version_ltsc2019.txt"));
        assert_eq!(os.version.as_deref(), Some("10 (17763)"));
        assert_eq!(
            os.edition.as_deref(),
            Some("Windows 10 Enterprise LTSC 2019")
        );
        assert_eq!(os.display_version.as_deref(), Some("1809"));
    }

    #[test]
    fn iot_ltsc_2024_is_named_windows_11() {
        let os = release(include_str!("fixtures/current_version_iot_ltsc2024.txt"));
        assert_eq!(os.version.as_deref(), Some("11 (26100)"));
        assert_eq!(
            os.edition.as_deref(),
            Some("Windows 11 IoT Enterprise LTSC 2024")
        );
    }

    #[test]
    fn servers_give_their_year() {
        let os = release(include_str!("fixtures/current_version_server2019.txt"));
        assert_eq!(os.name, "Windows Server");
        assert_eq!(os.version.as_deref(), Some("2019 (17763)"));
        assert_eq!(os.edition.as_deref(), Some("Windows Server 2019 Standard"));
        assert_eq!(
            server_year("Windows Server 2012 R2 Datacenter").as_deref(),
            Some("2012 R2")
        );
        assert_eq!(server_year("Windows Server Datacenter"), None);
    }

    #[test]
    fn windows_7_has_no_major_version_value() {
        let os = release(include_str!("fixtures/current_version_win7.txt"));
        assert_eq!(os.version.as_deref(), Some("7 (7601)"));
        assert_eq!(os.edition.as_deref(), Some("Windows 7 Professional"));
        assert_eq!(os.display_version, None);
    }

    #[test]
    fn a_product_name_with_microsoft_in_front_is_the_same_edition() {
        let v = Values::new(vec![
            (
                "ProductName".into(),
                RegValue::Str("Microsoft Windows 10".into()),
            ),
            ("CurrentBuild".into(), RegValue::Str("19043".into())),
        ]);
        let os = from_values(&v);
        assert_eq!(os.edition.as_deref(), Some("Windows 10"));
        assert_eq!(os.version.as_deref(), Some("10 (19043)"));
    }

    #[test]
    fn missing_values_stay_unknown() {
        let os = from_values(&Values::default());
        assert_eq!(os.name, "Windows");
        assert_eq!(os.version, None);
        assert_eq!(os.edition, None);
        assert_eq!(os.build, None);
    }
}
