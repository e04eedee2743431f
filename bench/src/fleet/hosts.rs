//! The simulated territory: comuni, sites and hosts drawn from a seed, the
//! register the collector loads for them, and the reports each host sends.
//!
//! Everything is a function of (seed, host index), so a host's inventory is
//! rebuilt when it must be sent instead of being kept for 50,000 hosts.

use campanile_proto::v1::{
    AgentStats, Disk, DiskList, Dmi, Filesystem, Health, IcmpResult, Inventory, NetInterface, Nic,
    NicList, Package, PackageList, ProbeDuty, Probes, Report, TcpResult,
};

/// Hosts per site and sites per comune of the generated territory: small
/// town halls of a few dozen PCs, a main office and one branch each.
pub const HOSTS_PER_SITE: usize = 25;
pub const SITES_PER_COMUNE: usize = 2;
/// Packages in a full inventory. A real Debian desktop has ~800 (31 KB
/// encoded); a municipal Windows PC reports far fewer.
const PACKAGES: usize = 150;

/// Operating systems in the mix, with the share (per mille) of hosts
/// running each. Some are past end of life, as in any real territory.
const OS_MIX: &[(&str, &str, Option<&str>, u32)] = &[
    ("Windows", "10 (19045)", Some("Windows 10 Pro"), 380),
    ("Windows", "11 (22631)", Some("Windows 11 Pro"), 300),
    ("Windows", "7 (7601)", Some("Windows 7 Professional"), 30),
    (
        "Windows",
        "Server 2019 (17763)",
        Some("Windows Server 2019 Standard"),
        40,
    ),
    ("Debian GNU/Linux", "12", None, 120),
    ("Debian GNU/Linux", "10", None, 30),
    ("Ubuntu", "22.04", None, 80),
    ("Ubuntu", "18.04", None, 20),
];

/// The layout of a fleet of `agents` hosts.
#[derive(Debug, Clone)]
pub struct Layout {
    pub agents: usize,
    pub seed: u64,
}

impl Layout {
    pub fn new(agents: usize, seed: u64) -> Self {
        Self { agents, seed }
    }

    pub fn sites(&self) -> usize {
        self.agents.div_ceil(HOSTS_PER_SITE).max(1)
    }

    pub fn comuni(&self) -> usize {
        self.sites().div_ceil(SITES_PER_COMUNE)
    }

    pub fn host_id(&self, i: usize) -> String {
        format!("sim-{i:06}")
    }

    /// Hosts fill sites in order, so the first N hosts of a larger fleet
    /// make a smaller territory of full sites.
    pub fn site_of(&self, i: usize) -> String {
        format!("site-{:05}", i / HOSTS_PER_SITE)
    }

    fn serial(&self, i: usize) -> String {
        format!(
            "SIM{:08X}",
            (self.seed as usize ^ 0x5a5a)
                .wrapping_mul(31)
                .wrapping_add(i)
        )
    }

    /// The register the collector loads: every comune and site, two
    /// agentless devices per site (probed by the agent on duty), 98 % of
    /// the hosts planned by serial, and 1 % planned assets that never report.
    /// No WAN addresses: the collector would ping them.
    pub fn register_toml(&self) -> String {
        let mut out = String::new();
        for c in 0..self.comuni() {
            out += &format!(
                "[[comune]]\nistat_code = \"{:06}\"\nname = \"Comune simulato {c}\"\nprovince = \"SI\"\n\n",
                100_000 + c
            );
        }
        for s in 0..self.sites() {
            out += &format!(
                "[[site]]\nid = \"site-{s:05}\"\ncomune = \"{:06}\"\nname = \"Sede {s}\"\nkind = \"town_hall\"\n\n\
                 [[device]]\nid = \"router-{s:05}\"\nsite = \"site-{s:05}\"\naddress = \"192.0.2.1\"\nkind = \"router\"\n\n\
                 [[device]]\nid = \"printer-{s:05}\"\nsite = \"site-{s:05}\"\naddress = \"192.0.2.2\"\nkind = \"printer\"\n\n",
                100_000 + s / SITES_PER_COMUNE
            );
        }
        for i in 0..self.agents {
            if i % 50 != 49 {
                out += &format!(
                    "[[asset]]\nsite = \"{}\"\nserial = \"{}\"\n\n",
                    self.site_of(i),
                    self.serial(i)
                );
            }
        }
        for m in 0..self.agents / 100 {
            out += &format!(
                "[[asset]]\nsite = \"{}\"\nhostname = \"never-{m}\"\n\n",
                self.site_of(m * 7)
            );
        }
        out
    }

    /// Host `i`'s inventory at inventory version `version` (it changes
    /// when software is installed or updated).
    pub fn inventory(&self, i: usize, version: u32) -> Inventory {
        let mut rng = fastrand::Rng::with_seed(self.seed ^ (i as u64).wrapping_mul(0x9e37_79b9));
        let pick = rng.u32(0..1000);
        let mut acc = 0;
        let (os_name, os_version, edition) = OS_MIX
            .iter()
            .find(|(_, _, _, share)| {
                acc += share;
                pick < acc
            })
            .map_or(("Debian GNU/Linux", "12", None), |(n, v, e, _)| {
                (*n, *v, *e)
            });
        let memory_gib: u64 = [4, 8, 8, 16, 16, 32][rng.usize(0..6)];
        let windows = os_name == "Windows";
        let packages = (0..PACKAGES)
            .map(|k| Package {
                name: format!("package-{k:03}"),
                version: format!("{}.{}.{}", k % 7, (k * 3 + version as usize) % 11, version),
                arch: "amd64".into(),
                ..Default::default()
            })
            .collect();
        Inventory {
            hostname: Some(format!("PC-{i:06}")),
            machine_id: Some(format!("{:032x}", rng.u128(..))),
            os_name: Some(os_name.into()),
            os_version: Some(os_version.into()),
            kernel_version: (!windows).then(|| "6.1.0-26-amd64".into()),
            arch: Some("x86_64".into()),
            cpu_model: Some(
                [
                    "Intel(R) Core(TM) i5-6500 CPU @ 3.20GHz",
                    "Intel(R) Core(TM) i3-4130 CPU @ 3.40GHz",
                    "Intel(R) Core(TM) i5-10400 CPU @ 2.90GHz",
                    "AMD Ryzen 5 5600G with Radeon Graphics",
                ][rng.usize(0..4)]
                .into(),
            ),
            cpu_cores: Some(4),
            cpu_threads: Some(if rng.bool() { 4 } else { 8 }),
            memory_total_bytes: Some(memory_gib << 30),
            disks: Some(DiskList {
                items: vec![Disk {
                    name: if windows { "PhysicalDrive0" } else { "sda" }.into(),
                    model: Some("SAMSUNG MZ7LN256".into()),
                    serial: Some(format!("S3{i:08}")),
                    size_bytes: Some(256_060_514_304),
                    rotational: Some(rng.u8(0..4) == 0),
                }],
            }),
            nics: Some(NicList {
                items: vec![Nic {
                    name: if windows { "Ethernet" } else { "eno1" }.into(),
                    mac: Some(format!(
                        "02:5a:{:02x}:{:02x}:{:02x}:{:02x}",
                        (i >> 24) & 255,
                        (i >> 16) & 255,
                        (i >> 8) & 255,
                        i & 255
                    )),
                    addresses: vec![format!(
                        "10.{}.{}.{}/24",
                        (i >> 16) & 255,
                        (i >> 8) & 255,
                        i & 255
                    )],
                }],
            }),
            dmi: Some(Dmi {
                system_vendor: Some("Dell Inc.".into()),
                product_name: Some("OptiPlex 3050".into()),
                product_serial: Some(self.serial(i)),
                bios_vendor: Some("Dell Inc.".into()),
                bios_version: Some("1.22.0".into()),
                bios_date: Some("03/15/2019".into()),
            }),
            packages: (!windows).then(|| PackageList {
                source: "dpkg".into(),
                items: packages,
            }),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            os_edition: edition.map(Into::into),
            ..Default::default()
        }
    }
}

/// What one simulated host keeps between reports: small, because the
/// simulator holds tens of thousands of them.
pub struct HostState {
    pub index: usize,
    pub host_id: String,
    pub epoch: u64,
    pub next_seq: u64,
    pub inventory_version: u32,
    pub inventory_sha256: [u8; 32],
    /// The collector asked for the full inventory, or it changed.
    pub send_inventory: bool,
    pub duty: Option<ProbeDuty>,
    rng: fastrand::Rng,
    cpu: f64,
    rx_bytes: u64,
    tx_bytes: u64,
    used_fraction: f64,
    boot_ms: i64,
}

impl HostState {
    pub fn new(layout: &Layout, index: usize, epoch: u64, now_ms: i64) -> Self {
        let mut rng = fastrand::Rng::with_seed(layout.seed.wrapping_add(index as u64) ^ epoch);
        let inventory = layout.inventory(index, 0);
        Self {
            index,
            host_id: layout.host_id(index),
            epoch,
            next_seq: 1,
            inventory_version: 0,
            inventory_sha256: campanile_proto::inventory_sha256(&inventory),
            send_inventory: true,
            duty: None,
            cpu: rng.f64() * 0.3,
            rx_bytes: rng.u64(0..1 << 34),
            tx_bytes: rng.u64(0..1 << 32),
            // A few disks are nearly full, as in any territory.
            used_fraction: if rng.u8(0..40) == 0 {
                0.93
            } else {
                0.2 + rng.f64() * 0.5
            },
            boot_ms: now_ms - rng.i64(3_600_000..30 * 86_400_000),
            rng,
        }
    }

    /// The next report: health that drifts as a PC's does, probes of the
    /// gateway, a resolver, the collector and the centre (and of the
    /// site's devices when this host holds the duty), the full inventory
    /// only when it is due.
    pub fn next_report(
        &mut self,
        layout: &Layout,
        now_ms: i64,
        interval_secs: u32,
        change_per_million: u32,
    ) -> Report {
        if self.rng.u32(0..1_000_000) < change_per_million {
            self.inventory_version += 1;
            let inventory = layout.inventory(self.index, self.inventory_version);
            self.inventory_sha256 = campanile_proto::inventory_sha256(&inventory);
            self.send_inventory = true;
        }
        let rng = &mut self.rng;
        self.cpu = (self.cpu + (rng.f64() - 0.5) * 0.1).clamp(0.01, 0.99);
        self.rx_bytes += rng.u64(0..20_000_000);
        self.tx_bytes += rng.u64(0..5_000_000);
        self.used_fraction = (self.used_fraction + rng.f64() * 0.0001).min(0.999);
        let memory_total = 8u64 << 30;
        let filesystems = vec![Filesystem {
            mount_point: "/".into(),
            device: "/dev/sda2".into(),
            fs_type: "ext4".into(),
            size_bytes: 250 << 30,
            available_bytes: ((250u64 << 30) as f64 * (1.0 - self.used_fraction)) as u64,
        }];
        let icmp = |rng: &mut fastrand::Rng, target: &str, device: &str, base: f64| {
            let lost = u32::from(rng.u8(0..50) == 0);
            let avg = base * (1.0 + rng.f64());
            IcmpResult {
                target: target.into(),
                device: device.into(),
                address: "192.0.2.1".into(),
                sent: 5,
                lost,
                rtt_min_seconds: Some(avg * 0.7),
                rtt_avg_seconds: Some(avg),
                rtt_max_seconds: Some(avg * 1.8),
                rtt_stddev_seconds: Some(avg * 0.2),
                error: None,
            }
        };
        let mut probes = Probes {
            icmp: vec![
                icmp(rng, "gateway", "", 0.0008),
                icmp(rng, "dns1", "", 0.012),
                icmp(rng, "collector", "", 0.025),
            ],
            tcp: vec![TcpResult {
                target: "centre".into(),
                address: "192.0.2.10:443".into(),
                success: true,
                seconds: 0.03 * (1.0 + rng.f64()),
                ..Default::default()
            }],
            ..Default::default()
        };
        if let Some(duty) = &self.duty {
            for d in &duty.devices {
                probes.icmp.push(icmp(rng, "", &d.device, 0.001));
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let inventory = self
            .send_inventory
            .then(|| layout.inventory(self.index, self.inventory_version));
        Report {
            host_id: self.host_id.clone(),
            epoch: self.epoch,
            seq,
            collected_at_ms: now_ms,
            interval_secs,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            inventory,
            inventory_sha256: self.inventory_sha256.to_vec(),
            health: Some(Health {
                cpu_usage_ratio: Some(self.cpu),
                load1: Some(self.cpu * 4.0),
                load5: Some(self.cpu * 3.5),
                load15: Some(self.cpu * 3.0),
                memory_total_bytes: Some(memory_total),
                memory_available_bytes: Some(
                    (memory_total as f64 * (0.2 + rng.f64() * 0.5)) as u64,
                ),
                swap_total_bytes: Some(2 << 30),
                swap_free_bytes: Some((2u64 << 30) - rng.u64(0..1 << 28)),
                uptime_seconds: Some(u64::try_from((now_ms - self.boot_ms) / 1000).unwrap_or(0)),
                boot_time_seconds: Some(self.boot_ms / 1000),
                process_count: Some(rng.u32(150..320)),
                failed_units: None,
                filesystems,
                interfaces: vec![NetInterface {
                    name: "eno1".into(),
                    rx_bytes: self.rx_bytes,
                    tx_bytes: self.tx_bytes,
                    rx_errors: Some(0),
                    tx_errors: Some(0),
                    rx_dropped: Some(rng.u64(0..3)),
                    tx_dropped: Some(0),
                }],
                truncated: false,
            }),
            agent_stats: None,
            probes: Some(probes),
            probe_duty_sha256: self
                .duty
                .as_ref()
                .map(|d| d.sha256.clone())
                .unwrap_or_default(),
        }
    }

    /// The agent's own figures, as a real agent sends them with each request.
    pub fn agent_stats(&self, queued: usize, failures: u64) -> AgentStats {
        AgentStats {
            queue_depth: queued as u64,
            send_failures_total: failures,
            spool_bytes: queued as u64 * 400,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_register_loads_and_plans_most_hosts() {
        let layout = Layout::new(1000, 7);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("register.toml");
        std::fs::write(&path, layout.register_toml()).expect("write");
        let register = campanile_territory::register::Register::load(&path).expect("loads");
        assert_eq!(register.sites.len(), layout.sites());
        assert_eq!(register.comuni.len(), layout.comuni());
        assert_eq!(register.devices.len(), 2 * layout.sites());
        assert_eq!(register.assets.len(), 980 + 10);
        assert_eq!(layout.sites(), 40);
        assert_eq!(layout.comuni(), 20);
    }

    #[test]
    fn a_host_sends_its_inventory_first_then_only_its_hash() {
        let layout = Layout::new(10, 1);
        let mut host = HostState::new(&layout, 3, 42, 1_700_000_000_000);
        let first = host.next_report(&layout, 1_700_000_000_000, 60, 0);
        assert!(first.inventory.is_some());
        assert_eq!(
            campanile_proto::inventory_sha256(first.inventory.as_ref().expect("inventory"))
                .to_vec(),
            first.inventory_sha256
        );
        host.send_inventory = false;
        let second = host.next_report(&layout, 1_700_000_060_000, 60, 0);
        assert!(second.inventory.is_none());
        assert_eq!(second.seq, first.seq + 1);
        assert_eq!(second.inventory_sha256, first.inventory_sha256);
    }
}
