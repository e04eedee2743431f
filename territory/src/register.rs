//! The territory register the operator maintains: comuni, their sites, and
//! the assets planned at each site. An invalid register is refused with the
//! line and the reason; callers keep the previous one in force.

use std::collections::HashSet;
use std::path::Path;

use campanile_proto::identity::validate_id;
use serde::Deserialize;
use toml::Spanned;

use crate::host::{normalize_hostname, normalize_mac};

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("register {origin}: cannot read: {source}")]
    Read {
        origin: String,
        source: std::io::Error,
    },
    #[error("register {origin}, line {line}: {reason}")]
    Invalid {
        origin: String,
        line: usize,
        reason: String,
    },
}

/// A register given on its own (`register check`, an importer's
/// `--comuni`) is input the operator must fix.
impl From<RegisterError> for campanile_proto::config::ConfigError {
    fn from(e: RegisterError) -> Self {
        Self::file(e)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegister {
    #[serde(default)]
    comune: Vec<RawComune>,
    #[serde(default)]
    site: Vec<RawSite>,
    #[serde(default)]
    asset: Vec<RawAsset>,
    #[serde(default)]
    device: Vec<RawDevice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    id: Spanned<String>,
    site: Spanned<String>,
    address: Spanned<String>,
    #[serde(default = "default_device_kind")]
    kind: Spanned<String>,
    name: Option<String>,
    tcp_port: Option<Spanned<u32>>,
}

fn default_device_kind() -> Spanned<String> {
    Spanned::new(0..0, "other".into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComune {
    istat_code: Spanned<String>,
    name: String,
    province: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    id: Spanned<String>,
    comune: Spanned<String>,
    name: String,
    #[serde(default = "default_kind")]
    kind: Spanned<String>,
    wan_address: Option<Spanned<String>>,
}

fn default_kind() -> Spanned<String> {
    Spanned::new(0..0, "other".into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAsset {
    site: Spanned<String>,
    #[serde(default = "default_role")]
    role: Spanned<String>,
    hostname: Option<String>,
    serial: Option<String>,
    mac: Option<Spanned<String>>,
    name: Option<String>,
}

fn default_role() -> Spanned<String> {
    Spanned::new(0..0, "pc".into())
}

pub const SITE_KINDS: &[&str] = &["town_hall", "school", "library", "office", "depot", "other"];
pub const ASSET_ROLES: &[&str] = &[
    "pc",
    "server",
    "router",
    "switch",
    "printer",
    "access_point",
    "other",
];

pub const DEVICE_KINDS: &[&str] = &[
    "router",
    "switch",
    "firewall",
    "access_point",
    "printer",
    "ups",
    "camera",
    "other",
];

/// Agentless devices one site may list: agents on duty probe them all each
/// cycle, so the number stays small.
pub const MAX_DEVICES_PER_SITE: usize = 32;

/// An agentless device (router, switch, printer) that agents of its site
/// probe on the collector's behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    pub site: String,
    /// IP literal or host name, as the agents will resolve it.
    pub address: String,
    pub kind: String,
    pub name: Option<String>,
    /// Probe by TCP connect to this port instead of ICMP echo.
    pub tcp_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comune {
    /// ISTAT code: six digits, the national identifier of a comune.
    pub istat_code: String,
    pub name: String,
    pub province: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub id: String,
    pub istat_code: String,
    pub name: String,
    pub kind: String,
    pub wan_address: Option<std::net::IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedAsset {
    pub site: String,
    pub role: String,
    /// Lower-case hostname (short name, no domain).
    pub hostname: Option<String>,
    pub serial: Option<String>,
    /// Lower-case, colon-separated.
    pub mac: Option<String>,
    pub name: Option<String>,
}

/// A validated register.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Register {
    pub comuni: Vec<Comune>,
    pub sites: Vec<Site>,
    pub assets: Vec<PlannedAsset>,
    pub devices: Vec<Device>,
}

/// Where a site lies: its comune's ISTAT code and name, for labelling gaps
/// and alerts. Sites the register does not know have neither.
pub struct Places<'a> {
    site_istat: std::collections::HashMap<&'a str, &'a str>,
    comune_name: std::collections::HashMap<&'a str, &'a str>,
}

impl<'a> Places<'a> {
    /// (ISTAT code, comune name) of `site`.
    pub fn of(&self, site: &str) -> (Option<&'a str>, Option<&'a str>) {
        let code = self.site_istat.get(site).copied();
        (code, code.and_then(|c| self.comune_name.get(c).copied()))
    }
}

impl Register {
    pub fn places(&self) -> Places<'_> {
        Places {
            site_istat: self
                .sites
                .iter()
                .map(|s| (s.id.as_str(), s.istat_code.as_str()))
                .collect(),
            comune_name: self
                .comuni
                .iter()
                .map(|c| (c.istat_code.as_str(), c.name.as_str()))
                .collect(),
        }
    }

    /// "4 comuni, 6 sites, 9 assets, 2 devices".
    pub fn summary(&self) -> String {
        format!(
            "{} comuni, {} sites, {} assets, {} devices",
            self.comuni.len(),
            self.sites.len(),
            self.assets.len(),
            self.devices.len()
        )
    }

    pub fn load(path: &Path) -> Result<Self, RegisterError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RegisterError::Read {
            origin: origin.clone(),
            source,
        })?;
        Self::parse(&text, &origin)
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, RegisterError> {
        let line_of = |span: std::ops::Range<usize>| {
            text[..span.start.min(text.len())].matches('\n').count() + 1
        };
        let err = |span: std::ops::Range<usize>, reason: String| RegisterError::Invalid {
            origin: origin.to_owned(),
            line: line_of(span),
            reason,
        };
        let raw: RawRegister = toml::from_str(text).map_err(|e| {
            err(
                e.span().unwrap_or(0..0),
                e.message().trim_end().replace('\n', " "),
            )
        })?;

        let mut comuni = Vec::with_capacity(raw.comune.len());
        let mut codes = HashSet::new();
        for c in raw.comune {
            let code = c.istat_code.get_ref();
            if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(
                    c.istat_code.span(),
                    format!("ISTAT code {code:?} must be six digits"),
                ));
            }
            if !codes.insert(code.clone()) {
                return Err(err(
                    c.istat_code.span(),
                    format!("comune {code} is listed twice"),
                ));
            }
            if c.name.trim().is_empty() {
                return Err(err(
                    c.istat_code.span(),
                    format!("comune {code} has no name"),
                ));
            }
            comuni.push(Comune {
                istat_code: code.clone(),
                name: c.name.trim().to_owned(),
                province: c
                    .province
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty()),
            });
        }

        let mut sites = Vec::with_capacity(raw.site.len());
        let mut site_ids = HashSet::new();
        for s in raw.site {
            let id = s.id.get_ref();
            validate_id("site", id).map_err(|e| err(s.id.span(), e.to_string()))?;
            if !site_ids.insert(id.clone()) {
                return Err(err(s.id.span(), format!("site {id} is listed twice")));
            }
            if !codes.contains(s.comune.get_ref()) {
                return Err(err(
                    s.comune.span(),
                    format!(
                        "site {id}: comune {} is not in the register",
                        s.comune.get_ref()
                    ),
                ));
            }
            if !SITE_KINDS.contains(&s.kind.get_ref().as_str()) {
                return Err(err(
                    s.kind.span(),
                    format!(
                        "site {id}: kind {:?} is not one of {}",
                        s.kind.get_ref(),
                        SITE_KINDS.join(", ")
                    ),
                ));
            }
            let wan_address = match &s.wan_address {
                Some(a) => Some(a.get_ref().parse().map_err(|_| {
                    err(
                        a.span(),
                        format!(
                            "site {id}: wan_address {:?} is not an IP address",
                            a.get_ref()
                        ),
                    )
                })?),
                None => None,
            };
            sites.push(Site {
                id: id.clone(),
                istat_code: s.comune.into_inner(),
                name: s.name.trim().to_owned(),
                kind: s.kind.into_inner(),
                wan_address,
            });
        }

        let mut assets = Vec::with_capacity(raw.asset.len());
        let mut seen = HashSet::new();
        for a in raw.asset {
            let site = a.site.get_ref();
            if !site_ids.contains(site) {
                return Err(err(
                    a.site.span(),
                    format!("asset: site {site} is not in the register"),
                ));
            }
            if !ASSET_ROLES.contains(&a.role.get_ref().as_str()) {
                return Err(err(
                    a.role.span(),
                    format!(
                        "asset: role {:?} is not one of {}",
                        a.role.get_ref(),
                        ASSET_ROLES.join(", ")
                    ),
                ));
            }
            let hostname = a
                .hostname
                .as_deref()
                .map(normalize_hostname)
                .filter(|h| !h.is_empty());
            let serial = a
                .serial
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty());
            let mac = match &a.mac {
                Some(m) => Some(normalize_mac(m.get_ref()).ok_or_else(|| {
                    err(
                        m.span(),
                        format!("asset: MAC {:?} is not six hex bytes", m.get_ref()),
                    )
                })?),
                None => None,
            };
            if hostname.is_none() && serial.is_none() && mac.is_none() {
                return Err(err(
                    a.site.span(),
                    "asset: needs at least one of hostname, serial, mac".into(),
                ));
            }
            for key in [
                hostname.as_ref().map(|h| format!("hostname {h}")),
                serial.as_ref().map(|s| format!("serial {s}")),
                mac.as_ref().map(|m| format!("MAC {m}")),
            ]
            .into_iter()
            .flatten()
            {
                if !seen.insert(key.clone()) {
                    return Err(err(
                        a.site.span(),
                        format!("asset: {key} is already planned"),
                    ));
                }
            }
            assets.push(PlannedAsset {
                site: site.clone(),
                role: a.role.into_inner(),
                hostname,
                serial,
                mac,
                name: a.name,
            });
        }
        let mut devices = Vec::with_capacity(raw.device.len());
        let mut device_ids = HashSet::new();
        let mut per_site: std::collections::HashMap<String, usize> = Default::default();
        for d in raw.device {
            let id = d.id.get_ref();
            validate_id("device", id).map_err(|e| err(d.id.span(), e.to_string()))?;
            if !device_ids.insert(id.clone()) {
                return Err(err(d.id.span(), format!("device {id} is listed twice")));
            }
            let site = d.site.get_ref();
            if !site_ids.contains(site) {
                return Err(err(
                    d.site.span(),
                    format!("device {id}: site {site} is not in the register"),
                ));
            }
            let n = per_site.entry(site.clone()).or_default();
            *n += 1;
            if *n > MAX_DEVICES_PER_SITE {
                return Err(err(
                    d.id.span(),
                    format!("site {site} lists more than {MAX_DEVICES_PER_SITE} devices"),
                ));
            }
            if !DEVICE_KINDS.contains(&d.kind.get_ref().as_str()) {
                return Err(err(
                    d.kind.span(),
                    format!(
                        "device {id}: kind {:?} is not one of {}",
                        d.kind.get_ref(),
                        DEVICE_KINDS.join(", ")
                    ),
                ));
            }
            let address = d.address.get_ref().trim();
            if !valid_device_address(address) {
                return Err(err(
                    d.address.span(),
                    format!("device {id}: address {address:?} is not an IP address or host name"),
                ));
            }
            let tcp_port = match &d.tcp_port {
                Some(p) => Some(
                    u16::try_from(*p.get_ref())
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| {
                            err(p.span(), format!("device {id}: tcp_port must be 1-65535"))
                        })?,
                ),
                None => None,
            };
            devices.push(Device {
                id: id.clone(),
                site: site.clone(),
                address: address.to_owned(),
                kind: d.kind.into_inner(),
                name: d
                    .name
                    .map(|n| n.trim().to_owned())
                    .filter(|n| !n.is_empty()),
                tcp_port,
            });
        }
        Ok(Self {
            comuni,
            sites,
            assets,
            devices,
        })
    }
}

/// An IP literal, or a DNS host name (letters, digits, '-', '.').
fn valid_device_address(a: &str) -> bool {
    if a.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    (1..=253).contains(&a.len())
        && a.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
[[comune]]
istat_code = "037006"
name = "Borgo Tossignano"
province = "BO"

[[site]]
id = "borgo-municipio"
comune = "037006"
name = "Municipio"
kind = "town_hall"
wan_address = "192.0.2.10"

[[asset]]
site = "borgo-municipio"
role = "pc"
hostname = "PC-Segreteria.borgo.local"
mac = "AA-BB-CC-00-11-22"
"#;

    #[test]
    fn parses_and_normalises_identifiers() {
        let r = Register::parse(OK, "t").unwrap();
        assert_eq!(r.comuni[0].name, "Borgo Tossignano");
        assert_eq!(r.sites[0].istat_code, "037006");
        assert_eq!(r.assets[0].hostname.as_deref(), Some("pc-segreteria"));
        assert_eq!(r.assets[0].mac.as_deref(), Some("aa:bb:cc:00:11:22"));
    }

    #[test]
    fn refuses_with_the_line_and_the_reason() {
        let cases = [
            (
                OK.replace("\"037006\"\nname = \"Borgo", "\"37006\"\nname = \"Borgo"),
                3,
                "six digits",
            ),
            (
                OK.replace("comune = \"037006\"", "comune = \"999999\""),
                9,
                "not in the register",
            ),
            (
                OK.replace("kind = \"town_hall\"", "kind = \"castle\""),
                11,
                "kind",
            ),
            (
                OK.replace("site = \"borgo-municipio\"", "site = \"nowhere\""),
                15,
                "not in the register",
            ),
            (OK.replace("AA-BB-CC-00-11-22", "AA-BB"), 18, "MAC"),
            (
                OK.replace("role = \"pc\"", "role = \"pc\"\ncolour = \"red\""),
                17,
                "unknown field",
            ),
        ];
        for (text, line, needle) in cases {
            let e = Register::parse(&text, "reg.toml").unwrap_err().to_string();
            assert!(
                e.contains(&format!("line {line}:")) && e.contains(needle),
                "{e}"
            );
        }
    }

    #[test]
    fn refuses_an_asset_planned_twice() {
        let twice =
            format!("{OK}\n[[asset]]\nsite = \"borgo-municipio\"\nhostname = \"pc-segreteria\"\n");
        let e = Register::parse(&twice, "t").unwrap_err().to_string();
        assert!(e.contains("already planned"), "{e}");
    }

    #[test]
    fn parses_devices_and_refuses_bad_ones_with_their_line() {
        let with = |d: &str| format!("{OK}\n[[device]]\n{d}\n");
        let r = Register::parse(
            &with("id = \"router-municipio\"\nsite = \"borgo-municipio\"\naddress = \"192.0.2.1\"\nkind = \"router\""),
            "t",
        )
        .unwrap();
        assert_eq!(r.devices[0].id, "router-municipio");
        assert_eq!(r.devices[0].tcp_port, None);
        let r = Register::parse(
            &with("id = \"stampante\"\nsite = \"borgo-municipio\"\naddress = \"printer-1.borgo.local\"\nkind = \"printer\"\ntcp_port = 9100"),
            "t",
        )
        .unwrap();
        assert_eq!(r.devices[0].tcp_port, Some(9100));
        for (device, needle) in [
            (
                "id = \"r\"\nsite = \"nowhere\"\naddress = \"192.0.2.1\"",
                "not in the register",
            ),
            (
                "id = \"r\"\nsite = \"borgo-municipio\"\naddress = \"not an address!\"",
                "not an IP address or host name",
            ),
            (
                "id = \"r\"\nsite = \"borgo-municipio\"\naddress = \"192.0.2.1\"\nkind = \"toaster\"",
                "kind",
            ),
            (
                "id = \"r\"\nsite = \"borgo-municipio\"\naddress = \"192.0.2.1\"\ntcp_port = 70000",
                "tcp_port",
            ),
            (
                "id = \"R 1\"\nsite = \"borgo-municipio\"\naddress = \"192.0.2.1\"",
                "device",
            ),
        ] {
            let e = Register::parse(&with(device), "t").unwrap_err().to_string();
            assert!(e.contains(needle), "{device}: {e}");
            assert!(e.contains(", line 2"), "{device}: {e}");
        }
        let twice = with(
            "id = \"r\"\nsite = \"borgo-municipio\"\naddress = \"192.0.2.1\"\n[[device]]\nid = \"r\"\nsite = \"borgo-municipio\"\naddress = \"192.0.2.2\"",
        );
        assert!(
            Register::parse(&twice, "t")
                .unwrap_err()
                .to_string()
                .contains("listed twice")
        );
    }
}
