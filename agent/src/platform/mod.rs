//! The one platform boundary of the agent. Everything that reads OS-specific
//! sources lives below here; collectors call these functions and treat
//! `None` as "not collected on this platform".
//!
//! Linux reads /proc, /sys and the package databases directly; Windows
//! the registry, SMBIOS and the IP helper. Other platforms get what
//! sysinfo covers (in the collectors) and `None` here.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

pub mod netconf;
pub mod release;
pub mod smbios;

/// Windows sources. The mapping of what Windows returns (registry values,
/// SMBIOS, adapter lists) is compiled and tested on every platform; the
/// calls into Windows only on Windows.
mod windows;
#[cfg(windows)]
pub use windows::api::*;
#[cfg(not(windows))]
mod sysinfo_only;
#[cfg(not(windows))]
pub use sysinfo_only::*;

#[cfg(not(any(target_os = "linux", windows)))]
mod other;
#[cfg(not(any(target_os = "linux", windows)))]
pub use other::*;

/// Filesystem types that hold no user data: never reported.
pub const PSEUDO_FILESYSTEMS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "fuse.lxcfs",
    "fuse.gvfsd-fuse",
    "fuse.portal",
    "iso9660",
    "udf",
];

/// Mount points under these prefixes are system plumbing, not storage.
pub const PSEUDO_MOUNT_PREFIXES: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/snap/",
    "/var/lib/docker/",
];

pub fn is_pseudo_filesystem(fs_type: &str, mount_point: &str) -> bool {
    PSEUDO_FILESYSTEMS.contains(&fs_type)
        || PSEUDO_MOUNT_PREFIXES
            .iter()
            .any(|p| mount_point == p.trim_end_matches('/') || mount_point.starts_with(p))
}
