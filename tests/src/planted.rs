//! Hosts with planted traits for territory scenarios: each sends one
//! hand-made report over real mTLS.

use std::path::{Path, PathBuf};

use anyhow::Result;
use campanile_proto::v1::{
    Disk, DiskList, Dmi, Filesystem, Health, Inventory, Nic, NicList, Probes, Report,
};

pub const GIB: u64 = 1024 * 1024 * 1024;

/// A host with chosen traits, reporting once by hand over real mTLS.
pub struct Host<'a> {
    pub id: &'a str,
    pub cert_site: &'a str,
    pub os: (&'a str, &'a str),
    pub memory_bytes: u64,
    pub fs_used_percent: u64,
    pub serial: Option<&'a str>,
    pub mac: Option<&'a str>,
    pub interval_secs: u32,
    /// Probe results of the one report (none: probes off).
    pub probes: Option<Probes>,
}

impl Host<'_> {
    /// Debian 13, 16 GiB, 512 GB disk, 40% used, BIOS a year old.
    pub fn healthy(id: &str, site: &str) -> Host<'static> {
        Host {
            id: Box::leak(id.to_owned().into_boxed_str()),
            cert_site: Box::leak(site.to_owned().into_boxed_str()),
            os: ("Debian GNU/Linux", "13"),
            memory_bytes: 16 * GIB,
            fs_used_percent: 40,
            serial: None,
            mac: None,
            interval_secs: 60,
            probes: None,
        }
    }

    pub fn report(&self) -> Report {
        let a_year_ago = time::OffsetDateTime::now_utc().date() - time::Duration::days(365);
        let inventory = Inventory {
            hostname: Some(self.id.to_uppercase()),
            os_name: Some(self.os.0.into()),
            os_version: Some(self.os.1.into()),
            os_edition: self
                .os
                .0
                .starts_with("Windows")
                .then(|| "Windows 11 Pro".into()),
            arch: Some("x86_64".into()),
            cpu_model: Some("Intel(R) Core(TM) i5-10500 CPU @ 3.10GHz".into()),
            memory_total_bytes: Some(self.memory_bytes),
            disks: Some(DiskList {
                items: vec![Disk {
                    name: "sda".into(),
                    size_bytes: Some(512_000_000_000),
                    ..Default::default()
                }],
            }),
            nics: Some(NicList {
                items: self
                    .mac
                    .map(|m| Nic {
                        name: "eth0".into(),
                        mac: Some(m.into()),
                        addresses: vec![],
                    })
                    .into_iter()
                    .collect(),
            }),
            dmi: Some(Dmi {
                product_serial: self.serial.map(Into::into),
                bios_date: Some(format!(
                    "{:02}/{:02}/{}",
                    u8::from(a_year_ago.month()),
                    a_year_ago.day(),
                    a_year_ago.year()
                )),
                ..Default::default()
            }),
            agent_version: "test".into(),
            ..Default::default()
        };
        let size = 100 * GIB;
        Report {
            host_id: self.id.into(),
            epoch: 1,
            seq: 1,
            collected_at_ms: campanile_agent::now_ms(),
            interval_secs: self.interval_secs,
            agent_version: "test".into(),
            inventory_sha256: campanile_proto::inventory_sha256(&inventory).to_vec(),
            inventory: Some(inventory),
            health: Some(Health {
                memory_total_bytes: Some(self.memory_bytes),
                filesystems: vec![Filesystem {
                    mount_point: "/".into(),
                    device: "/dev/sda1".into(),
                    fs_type: "ext4".into(),
                    size_bytes: size,
                    available_bytes: size / 100 * (100 - self.fs_used_percent),
                }],
                ..Default::default()
            }),
            agent_stats: None,
            probes: self.probes.clone(),
            probe_duty_sha256: Vec::new(),
        }
    }
}

/// Writes `text` to `dir/name`.
pub fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, text)?;
    Ok(p)
}
