//! The platform functions on Windows: each reads its source and hands the
//! result to the mapping beside it. A source that cannot be read (a
//! right the account lacks, a call Wine does not implement) is "not
//! collected", said once in the log, never an error of the cycle.

use std::collections::HashSet;
use std::sync::Mutex;

use campanile_probe::Address;
use campanile_proto::v1::{
    DiskList, Dmi, FailedUnits, Firmware, NetInterface, NicList, PackageList,
};

use super::adapters;
use super::disks;
use super::firmware;
use super::os_release::{self, CURRENT_VERSION_KEY};
use super::registry;
use super::services;
use super::uninstall::{self, UNINSTALL_KEY, View};
use crate::platform::netconf::Gateways;
use crate::platform::release::OsRelease;
use crate::platform::smbios;

const MACHINE_GUID_KEY: &str = r"SOFTWARE\Microsoft\Cryptography";
const PROFILE_LIST_KEY: &str = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion\ProfileList";

/// `%ProgramData%` as the profile service defines it, not as this
/// process's environment says: a service under Wine gets another.
pub fn program_data_dir() -> Option<std::path::PathBuf> {
    let raw = registry::key_values(PROFILE_LIST_KEY)?.string("ProgramData")?;
    Some(super::values::expand_env(&raw, |name| std::env::var(name).ok()).into())
}

/// Says once per source that it was not collected, and why.
fn not_collected(source: &'static str, why: &str) {
    static SAID: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
    if said.get_or_insert_with(HashSet::new).insert(source) {
        tracing::info!(source, why, "not collected on this machine");
    }
}

pub fn machine_id() -> Option<String> {
    let id = registry::key_values(MACHINE_GUID_KEY).and_then(|v| v.string("MachineGuid"));
    if id.is_none() {
        not_collected(
            "machine_id",
            "no MachineGuid under HKLM\\SOFTWARE\\Microsoft\\Cryptography",
        );
    }
    id
}

pub fn os_release() -> Option<OsRelease> {
    registry::key_values(CURRENT_VERSION_KEY).map(|v| os_release::from_values(&v))
}

/// The SMBIOS table, read and decoded once: the firmware writes it at
/// boot, and DMI, memory and UEFI support all come from it.
fn smbios() -> Option<smbios::SmbiosFacts> {
    static TABLE: std::sync::OnceLock<Option<smbios::SmbiosFacts>> = std::sync::OnceLock::new();
    TABLE.get_or_init(read_smbios).clone()
}

fn read_smbios() -> Option<smbios::SmbiosFacts> {
    let Some(raw) = firmware::read::smbios() else {
        not_collected("smbios", "GetSystemFirmwareTable('RSMB') returned nothing");
        return None;
    };
    match smbios::parse_raw(&raw) {
        Ok(f) => Some(f),
        Err(e) => {
            not_collected("smbios", &e.to_string());
            None
        }
    }
}

pub fn dmi() -> Option<Dmi> {
    smbios().map(|f| f.dmi)
}

pub fn memory_installed_bytes() -> Option<u64> {
    smbios().and_then(|f| f.memory_installed_bytes)
}

pub fn firmware() -> Option<Firmware> {
    let secure_boot = registry::key_values(firmware::SECURE_BOOT_KEY);
    let tpm = firmware::read::tpm();
    if let firmware::TpmAnswer::Failed(rc) = tpm {
        not_collected("tpm", &format!("Tbsi_GetDeviceInfo failed: 0x{rc:08x}"));
    }
    let boot = registry::key_values(firmware::CONTROL_KEY).and_then(|v| v.dword("PEFirmwareType"));
    Some(firmware::firmware(
        boot,
        secure_boot.as_ref(),
        tpm,
        smbios().and_then(|f| f.uefi_supported),
    ))
}

/// Both registry views' uninstall entries. On 32-bit Windows the two
/// views are the same key: read once.
pub fn packages() -> Option<PackageList> {
    let native = registry::subkey_values(UNINSTALL_KEY, View::Native64);
    let wow = if cfg!(target_pointer_width = "64") || is_wow64() {
        registry::subkey_values(UNINSTALL_KEY, View::Wow32)
    } else {
        Vec::new()
    };
    if native.is_empty() && wow.is_empty() {
        not_collected("packages", "no Uninstall entries could be read");
    }
    let entries = native
        .into_iter()
        .map(|v| (View::Native64, v))
        .chain(wow.into_iter().map(|v| (View::Wow32, v)));
    Some(PackageList {
        source: "windows-uninstall".into(),
        items: uninstall::packages(entries),
    })
}

/// A 32-bit agent on 64-bit Windows.
fn is_wow64() -> bool {
    std::env::var_os("PROCESSOR_ARCHITEW6432").is_some()
}

/// Changes when software is installed, removed or updated: the uninstall
/// keys' newest write and their count, both views together.
pub fn package_db_stamp() -> Option<(u64, u64)> {
    let a = registry::tree_stamp(UNINSTALL_KEY, View::Native64)?;
    let b = registry::tree_stamp(UNINSTALL_KEY, View::Wow32).unwrap_or((0, 0));
    Some((a.0.max(b.0), a.1 + b.1))
}

pub fn disks() -> Option<DiskList> {
    match disks::read::disks() {
        Some(items) => Some(DiskList { items }),
        None => {
            not_collected("disks", "no \\\\.\\PhysicalDriveN could be opened");
            None
        }
    }
}

fn adapters() -> Option<Vec<adapters::Adapter>> {
    let list = adapters::read::adapters();
    if list.is_none() {
        not_collected("network", "GetAdaptersAddresses failed");
    }
    list
}

pub fn nics(include_virtual: bool) -> Option<NicList> {
    adapters().map(|a| adapters::nics(&a, include_virtual))
}

/// Interface counters come from sysinfo on Windows.
pub fn interfaces(_include_virtual: bool) -> Option<Vec<NetInterface>> {
    None
}

/// sysinfo names interfaces by description on Windows; loopback and the
/// tunnel adapters are no NIC of the machine's.
pub fn is_virtual_interface(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("loopback") || n.contains("teredo") || n.contains("isatap") || n.contains("6to4")
}

#[allow(unsafe_code)]
pub fn process_count() -> Option<u32> {
    use windows_sys::Win32::System::ProcessStatus::{
        K32GetPerformanceInfo, PERFORMANCE_INFORMATION,
    };
    let mut info = PERFORMANCE_INFORMATION {
        cb: std::mem::size_of::<PERFORMANCE_INFORMATION>() as u32,
        ..Default::default()
    };
    let size = info.cb;
    // SAFETY: `info` is a PERFORMANCE_INFORMATION of the size passed.
    let ok = unsafe { K32GetPerformanceInfo(&mut info, size) } != 0;
    ok.then_some(info.ProcessCount).filter(|n| *n > 0)
}

pub fn failed_units() -> Option<FailedUnits> {
    let f = services::read::failed_services();
    if f.is_none() {
        not_collected(
            "services",
            "the Service Control Manager would not list services",
        );
    }
    f
}

pub fn default_gateways() -> Option<Gateways> {
    adapters().map(|a| adapters::gateways(&a))
}

pub fn dns_resolvers() -> Option<Vec<Address>> {
    adapters().map(|a| adapters::dns_servers(&a))
}

/// (busy, total) CPU time of every core since boot, in 100 ns units:
/// `GetSystemTimes`, whose kernel time includes the idle time.
#[allow(unsafe_code)]
pub fn cpu_times() -> Option<(u64, u64)> {
    use windows_sys::Win32::Foundation::FILETIME;
    use windows_sys::Win32::System::Threading::GetSystemTimes;
    let (mut idle, mut kernel, mut user) = (
        FILETIME::default(),
        FILETIME::default(),
        FILETIME::default(),
    );
    // SAFETY: three FILETIMEs for the call to fill.
    if unsafe { GetSystemTimes(&mut idle, &mut kernel, &mut user) } == 0 {
        return None;
    }
    let t = |f: FILETIME| (u64::from(f.dwHighDateTime) << 32) | u64::from(f.dwLowDateTime);
    let total = t(kernel) + t(user);
    Some((total.saturating_sub(t(idle)), total))
}
