//! Operating-system end of life, from a catalog that ships as a data file
//! (`territory/data/eol-catalog.toml`, embedded) and can be replaced by
//! pointing the config at another copy, without a rebuild.
//!
//! A system the catalog does not know stays unknown: it is never reported
//! as supported.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::{Date, Month};

const EMBEDDED: &str = include_str!("../data/eol-catalog.toml");

/// OS families the catalog can name.
pub const FAMILIES: &[&str] = &[
    "debian",
    "ubuntu",
    "rhel",
    "rocky",
    "almalinux",
    "centos",
    "centos-stream",
    "windows",
    "windows-server",
];

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("EOL catalog {origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error("EOL catalog {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    release: Vec<RawRelease>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelease {
    id: String,
    name: String,
    os: String,
    version: String,
    build: Option<u32>,
    build_below: Option<u32>,
    #[serde(default)]
    editions: Vec<String>,
    eol: String,
    extended_eol: Option<String>,
}

/// One release of one operating system and its support dates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub id: String,
    pub name: String,
    pub os: String,
    pub version: String,
    pub build: Option<u32>,
    pub build_below: Option<u32>,
    /// Normalised editions ([`normalize_edition`]); empty = any edition.
    pub editions: Vec<String>,
    /// Last day of free security updates.
    pub eol: Date,
    /// Last day of paid extended support, where sold.
    pub extended_eol: Option<Date>,
}

/// What the inventory says about a host's operating system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFacts<'a> {
    pub name: Option<&'a str>,
    pub version: Option<&'a str>,
    pub kernel: Option<&'a str>,
    pub edition: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct EolCatalog {
    releases: Vec<Release>,
}

impl EolCatalog {
    /// The catalog built into this collector.
    pub fn embedded() -> Self {
        Self::parse(EMBEDDED, "embedded").expect("the embedded EOL catalog is tested to parse")
    }

    pub fn load(path: &Path) -> Result<Self, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, CatalogError> {
        let invalid = |message: String| CatalogError::Invalid {
            origin: origin.to_owned(),
            message,
        };
        let raw: RawCatalog = toml::from_str(text).map_err(|e| invalid(e.message().to_owned()))?;
        let mut ids = HashSet::new();
        let mut releases = Vec::with_capacity(raw.release.len());
        for r in raw.release {
            if !ids.insert(r.id.clone()) {
                return Err(invalid(format!("release id {:?} appears twice", r.id)));
            }
            if !FAMILIES.contains(&r.os.as_str()) {
                return Err(invalid(format!(
                    "release {}: os {:?} is not one of {}",
                    r.id,
                    r.os,
                    FAMILIES.join(", ")
                )));
            }
            let date = |field: &str, s: &str| {
                parse_date(s).ok_or_else(|| {
                    invalid(format!(
                        "release {}: {field} {s:?} is not a YYYY-MM-DD date",
                        r.id
                    ))
                })
            };
            let eol = date("eol", &r.eol)?;
            let extended_eol = r
                .extended_eol
                .as_deref()
                .map(|s| date("extended_eol", s))
                .transpose()?;
            releases.push(Release {
                eol,
                extended_eol,
                editions: r.editions.iter().map(|e| normalize_edition(e)).collect(),
                id: r.id,
                name: r.name,
                os: r.os,
                version: r.version,
                build: r.build,
                build_below: r.build_below,
            });
        }
        Ok(Self { releases })
    }

    pub fn releases(&self) -> &[Release] {
        &self.releases
    }

    /// The first release matching the host, or `None` (unknown).
    pub fn lookup(&self, os: &OsFacts<'_>) -> Option<&Release> {
        let family = os_family(os.name?, os.edition)?;
        let version = os.version?.trim();
        let build = windows_build(version, os.kernel);
        let edition = os.edition.map(normalize_edition);
        self.releases.iter().find(|r| {
            r.os == family
                && version_matches(version, &r.version)
                && r.build.is_none_or(|b| build == Some(b))
                && r.build_below.is_none_or(|b| build.is_some_and(|x| x < b))
                && (r.editions.is_empty()
                    || edition.as_deref().is_some_and(|e| {
                        r.editions.iter().any(|want| {
                            e == want
                                || e.strip_prefix(want.as_str())
                                    .is_some_and(|rest| rest.starts_with(' '))
                        })
                    }))
        })
    }
}

/// Days from `today` to the end of life (negative once past).
pub fn days_remaining(release: &Release, today: Date) -> i64 {
    (release.eol - today).whole_days()
}

/// The catalog family of an OS name as agents report it.
pub fn os_family(name: &str, edition: Option<&str>) -> Option<&'static str> {
    let n = name.to_lowercase();
    let server =
        n.contains("server") || edition.is_some_and(|e| e.to_lowercase().contains("server"));
    Some(if n.contains("windows") {
        if server { "windows-server" } else { "windows" }
    } else if n.contains("ubuntu") {
        "ubuntu"
    } else if n.contains("debian") {
        "debian"
    } else if n.contains("red hat") || n == "rhel" {
        "rhel"
    } else if n.contains("rocky") {
        "rocky"
    } else if n.contains("alma") {
        "almalinux"
    } else if n.contains("centos stream") {
        "centos-stream"
    } else if n.contains("centos") {
        "centos"
    } else {
        return None;
    })
}

/// "Windows 10 Pro Education" -> "pro education": lower-case words without
/// the product name and numbers.
pub fn normalize_edition(edition: &str) -> String {
    edition
        .split_whitespace()
        .map(str::to_lowercase)
        .filter(|w| w != "windows" && w != "microsoft" && !w.chars().all(|c| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `version` equals `want` or continues it with "." or " " (12 ~ 12.5, not 120).
fn version_matches(version: &str, want: &str) -> bool {
    version == want
        || version
            .strip_prefix(want)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with(' '))
}

/// Windows build: "11 (22631)" as sysinfo writes the version, else the
/// kernel version when it is a plain number.
fn windows_build(version: &str, kernel: Option<&str>) -> Option<u32> {
    let in_parens = version
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(b, _)| b.trim().parse().ok());
    in_parens.or_else(|| kernel.and_then(|k| k.trim().parse().ok()))
}

fn parse_date(s: &str) -> Option<Date> {
    let mut it = s.split('-');
    let year: i32 = it.next()?.parse().ok()?;
    let month: u8 = it.next()?.parse().ok()?;
    let day: u8 = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(name: &'a str, version: &'a str) -> OsFacts<'a> {
        OsFacts {
            name: Some(name),
            version: Some(version),
            ..Default::default()
        }
    }

    fn eol(c: &EolCatalog, f: OsFacts<'_>) -> Option<String> {
        c.lookup(&f).map(|r| format!("{} {}", r.id, r.eol))
    }

    #[test]
    fn embedded_catalog_parses_and_every_windows_date_is_a_patch_tuesday() {
        let c = EolCatalog::embedded();
        assert!(c.releases().len() > 40);
        for r in c.releases().iter().filter(|r| r.os.starts_with("windows")) {
            // Microsoft ends servicing on the second Tuesday of a month.
            assert_eq!(r.eol.weekday(), time::Weekday::Tuesday, "{}", r.id);
            assert!(
                (8..=14).contains(&r.eol.day()),
                "{} is not a second Tuesday",
                r.id
            );
        }
    }

    #[test]
    fn known_dates_for_a_sample_of_systems() {
        let c = EolCatalog::embedded();
        assert_eq!(
            eol(&c, facts("Debian GNU/Linux", "12")).unwrap(),
            "debian-12 2028-06-30"
        );
        assert_eq!(
            eol(&c, facts("Debian GNU/Linux", "11.9")).unwrap(),
            "debian-11 2026-08-31"
        );
        assert_eq!(
            eol(&c, facts("Ubuntu", "22.04")).unwrap(),
            "ubuntu-22.04 2027-06-01"
        );
        let ubuntu20 = c.lookup(&facts("Ubuntu", "20.04")).unwrap();
        assert_eq!(
            ubuntu20.extended_eol.unwrap().to_string(),
            "2030-04-30",
            "ESM noted separately"
        );
        assert_eq!(
            eol(&c, facts("Red Hat Enterprise Linux", "9.3")).unwrap(),
            "rhel-9 2032-05-31"
        );
        assert_eq!(
            eol(&c, facts("Rocky Linux", "8.10")).unwrap(),
            "rocky-8 2029-05-31"
        );
        assert_eq!(
            eol(&c, facts("CentOS Stream", "9")).unwrap(),
            "centos-stream-9 2027-05-31"
        );
        assert_eq!(
            eol(&c, facts("CentOS Linux", "7")).unwrap(),
            "centos-7 2024-06-30"
        );
        assert_eq!(
            eol(&c, facts("Windows", "7")).unwrap(),
            "windows-7 2020-01-14"
        );
        assert_eq!(
            eol(&c, facts("Windows", "10 (19045)")).unwrap(),
            "windows-10-22h2 2025-10-14"
        );
        let ent = OsFacts {
            edition: Some("Windows 11 Enterprise"),
            ..facts("Windows", "11 (22631)")
        };
        assert_eq!(
            eol(&c, ent).unwrap(),
            "windows-11-23h2-enterprise 2026-11-10"
        );
        assert_eq!(
            eol(&c, facts("Windows", "11 (22631)")).unwrap(),
            "windows-11-23h2 2025-11-11"
        );
        let ltsc = OsFacts {
            edition: Some("Windows 10 Enterprise LTSC 2019"),
            ..facts("Windows", "10 (17763)")
        };
        assert_eq!(eol(&c, ltsc).unwrap(), "windows-10-ltsc-2019 2029-01-09");
        let kernel_build = OsFacts {
            kernel: Some("19044"),
            edition: Some("Windows 10 Pro"),
            ..facts("Windows", "10")
        };
        assert_eq!(eol(&c, kernel_build).unwrap(), "windows-10-21h2 2023-06-13");
        // Pro Education follows Home/Pro, not Enterprise/Education.
        let pro_edu = OsFacts {
            edition: Some("Windows 11 Pro Education"),
            ..facts("Windows", "11 (26100)")
        };
        assert_eq!(eol(&c, pro_edu).unwrap(), "windows-11-24h2 2026-10-13");
        let iot = OsFacts {
            edition: Some("Windows 11 IoT Enterprise LTSC 2024"),
            ..facts("Windows", "11 (26100)")
        };
        assert_eq!(eol(&c, iot).unwrap(), "windows-11-iot-ltsc-2024 2034-10-10");
        assert_eq!(
            eol(&c, facts("Windows Server", "2019")).unwrap(),
            "windows-server-2019 2029-01-09"
        );
        let today = Date::from_calendar_date(2026, Month::November, 22).unwrap();
        assert_eq!(
            days_remaining(c.lookup(&facts("Debian GNU/Linux", "10")).unwrap(), today),
            -875
        );
    }

    #[test]
    fn unknown_systems_stay_unknown() {
        let c = EolCatalog::embedded();
        for f in [
            facts("Arch Linux", "rolling"),
            facts("Debian GNU/Linux", "120"),
            facts("Ubuntu", "23.10"),
            facts("Windows", "10"),         // build unknown: no guess
            facts("Windows", "10 (17763)"), // LTSC build without an edition
            facts("Windows", "11 (26100)"), // 24H2 or LTSC 2024: edition needed
            facts("FreeBSD", "14.1"),
            OsFacts::default(),
        ] {
            assert!(c.lookup(&f).is_none(), "{f:?} matched {:?}", c.lookup(&f));
        }
    }

    #[test]
    fn a_replacement_catalog_is_validated() {
        let bad_date =
            "[[release]]\nid=\"x\"\nname=\"X\"\nos=\"debian\"\nversion=\"1\"\neol=\"2020-02-30\"\n";
        assert!(
            EolCatalog::parse(bad_date, "t")
                .unwrap_err()
                .to_string()
                .contains("eol")
        );
        let bad_os = bad_date
            .replace("debian", "plan9")
            .replace("02-30", "02-03");
        assert!(
            EolCatalog::parse(&bad_os, "t")
                .unwrap_err()
                .to_string()
                .contains("plan9")
        );
        let ok = bad_date.replace("02-30", "02-03");
        let dup = format!("{ok}{ok}");
        assert!(
            EolCatalog::parse(&dup, "t")
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert_eq!(EolCatalog::parse(&ok, "t").unwrap().releases().len(), 1);
    }
}
