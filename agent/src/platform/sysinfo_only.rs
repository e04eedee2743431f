//! What Windows reads itself and other platforms leave to sysinfo: the
//! OS release beyond its name and version, installed memory, firmware,
//! NICs and CPU time counters. `None` here: the collectors use sysinfo's.

pub fn os_release() -> Option<super::release::OsRelease> {
    None
}
pub fn memory_installed_bytes() -> Option<u64> {
    None
}
pub fn firmware() -> Option<campanile_proto::v1::Firmware> {
    None
}
pub fn nics(_include_virtual: bool) -> Option<campanile_proto::v1::NicList> {
    None
}
pub fn cpu_times() -> Option<(u64, u64)> {
    None
}
