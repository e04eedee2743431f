//! What the collector knows of a host: its current state as the store
//! keeps it and the evaluation reads it, the few inventory facts the
//! territory judges (normalised once, when an inventory arrives), and how
//! identifiers are normalised so that the register and the hosts compare.

use campanile_proto::v1::{AgentStats, Health, Inventory, Probes};

/// What the collector learns about an agent from the request itself rather
/// than from its reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerFacts {
    /// Agent clock minus collector clock when the request arrived (the
    /// transit time makes it read slightly low).
    pub clock_offset_ms: Option<i64>,
    /// Expiry of the client certificate the request came with.
    pub cert_not_after_ms: Option<i64>,
}

/// Current state of one host, as `/metrics` needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct HostState {
    pub host_id: String,
    pub site: String,
    pub first_seen_ms: i64,
    pub last_report_ms: i64,
    pub last_collected_ms: i64,
    pub interval_secs: u32,
    pub agent_version: String,
    pub hostname: Option<String>,
    pub os_name: Option<String>,
    pub os_version: Option<String>,
    pub kernel: Option<String>,
    pub arch: Option<String>,
    /// Empty until the first inventory arrives.
    pub facts: Facts,
    pub health: Option<Health>,
    pub agent_stats: Option<AgentStats>,
    /// The latest report's probe results; `None` when probes are off.
    pub probes: Option<Probes>,
    /// ProbeDuty.sha256 the host said it holds; empty = none.
    pub probe_duty_sha256: Vec<u8>,
    /// As of the host's latest request.
    pub peer: PeerFacts,
}

/// A host is up while its last report is younger than this many intervals.
pub const UP_INTERVALS: i64 = 3;

impl HostState {
    /// A host that has just reported, with nothing else known: the start of
    /// scenarios in tests.
    #[cfg(any(test, feature = "test-support"))]
    pub fn reported(host_id: &str, site: &str, at_ms: i64) -> Self {
        Self {
            host_id: host_id.into(),
            site: site.into(),
            first_seen_ms: at_ms,
            last_report_ms: at_ms,
            last_collected_ms: at_ms,
            interval_secs: 60,
            agent_version: "test".into(),
            hostname: None,
            os_name: None,
            os_version: None,
            kernel: None,
            arch: None,
            facts: Facts::default(),
            health: None,
            agent_stats: None,
            probes: None,
            probe_duty_sha256: Vec::new(),
            peer: PeerFacts::default(),
        }
    }

    pub fn is_up(&self, now_ms: i64) -> bool {
        now_ms - self.last_report_ms < UP_INTERVALS * i64::from(self.interval_secs.max(1)) * 1000
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub os_edition: Option<String>,
    /// The machine's serial number, without the placeholders vendors leave
    /// in unset DMI fields.
    pub serial: Option<String>,
    /// Lower-case, colon-separated, sorted.
    pub macs: Vec<String>,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub cpu_model: Option<String>,
    pub cpu_cores: Option<u32>,
    pub memory_total_bytes: Option<u64>,
    /// Size of the first disk the agent lists (sda, nvme0n1...), the one the
    /// system boots from on the machines a comune buys.
    pub system_disk_bytes: Option<u64>,
    /// BIOS release date, ISO `YYYY-MM-DD`.
    pub bios_date: Option<String>,
    /// What Windows 11 asks of the firmware, where the agent reads it
    /// (Windows agents); `None` from agents that do not.
    pub firmware: Option<FirmwareFacts>,
}

/// The firmware's part of Windows 11 readiness. Each field `None` when the
/// agent could not read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirmwareFacts {
    /// A TPM is there (enabled: a TPM off in the firmware is not seen).
    pub tpm_present: Option<bool>,
    /// "2.0", "1.2".
    pub tpm_version: Option<String>,
    /// The firmware can boot UEFI, so Secure Boot can be had.
    pub uefi_supported: Option<bool>,
    pub secure_boot: Option<bool>,
}

impl Facts {
    pub fn from_inventory(inv: &Inventory) -> Self {
        let dmi = inv.dmi.clone().unwrap_or_default();
        let mut macs: Vec<String> = inv
            .nics
            .iter()
            .flat_map(|l| &l.items)
            .filter_map(|n| n.mac.as_deref().and_then(normalize_mac))
            .filter(|m| m != "00:00:00:00:00:00")
            .collect();
        macs.sort();
        macs.dedup();
        Self {
            os_edition: inv.os_edition.clone(),
            serial: dmi.product_serial.as_deref().and_then(real_serial),
            macs,
            vendor: dmi.system_vendor.filter(|v| !is_placeholder(v)),
            model: dmi.product_name.filter(|v| !is_placeholder(v)),
            cpu_model: inv.cpu_model.clone(),
            cpu_cores: inv.cpu_cores,
            // What is installed, where the agent reads it: the OS shows
            // less (firmware, integrated graphics).
            memory_total_bytes: inv.memory_installed_bytes.or(inv.memory_total_bytes),
            system_disk_bytes: inv
                .disks
                .iter()
                .flat_map(|l| &l.items)
                .find_map(|d| d.size_bytes.filter(|s| *s > 0)),
            bios_date: dmi.bios_date.as_deref().and_then(iso_date),
            firmware: inv.firmware.as_ref().map(|f| FirmwareFacts {
                tpm_present: f.tpm.as_ref().map(|t| t.present),
                tpm_version: f.tpm.as_ref().and_then(|t| t.version.clone()),
                uefi_supported: f.uefi_supported,
                secure_boot: f.secure_boot,
            }),
        }
    }
}

/// Text firmware vendors leave in fields nobody filled in.
fn is_placeholder(v: &str) -> bool {
    let l = v.trim().to_lowercase();
    l.is_empty()
        || l.chars().all(|c| c == '0' || c == ' ' || c == '-')
        || [
            "to be filled by o.e.m.",
            "default string",
            "system serial number",
            "system product name",
            "system manufacturer",
            "not specified",
            "not applicable",
            "none",
            "n/a",
            "oem",
            "123456789",
        ]
        .contains(&l.as_str())
}

fn real_serial(s: &str) -> Option<String> {
    (!is_placeholder(s)).then(|| s.trim().to_owned())
}

/// DMI writes "MM/DD/YYYY"; some firmware "YYYY-MM-DD" or "MM/DD/YY".
pub fn iso_date(s: &str) -> Option<String> {
    parse_date(s).map(|d| d.to_string())
}

/// Parses the date forms of [`iso_date`].
pub fn parse_date(s: &str) -> Option<time::Date> {
    let s = s.trim();
    let (y, m, d): (i32, u8, u8) = if let Some((m, rest)) = s.split_once('/') {
        let (d, y) = rest.split_once('/')?;
        let y: i32 = y.parse().ok()?;
        // Two-digit years: PCs with a BIOS from before 1990 are not in use.
        let y = match y {
            0..=89 => 2000 + y,
            90..=99 => 1900 + y,
            _ => y,
        };
        (y, m.parse().ok()?, d.parse().ok()?)
    } else {
        let mut it = s.splitn(3, '-');
        (
            it.next()?.parse().ok()?,
            it.next()?.parse().ok()?,
            it.next()?.get(..2)?.parse().ok()?,
        )
    };
    let month = time::Month::try_from(m).ok()?;
    time::Date::from_calendar_date(y, month, d).ok()
}

/// Short, lower-case host name: "PC-01.comune.local" -> "pc-01".
pub fn normalize_hostname(h: &str) -> String {
    h.trim()
        .split('.')
        .next()
        .unwrap_or_default()
        .to_lowercase()
}

/// "AA-BB-CC-DD-EE-FF", "aabb.ccdd.eeff" or "aa:bb:..." -> "aa:bb:cc:dd:ee:ff".
pub fn normalize_mac(m: &str) -> Option<String> {
    let hex: String = m
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect::<String>()
        .to_lowercase();
    let separators_ok = m
        .chars()
        .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '-' | '.'));
    if hex.len() != 12 || !separators_ok {
        return None;
    }
    Some(
        hex.as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(":"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use campanile_proto::v1::{Disk, DiskList, Dmi, Nic, NicList};

    #[test]
    fn normalises_dates_serials_and_macs() {
        assert_eq!(iso_date("03/15/2019").as_deref(), Some("2019-03-15"));
        assert_eq!(iso_date("2021-07-01").as_deref(), Some("2021-07-01"));
        assert_eq!(iso_date("12/01/08").as_deref(), Some("2008-12-01"));
        assert_eq!(iso_date("13/45/2019"), None);
        assert_eq!(iso_date("unknown"), None);
        let inv = Inventory {
            dmi: Some(Dmi {
                product_serial: Some("To Be Filled By O.E.M.".into()),
                system_vendor: Some("LENOVO".into()),
                bios_date: Some("03/15/2019".into()),
                ..Default::default()
            }),
            nics: Some(NicList {
                items: vec![
                    Nic {
                        name: "eth1".into(),
                        mac: Some("BB-00-00-00-00-01".into()),
                        addresses: vec![],
                    },
                    Nic {
                        name: "eth0".into(),
                        mac: Some("aa:00:00:00:00:01".into()),
                        addresses: vec![],
                    },
                    Nic {
                        name: "lo".into(),
                        mac: Some("00:00:00:00:00:00".into()),
                        addresses: vec![],
                    },
                ],
            }),
            disks: Some(DiskList {
                items: vec![Disk {
                    name: "sda".into(),
                    size_bytes: Some(256_000_000_000),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        };
        let f = Facts::from_inventory(&inv);
        assert_eq!(f.serial, None);
        assert_eq!(f.vendor.as_deref(), Some("LENOVO"));
        assert_eq!(f.macs, ["aa:00:00:00:00:01", "bb:00:00:00:00:01"]);
        assert_eq!(f.system_disk_bytes, Some(256_000_000_000));
        assert_eq!(f.bios_date.as_deref(), Some("2019-03-15"));
    }
}
