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
