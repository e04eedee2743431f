//! Platforms without their own sources (macOS, BSD): everything here is
//! "not collected"; sysinfo fills what it covers in the collectors.

use campanile_proto::v1::{DiskList, Dmi, FailedUnits, NetInterface, PackageList};

pub fn machine_id() -> Option<String> {
    None
}
pub fn dmi() -> Option<Dmi> {
    None
}
pub fn packages() -> Option<PackageList> {
    None
}
pub fn package_db_stamp() -> Option<(u64, u64)> {
    None
}
pub fn disks() -> Option<DiskList> {
    None
}
pub fn interfaces(_include_virtual: bool) -> Option<Vec<NetInterface>> {
    None
}
pub fn is_virtual_interface(name: &str) -> bool {
    name.to_ascii_lowercase().contains("loopback")
}
pub fn process_count() -> Option<u32> {
    None
}
pub fn failed_units() -> Option<FailedUnits> {
    None
}
/// Gateways and resolvers come from the routing table and resolver config,
/// not read on this platform yet: configure probe targets explicitly.
pub fn default_gateways() -> Option<super::netconf::Gateways> {
    None
}
pub fn dns_resolvers() -> Option<Vec<campanile_probe::Address>> {
    None
}

/// What sysinfo says of the OS is all there is here.
pub fn os_release() -> Option<super::release::OsRelease> {
    None
}
pub fn memory_installed_bytes() -> Option<u64> {
    None
}
pub fn firmware() -> Option<campanile_proto::v1::Firmware> {
    None
}
/// NICs come from sysinfo here.
pub fn nics(_include_virtual: bool) -> Option<campanile_proto::v1::NicList> {
    None
}
/// CPU time counters come from sysinfo here.
pub fn cpu_times() -> Option<(u64, u64)> {
    None
}
