//! Linux sources: /etc/machine-id, /sys/class/dmi, /sys/block,
//! /sys/class/net, /proc, the dpkg status file, rpm and systemctl.

use std::fs;
use std::path::Path;
use std::process::Command;

use campanile_proto::v1::{Disk, DiskList, Dmi, FailedUnits, NetInterface, Package, PackageList};

const DPKG_STATUS: &str = "/var/lib/dpkg/status";
const RPM_DB_DIR: &str = "/var/lib/rpm";

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    let s = fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

fn read_u64(path: impl AsRef<Path>) -> Option<u64> {
    read_trimmed(path)?.parse().ok()
}

pub fn machine_id() -> Option<String> {
    read_trimmed("/etc/machine-id").or_else(|| read_trimmed("/var/lib/dbus/machine-id"))
}

/// DMI/SMBIOS from sysfs. The directory is missing on machines without DMI
/// (many VMs, ARM boards): then the whole message is absent. Serials are
/// root-only: an unreadable file leaves just that field absent.
pub fn dmi() -> Option<Dmi> {
    let dir = Path::new("/sys/class/dmi/id");
    if !dir.is_dir() {
        return None;
    }
    let f = |name: &str| read_trimmed(dir.join(name));
    Some(Dmi {
        system_vendor: f("sys_vendor"),
        product_name: f("product_name"),
        product_serial: f("product_serial"),
        bios_vendor: f("bios_vendor"),
        bios_version: f("bios_version"),
        bios_date: f("bios_date"),
    })
}

/// (mtime seconds, size) of the package database, to skip re-reading an
/// unchanged one every cycle.
pub fn package_db_stamp() -> Option<(u64, u64)> {
    let stamp = |p: &Path| {
        let m = fs::metadata(p).ok()?;
        let mtime = m
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        Some((mtime, m.len()))
    };
    stamp(Path::new(DPKG_STATUS)).or_else(|| {
        ["rpmdb.sqlite", "Packages", "Packages.db"]
            .iter()
            .find_map(|f| stamp(&Path::new(RPM_DB_DIR).join(f)))
    })
}

/// Installed packages from dpkg's status file, else from `rpm -qa`.
pub fn packages() -> Option<PackageList> {
    if let Ok(text) = fs::read_to_string(DPKG_STATUS) {
        return Some(PackageList {
            source: "dpkg".into(),
            items: parse_dpkg_status(&text),
        });
    }
    if Path::new(RPM_DB_DIR).is_dir() {
        let out = Command::new("rpm")
            .args(["-qa", "--qf", "%{NAME}\t%{VERSION}-%{RELEASE}\t%{ARCH}\n"])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let mut items: Vec<Package> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut it = l.split('\t');
                Some(Package {
                    name: it.next()?.to_owned(),
                    version: it.next()?.to_owned(),
                    arch: it.next().unwrap_or_default().to_owned(),
                    ..Default::default()
                })
            })
            .collect();
        items.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
        return Some(PackageList {
            source: "rpm".into(),
            items,
        });
    }
    None
}

/// Installed packages from a dpkg status file, sorted by name and arch.
pub fn parse_dpkg_status(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        let (mut name, mut version, mut arch, mut installed) = (None, None, "", false);
        for line in para.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Architecture: ") {
                arch = v.trim();
            } else if let Some(v) = line.strip_prefix("Status: ") {
                installed = v.trim().ends_with(" installed");
            }
        }
        if let (Some(name), Some(version), true) = (name, version, installed) {
            out.push(Package {
                name: name.to_owned(),
                version: version.to_owned(),
                arch: arch.to_owned(),
                ..Default::default()
            });
        }
    }
    out.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
    out
}

/// Physical block devices (no loop, ram, zram, device-mapper, optical).
pub fn disks() -> Option<DiskList> {
    let entries = fs::read_dir("/sys/block").ok()?;
    let mut items: Vec<Disk> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let skip = ["loop", "ram", "zram", "dm-", "sr", "md", "nbd", "fd"];
            if skip.iter().any(|p| name.starts_with(p)) {
                return None;
            }
            let dir = e.path();
            Some(Disk {
                model: read_trimmed(dir.join("device/model")),
                serial: read_trimmed(dir.join("device/serial")),
                size_bytes: read_u64(dir.join("size")).map(|sectors| sectors * 512),
                rotational: read_u64(dir.join("queue/rotational")).map(|r| r == 1),
                name,
            })
        })
        .collect();
    items.sort_by(|a, b| a.name.cmp(&b.name));
    Some(DiskList { items })
}

/// Interfaces whose sysfs node sits under /devices/virtual (lo, bridges,
/// veth, tun, docker...).
pub fn is_virtual_interface(name: &str) -> bool {
    fs::canonicalize(Path::new("/sys/class/net").join(name))
        .map(|p| p.to_string_lossy().contains("/devices/virtual/"))
        .unwrap_or(true)
}

/// Counters of every interface from sysfs, sorted by name.
pub fn interfaces(include_virtual: bool) -> Option<Vec<NetInterface>> {
    let entries = fs::read_dir("/sys/class/net").ok()?;
    let mut out: Vec<NetInterface> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if !include_virtual && is_virtual_interface(&name) {
                return None;
            }
            let stat = |f: &str| read_u64(e.path().join("statistics").join(f));
            Some(NetInterface {
                rx_bytes: stat("rx_bytes")?,
                tx_bytes: stat("tx_bytes")?,
                rx_errors: stat("rx_errors"),
                tx_errors: stat("tx_errors"),
                rx_dropped: stat("rx_dropped"),
                tx_dropped: stat("tx_dropped"),
                name,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Some(out)
}

/// Processes: numeric entries of /proc (cheaper than a full process table).
pub fn process_count() -> Option<u32> {
    let n = fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    u32::try_from(n).ok()
}

/// Failed systemd units, where systemd is the running init.
pub fn failed_units() -> Option<FailedUnits> {
    if !Path::new("/run/systemd/system").is_dir() {
        return None;
    }
    let out = Command::new("systemctl")
        .args([
            "list-units",
            "--state=failed",
            "--no-legend",
            "--plain",
            "--no-pager",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    Some(FailedUnits {
        count: u32::try_from(names.len()).unwrap_or(u32::MAX),
        names: names.into_iter().take(16).collect(),
    })
}

/// Default gateways from the kernel's routing tables.
pub fn default_gateways() -> Option<super::netconf::Gateways> {
    use super::netconf;
    let v4 = fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|t| netconf::ipv4_default_gateway(&t))
        .map(|ip| campanile_probe::Address::new(ip.into()));
    let v6 = fs::read_to_string("/proc/net/ipv6_route")
        .ok()
        .and_then(|t| netconf::ipv6_default_gateway(&t))
        .map(|(ip, dev)| campanile_probe::Address {
            ip: ip.into(),
            // Only link-local next hops need the interface.
            scope_id: if ip.is_unicast_link_local() {
                read_u64(format!("/sys/class/net/{dev}/ifindex"))
                    .and_then(|i| u32::try_from(i).ok())
                    .unwrap_or(0)
            } else {
                0
            },
        });
    Some(netconf::Gateways { v4, v6 })
}

/// The resolvers the host uses. When resolv.conf names only
/// systemd-resolved's local stub, its upstream servers are the ones worth
/// probing.
pub fn dns_resolvers() -> Option<Vec<campanile_probe::Address>> {
    use super::netconf;
    let etc = netconf::resolv_conf_nameservers(&fs::read_to_string("/etc/resolv.conf").ok()?);
    if !etc.is_empty()
        && etc.iter().all(netconf::is_local_stub)
        && let Ok(t) = fs::read_to_string("/run/systemd/resolve/resolv.conf")
    {
        return Some(netconf::resolv_conf_nameservers(&t));
    }
    Some(etc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_keeps_only_installed_packages() {
        let text = "Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2-1\n\n\
                    Package: old\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1.0\n\n\
                    Package: a-lib\nStatus: install ok installed\nArchitecture: all\nVersion: 2\nDescription: x\n y\n";
        let p = parse_dpkg_status(text);
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a-lib", "bash"]);
        assert_eq!(p[1].version, "5.2-1");
    }
}
