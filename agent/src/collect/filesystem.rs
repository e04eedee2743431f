//! Real filesystems: size and space available, pseudo filesystems skipped,
//! bind mounts reported once, count capped.

use std::collections::HashSet;

use campanile_proto::v1::{Filesystem, Health};
use sysinfo::Disks;

use crate::config::CollectConfig;
use crate::platform;

pub fn collect(cfg: &CollectConfig, h: &mut Health) {
    let Ok(disks) = Disks::new_with_refreshed_list() else {
        return;
    };
    let mut seen = HashSet::new();
    let mut all: Vec<Filesystem> = disks
        .iter()
        .filter_map(|d| {
            let mount_point = d.mount_point().to_string_lossy().into_owned();
            let fs_type = d.file_system().to_string_lossy().into_owned();
            if platform::is_pseudo_filesystem(&fs_type, &mount_point) || d.total_space() == 0 {
                return None;
            }
            if !seen.insert(mount_point.clone()) {
                return None;
            }
            Some(Filesystem {
                device: d.name().to_string_lossy().into_owned(),
                size_bytes: d.total_space(),
                available_bytes: d.available_space().min(d.total_space()),
                mount_point,
                fs_type,
            })
        })
        .collect();
    // The root (or system drive) first, then by mount point: the collector
    // exposes the first few, and they must be the same ones every cycle.
    all.sort_by(|a, b| {
        let root = |m: &str| !(m == "/" || m.eq_ignore_ascii_case("C:\\"));
        (root(&a.mount_point), &a.mount_point).cmp(&(root(&b.mount_point), &b.mount_point))
    });
    if all.len() > cfg.max_filesystems {
        all.truncate(cfg.max_filesystems);
        h.truncated = true;
    }
    h.filesystems = all;
}
