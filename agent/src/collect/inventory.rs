//! What the machine is: OS, CPU, memory, disks, NICs, DMI, firmware,
//! packages. The package list is re-read only when its database changed;
//! the hardware sources (SMBIOS, disks, firmware) once an hour, since
//! they change with a screwdriver, not between two reports.

use std::time::{Duration, Instant};

use campanile_proto::v1::{DiskList, Dmi, Firmware, Inventory, Nic, NicList, PackageList};
use sysinfo::{Networks, System};

use crate::config::CollectConfig;
use crate::platform;

/// How long hardware facts are kept before they are read again.
const HARDWARE_REFRESH: Duration = Duration::from_secs(3600);

/// The machine's hostname, as the inventory reports it and enrollment
/// names the host by.
pub fn hostname() -> Option<String> {
    System::host_name()
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

#[derive(Default)]
pub struct InventoryCache {
    packages: Option<((u64, u64), Option<PackageList>)>,
    hardware: Option<(Instant, Hardware)>,
}

/// The sources read on the slow schedule.
#[derive(Clone)]
struct Hardware {
    dmi: Option<Dmi>,
    disks: Option<DiskList>,
    firmware: Option<Firmware>,
    memory_installed_bytes: Option<u64>,
}

impl Hardware {
    fn read() -> Self {
        Self {
            dmi: platform::dmi(),
            disks: platform::disks(),
            firmware: platform::firmware(),
            memory_installed_bytes: platform::memory_installed_bytes(),
        }
    }
}

impl InventoryCache {
    pub fn collect(&mut self, cfg: &CollectConfig, sys: Option<&mut System>) -> Inventory {
        let ok = |r: Result<String, _>| {
            r.ok()
                .map(|s: String| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        let hw = self.hardware();
        let release = platform::os_release().unwrap_or_default();
        let mut inv = Inventory {
            hostname: hostname(),
            machine_id: platform::machine_id(),
            os_name: Some(release.name)
                .filter(|n| !n.is_empty())
                .or_else(|| ok(System::name())),
            os_version: release.version.or_else(|| ok(System::os_version())),
            kernel_version: ok(System::kernel_version()),
            os_edition: release.edition,
            os_display_version: release.display_version,
            os_build: release.build,
            os_build_revision: release.build_revision,
            os_install_time_seconds: release.install_time_seconds,
            arch: Some(System::cpu_arch()).filter(|a| !a.is_empty() && a != "unknown"),
            cpu_cores: System::physical_core_count()
                .ok()
                .and_then(|n| u32::try_from(n).ok()),
            disks: hw.disks,
            nics: platform::nics(cfg.include_virtual_interfaces).or_else(|| nics(cfg)),
            dmi: hw.dmi,
            firmware: hw.firmware,
            memory_installed_bytes: hw.memory_installed_bytes,
            packages: if cfg.packages { self.packages() } else { None },
            agent_version: crate::clock::AGENT_VERSION.to_owned(),
            ..Default::default()
        };
        if let Some(sys) = sys {
            if sys.cpus().is_empty() {
                sys.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
            }
            let cpus = sys.cpus();
            inv.cpu_model = cpus
                .first()
                .map(|c| c.brand().trim().to_owned())
                .filter(|b| !b.is_empty());
            inv.cpu_threads = u32::try_from(cpus.len()).ok().filter(|n| *n > 0);
            sys.refresh_memory();
            inv.memory_total_bytes = Some(sys.total_memory()).filter(|m| *m > 0);
        }
        inv
    }

    fn hardware(&mut self) -> Hardware {
        match &self.hardware {
            Some((at, hw)) if at.elapsed() < HARDWARE_REFRESH => hw.clone(),
            _ => {
                let hw = Hardware::read();
                self.hardware = Some((Instant::now(), hw.clone()));
                hw
            }
        }
    }

    fn packages(&mut self) -> Option<PackageList> {
        let stamp = platform::package_db_stamp();
        if let (Some(stamp), Some((cached, list))) = (stamp, &self.packages)
            && *cached == stamp
        {
            return list.clone();
        }
        let list = platform::packages();
        if let Some(stamp) = stamp {
            self.packages = Some((stamp, list.clone()));
        }
        list
    }
}

fn nics(cfg: &CollectConfig) -> Option<NicList> {
    let nets = Networks::new_with_refreshed_list().ok()?;
    let mut items: Vec<Nic> = nets
        .iter()
        .filter(|(name, _)| {
            cfg.include_virtual_interfaces
                || !platform::is_virtual_interface(&name.to_string_lossy())
        })
        .map(|(name, d)| {
            let mac = d.mac_address().to_string();
            let mut addresses: Vec<String> = d
                .ip_networks()
                .iter()
                .map(|n| format!("{}/{}", n.addr, n.prefix))
                .collect();
            addresses.sort();
            Nic {
                name: name.to_string_lossy().into_owned(),
                mac: (mac != "00:00:00:00:00:00").then_some(mac),
                addresses,
            }
        })
        .collect();
    items.sort_by(|a, b| a.name.cmp(&b.name));
    Some(NicList { items })
}
