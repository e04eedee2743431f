//! What changed between two inventories of one host, as lines a planner can
//! read: `os_version: 12 -> 13`, `package nginx: added 1.22`, `disk sdb: removed`.

use std::collections::BTreeMap;

use campanile_proto::v1::Inventory;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// Changes from `old` to `new`, in a stable order.
pub fn diff(old: &Inventory, new: &Inventory) -> Vec<Change> {
    let mut out = Vec::new();
    let mut scalar = |field: &str, a: Option<String>, b: Option<String>| {
        if a != b {
            out.push(Change {
                field: field.to_owned(),
                old: a,
                new: b,
            });
        }
    };
    let s = |v: &Option<String>| v.clone();
    let n = |v: Option<u64>| v.map(|x| x.to_string());
    scalar("hostname", s(&old.hostname), s(&new.hostname));
    scalar("machine_id", s(&old.machine_id), s(&new.machine_id));
    scalar("os_name", s(&old.os_name), s(&new.os_name));
    scalar("os_version", s(&old.os_version), s(&new.os_version));
    scalar("os_edition", s(&old.os_edition), s(&new.os_edition));
    scalar(
        "kernel_version",
        s(&old.kernel_version),
        s(&new.kernel_version),
    );
    scalar("arch", s(&old.arch), s(&new.arch));
    scalar("cpu_model", s(&old.cpu_model), s(&new.cpu_model));
    scalar(
        "cpu_cores",
        n(old.cpu_cores.map(u64::from)),
        n(new.cpu_cores.map(u64::from)),
    );
    scalar(
        "cpu_threads",
        n(old.cpu_threads.map(u64::from)),
        n(new.cpu_threads.map(u64::from)),
    );
    scalar(
        "memory_total_bytes",
        n(old.memory_total_bytes),
        n(new.memory_total_bytes),
    );
    scalar(
        "memory_installed_bytes",
        n(old.memory_installed_bytes),
        n(new.memory_installed_bytes),
    );
    scalar(
        "os_display_version",
        s(&old.os_display_version),
        s(&new.os_display_version),
    );
    // The build with its patch level: "22631.3880".
    let build = |inv: &Inventory| {
        inv.os_build.map(|b| match inv.os_build_revision {
            Some(r) => format!("{b}.{r}"),
            None => b.to_string(),
        })
    };
    scalar("os_build", build(old), build(new));
    let (of, nf) = (
        old.firmware.clone().unwrap_or_default(),
        new.firmware.clone().unwrap_or_default(),
    );
    let flag = |v: Option<bool>| v.map(|b| b.to_string());
    scalar("firmware.boot_mode", of.boot_mode, nf.boot_mode);
    scalar(
        "firmware.secure_boot",
        flag(of.secure_boot),
        flag(nf.secure_boot),
    );
    let tpm = |t: Option<campanile_proto::v1::Tpm>| {
        t.map(|t| match (t.present, t.version) {
            (false, _) => "none".to_owned(),
            (true, Some(v)) => v,
            (true, None) => "present".to_owned(),
        })
    };
    scalar("firmware.tpm", tpm(of.tpm), tpm(nf.tpm));
    scalar(
        "agent_version",
        Some(old.agent_version.clone()),
        Some(new.agent_version.clone()),
    );
    let (od, nd) = (
        old.dmi.clone().unwrap_or_default(),
        new.dmi.clone().unwrap_or_default(),
    );
    scalar("dmi.system_vendor", od.system_vendor, nd.system_vendor);
    scalar("dmi.product_name", od.product_name, nd.product_name);
    scalar("dmi.product_serial", od.product_serial, nd.product_serial);
    scalar("dmi.bios_vendor", od.bios_vendor, nd.bios_vendor);
    scalar("dmi.bios_version", od.bios_version, nd.bios_version);
    scalar("dmi.bios_date", od.bios_date, nd.bios_date);

    let disk = |inv: &Inventory| -> BTreeMap<String, String> {
        inv.disks
            .iter()
            .flat_map(|l| &l.items)
            .map(|d| {
                let model = d.model.as_deref().unwrap_or("?");
                let size = d.size_bytes.map_or("?".to_owned(), |s| s.to_string());
                (d.name.clone(), format!("{model}, {size} bytes"))
            })
            .collect()
    };
    keyed(&mut out, "disk", disk(old), disk(new));
    let nic = |inv: &Inventory| -> BTreeMap<String, String> {
        inv.nics
            .iter()
            .flat_map(|l| &l.items)
            .map(|n| {
                let mac = n.mac.as_deref().unwrap_or("?");
                (n.name.clone(), format!("{mac} {}", n.addresses.join(",")))
            })
            .collect()
    };
    keyed(&mut out, "nic", nic(old), nic(new));
    let pkg = |inv: &Inventory| -> BTreeMap<String, String> {
        inv.packages
            .iter()
            .flat_map(|l| &l.items)
            .map(|p| {
                let key = if p.arch.is_empty() {
                    p.name.clone()
                } else {
                    format!("{}:{}", p.name, p.arch)
                };
                (key, p.version.clone())
            })
            .collect()
    };
    keyed(&mut out, "package", pkg(old), pkg(new));
    out
}

/// Added, removed and changed entries of a keyed list.
fn keyed(
    out: &mut Vec<Change>,
    kind: &str,
    old: BTreeMap<String, String>,
    new: BTreeMap<String, String>,
) {
    for (k, v) in &old {
        match new.get(k) {
            None => out.push(Change {
                field: format!("{kind} {k}"),
                old: Some(v.clone()),
                new: None,
            }),
            Some(nv) if nv != v => out.push(Change {
                field: format!("{kind} {k}"),
                old: Some(v.clone()),
                new: Some(nv.clone()),
            }),
            Some(_) => {}
        }
    }
    for (k, v) in new {
        if !old.contains_key(&k) {
            out.push(Change {
                field: format!("{kind} {k}"),
                old: None,
                new: Some(v),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use campanile_proto::v1::{Package, PackageList};

    fn pkgs(list: &[(&str, &str)]) -> Option<PackageList> {
        Some(PackageList {
            source: "dpkg".into(),
            items: list
                .iter()
                .map(|(n, v)| Package {
                    name: (*n).into(),
                    version: (*v).into(),
                    arch: "amd64".into(),
                    ..Default::default()
                })
                .collect(),
        })
    }

    #[test]
    fn reports_upgrades_additions_removals_and_scalar_changes() {
        let old = Inventory {
            os_version: Some("12".into()),
            packages: pkgs(&[("bash", "5.1"), ("vim", "9.0")]),
            ..Default::default()
        };
        let new = Inventory {
            os_version: Some("13".into()),
            packages: pkgs(&[("bash", "5.2"), ("curl", "8.0")]),
            ..Default::default()
        };
        let fields: Vec<String> = diff(&old, &new).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            [
                "os_version",
                "package bash:amd64",
                "package vim:amd64",
                "package curl:amd64"
            ]
        );
        assert!(diff(&new, &new).is_empty());
    }
}
