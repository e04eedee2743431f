//! The one platform boundary of the agent. Everything that reads OS-specific
//! sources lives below here; collectors call these functions and treat
//! `None` as "not collected on this platform".
//!
//! Linux reads /proc, /sys and the package databases directly. Other
//! platforms get what sysinfo covers (in the collectors) and `None` here
//! until their own sources (Windows registry, SMBIOS) are implemented.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

pub mod netconf;

#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(not(target_os = "linux"))]
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
