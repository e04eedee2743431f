//! The few inventory facts the territory view reads for every host (serial,
//! MACs, RAM, system disk, BIOS date...), normalised once when an inventory
//! arrives and kept in columns of `hosts`.

use campanile_proto::v1::Inventory;
use rusqlite::{Connection, params};

use crate::territory::register::normalize_mac;

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
            memory_total_bytes: inv.memory_total_bytes,
            system_disk_bytes: inv
                .disks
                .iter()
                .flat_map(|l| &l.items)
                .find_map(|d| d.size_bytes.filter(|s| *s > 0)),
            bios_date: dmi.bios_date.as_deref().and_then(iso_date),
        }
    }

    /// MACs as stored: space-separated.
    pub fn macs_column(&self) -> Option<String> {
        (!self.macs.is_empty()).then(|| self.macs.join(" "))
    }

    pub fn macs_from_column(column: Option<String>) -> Vec<String> {
        column
            .map(|c| c.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Writes the facts columns of one host (the row must exist).
    pub fn write(&self, conn: &Connection, host_id: &str) -> rusqlite::Result<()> {
        conn.execute(
            "UPDATE hosts SET os_edition = ?2, serial = ?3, macs = ?4, vendor = ?5, model = ?6,
                cpu_model = ?7, cpu_cores = ?8, memory_total_bytes = ?9,
                system_disk_bytes = ?10, bios_date = ?11 WHERE host_id = ?1",
            params![
                host_id,
                self.os_edition,
                self.serial,
                self.macs_column(),
                self.vendor,
                self.model,
                self.cpu_model,
                self.cpu_cores,
                self.memory_total_bytes.map(|b| b as i64),
                self.system_disk_bytes.map(|b| b as i64),
                self.bios_date,
            ],
        )
        .map(|_| ())
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
        assert_eq!(
            Facts::macs_from_column(f.macs_column()),
            f.macs,
            "the column round-trips"
        );
    }
}
