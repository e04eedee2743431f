//! Is a machine still adequate? RAM, system disk, age, and whether it could
//! run the current Windows release. Each shortfall comes with the reason an
//! operator can act on ("RAM 3.8 GiB, below 8 GiB").

use campanile_proto::v1::Health;
use time::Date;

use crate::config::HardwareThresholds;
use crate::host::{Facts, parse_date};

use crate::gap::GapKind;

/// Where a machine's age comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgeSource {
    /// The BIOS release date: close to when the machine was built.
    Bios,
    /// When the collector first heard of it: a lower bound.
    FirstSeen,
}

impl AgeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bios => "bios",
            Self::FirstSeen => "first_seen",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Assessment {
    pub shortfalls: Vec<(GapKind, String)>,
    pub age_years: Option<(f64, AgeSource)>,
    /// `None`: not a Windows client, or not enough data to say.
    pub windows_11_capable: Option<bool>,
    /// Memory and system disk as judged (inventory first, health as fallback).
    pub memory_bytes: Option<u64>,
    pub system_disk_bytes: Option<u64>,
}

const MIB: u64 = 1024 * 1024;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
/// The OS reports less memory than is installed (firmware, integrated
/// graphics); 8 GiB installed shows as 7.6-7.8 GiB.
const REPORTED_MEMORY_SHARE: f64 = 0.9;

pub struct Machine<'a> {
    pub facts: &'a Facts,
    pub health: Option<&'a Health>,
    pub first_seen: Date,
    pub os_family: Option<&'static str>,
    pub os_version: Option<&'a str>,
    pub arch: Option<&'a str>,
}

pub fn assess(m: &Machine<'_>, t: &HardwareThresholds, today: Date) -> Assessment {
    let mut out = Assessment {
        memory_bytes: m
            .facts
            .memory_total_bytes
            .or_else(|| m.health.and_then(|h| h.memory_total_bytes)),
        system_disk_bytes: m
            .facts
            .system_disk_bytes
            .or_else(|| root_filesystem(m.health)),
        ..Default::default()
    };
    let min_memory = t.min_memory_mib * MIB;
    if let Some(mem) = out.memory_bytes
        && (mem as f64) < min_memory as f64 * REPORTED_MEMORY_SHARE
    {
        out.shortfalls.push((
            GapKind::LowMemory,
            format!(
                "RAM {:.1} GiB, below the minimum of {:.0} GiB",
                mem as f64 / GIB,
                min_memory as f64 / GIB
            ),
        ));
    }
    if let Some(disk) = out.system_disk_bytes
        && disk < t.min_system_disk_gb * 1_000_000_000
    {
        out.shortfalls.push((
            GapKind::SmallDisk,
            format!(
                "system disk {:.0} GB, below the minimum of {} GB",
                disk as f64 / 1e9,
                t.min_system_disk_gb
            ),
        ));
    }
    let built = m
        .facts
        .bios_date
        .as_deref()
        .and_then(parse_date)
        .map(|d| (d, AgeSource::Bios))
        .unwrap_or((m.first_seen, AgeSource::FirstSeen));
    let years = (today - built.0).whole_days() as f64 / 365.25;
    out.age_years = Some((years.max(0.0), built.1));
    if years > f64::from(t.max_hardware_age_years) {
        let since = match built.1 {
            AgeSource::Bios => format!("BIOS dated {}", built.0),
            AgeSource::FirstSeen => format!("first seen {}", built.0),
        };
        out.shortfalls.push((
            GapKind::OldHardware,
            format!(
                "hardware {years:.1} years old ({since}), more than {}",
                t.max_hardware_age_years
            ),
        ));
    }
    if t.check_windows_11 && m.os_family == Some("windows") {
        out.windows_11_capable = windows_11(m, &out);
        if out.windows_11_capable == Some(false) {
            out.shortfalls.push((
                GapKind::NoWindows11,
                format!(
                    "cannot run Windows 11: {}",
                    windows_11_blockers(m, &out).join(", ")
                ),
            ));
        }
    }
    out
}

/// Size of `/` or `C:\` when the inventory lists no disk.
fn root_filesystem(health: Option<&Health>) -> Option<u64> {
    health?
        .filesystems
        .iter()
        .find(|f| f.mount_point == "/" || f.mount_point.eq_ignore_ascii_case("c:\\"))
        .map(|f| f.size_bytes)
}

/// Windows 11 needs a 64-bit CPU of a supported generation, 4 GB of RAM,
/// 64 GB of storage, TPM 2.0 and UEFI firmware (for Secure Boot). `None`
/// when a criterion cannot be judged and none fails. Hosts whose agent
/// reads no firmware facts (older agents) are judged on the rest.
fn windows_11(m: &Machine<'_>, a: &Assessment) -> Option<bool> {
    if m.os_version
        .is_some_and(|v| v.trim_start().starts_with("11"))
    {
        return Some(true);
    }
    if !windows_11_blockers(m, a).is_empty() {
        return Some(false);
    }
    let cpu_ok = m
        .facts
        .cpu_model
        .as_deref()
        .and_then(cpu_supports_windows_11);
    let firmware_ok = m.facts.firmware.as_ref().is_none_or(|f| {
        f.tpm_present == Some(true)
            && f.tpm_version.as_deref() == Some("2.0")
            && f.uefi_supported == Some(true)
    });
    (cpu_ok == Some(true)
        && a.memory_bytes.is_some()
        && a.system_disk_bytes.is_some()
        && firmware_ok)
        .then_some(true)
}

fn windows_11_blockers(m: &Machine<'_>, a: &Assessment) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(arch) = m.arch
        && !matches!(arch, "x86_64" | "aarch64" | "amd64" | "arm64")
    {
        out.push(format!("{arch} is not 64-bit"));
    }
    if let Some(cpu) = m.facts.cpu_model.as_deref()
        && cpu_supports_windows_11(cpu) == Some(false)
    {
        out.push(format!("CPU {cpu} is not supported"));
    }
    if a.memory_bytes
        .is_some_and(|b| (b as f64) < 4.0 * GIB * REPORTED_MEMORY_SHARE)
    {
        out.push("less than 4 GB of RAM".into());
    }
    if a.system_disk_bytes.is_some_and(|b| b < 64_000_000_000) {
        out.push("less than 64 GB of storage".into());
    }
    if let Some(f) = &m.facts.firmware {
        match (f.tpm_present, f.tpm_version.as_deref()) {
            // A firmware TPM switched off is not seen by Windows either.
            (Some(false), _) => out.push("no TPM found (it may be off in the firmware)".into()),
            (Some(true), Some(v)) if v != "2.0" => out.push(format!("TPM {v}, not 2.0")),
            _ => {}
        }
        if f.uefi_supported == Some(false) {
            out.push("firmware without UEFI, so no Secure Boot".into());
        }
    }
    out
}

/// Microsoft's supported-processor lists, by generation: Intel Core 8th
/// generation and later (and Core Ultra), AMD Ryzen 2000 and later. Other
/// families (Pentium, Celeron, Xeon, Atom...) are judged `None`: the lists
/// name single models there.
pub fn cpu_supports_windows_11(model: &str) -> Option<bool> {
    let m = model.to_lowercase();
    if m.contains("core(tm) ultra") || m.contains("core ultra") {
        return Some(true);
    }
    if m.contains("core(tm)2") || m.contains("core2") || m.contains("core 2") {
        return Some(false);
    }
    if m.contains("intel") {
        // "Core(TM) i5-8250U", "Core i7-10700", "Core(TM) i3 CPU 540".
        let pos = ["i3", "i5", "i7", "i9"]
            .iter()
            .filter_map(|p| m.find(&format!("{p}-")).map(|i| i + 3))
            .min()?;
        let digits: String = m[pos..].chars().take_while(char::is_ascii_digit).collect();
        let generation: u32 = match digits.len() {
            5 => digits[..2].parse().ok()?,
            // Mobile parts of the 10th-14th generations: i5-1035G1, i5-1335U.
            4 if digits.starts_with('1') => digits[..2].parse().ok()?,
            4 => digits[..1].parse().ok()?,
            // First-generation Core (i5-650): three digits.
            3 => 1,
            _ => return None,
        };
        return Some(generation >= 8);
    }
    if m.contains("amd") {
        if let Some(i) = m.find("ryzen") {
            // "AMD Ryzen 5 3600 6-Core Processor", "Ryzen 7 PRO 4750U".
            let series = m[i..]
                .split_whitespace()
                .skip(2)
                .find(|w| w.chars().take_while(char::is_ascii_digit).count() == 4)?;
            return Some(!series.starts_with('1'));
        }
        // A-series, FX, Athlon II, Phenom: all before Zen+.
        if ["amd a", "amd fx", "athlon(tm) ii", "athlon ii", "phenom"]
            .iter()
            .any(|p| m.contains(p))
        {
            return Some(false);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FirmwareFacts;

    fn date(y: i32, m: u8, d: u8) -> Date {
        Date::from_calendar_date(y, m.try_into().unwrap(), d).unwrap()
    }

    fn thresholds() -> HardwareThresholds {
        HardwareThresholds::default()
    }

    #[test]
    fn judges_cpu_generations_for_windows_11() {
        let cases = [
            ("Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz", Some(true)),
            ("Intel(R) Core(TM) i7-10700 CPU @ 2.90GHz", Some(true)),
            ("13th Gen Intel(R) Core(TM) i5-1335U", Some(true)),
            ("Intel(R) Core(TM) i5-4590 CPU @ 3.30GHz", Some(false)),
            ("Intel(R) Core(TM) i5-1035G1 CPU @ 1.00GHz", Some(true)),
            ("Intel(R) Core(TM) i3 CPU 540 @ 3.07GHz", None),
            ("Intel(R) Core(TM) i5 CPU 650 @ 3.20GHz", None),
            ("Intel(R) Core(TM)2 Duo CPU E8400 @ 3.00GHz", Some(false)),
            ("Intel(R) Core(TM) Ultra 5 125U", Some(true)),
            ("AMD Ryzen 5 3600 6-Core Processor", Some(true)),
            ("AMD Ryzen 7 PRO 4750U with Radeon Graphics", Some(true)),
            ("AMD Ryzen 7 1700 Eight-Core Processor", Some(false)),
            ("AMD A8-7600 Radeon R7", Some(false)),
            ("Intel(R) Pentium(R) CPU G4560 @ 3.50GHz", None),
            ("AMD EPYC 7B13", None),
        ];
        for (cpu, want) in cases {
            assert_eq!(cpu_supports_windows_11(cpu), want, "{cpu}");
        }
    }

    #[test]
    fn flags_each_shortfall_with_its_reason() {
        let facts = Facts {
            memory_total_bytes: Some(4 * 1024 * MIB),
            system_disk_bytes: Some(64_000_000_000),
            bios_date: Some("2013-05-01".into()),
            cpu_model: Some("Intel(R) Core(TM) i5-4590 CPU @ 3.30GHz".into()),
            ..Default::default()
        };
        let m = Machine {
            facts: &facts,
            health: None,
            first_seen: date(2026, 1, 1),
            os_family: Some("windows"),
            os_version: Some("10 (19045)"),
            arch: Some("x86_64"),
        };
        let a = assess(&m, &thresholds(), date(2026, 11, 22));
        let kinds: Vec<_> = a.shortfalls.iter().map(|s| s.0).collect();
        assert_eq!(
            kinds,
            [
                GapKind::LowMemory,
                GapKind::SmallDisk,
                GapKind::OldHardware,
                GapKind::NoWindows11
            ]
        );
        assert!(a.shortfalls[3].1.contains("i5-4590"), "{:?}", a.shortfalls);
        assert_eq!(a.age_years.unwrap().1, AgeSource::Bios);
    }

    #[test]
    fn an_adequate_machine_has_no_shortfall_and_unknowns_stay_unknown() {
        let facts = Facts {
            memory_total_bytes: Some(7_900 * MIB),
            system_disk_bytes: Some(256_060_514_304),
            cpu_model: Some("Intel(R) Core(TM) i5-10500 CPU @ 3.10GHz".into()),
            ..Default::default()
        };
        let mut m = Machine {
            facts: &facts,
            health: None,
            first_seen: date(2026, 1, 1),
            os_family: Some("windows"),
            os_version: Some("10 (19045)"),
            arch: Some("x86_64"),
        };
        let a = assess(&m, &thresholds(), date(2026, 11, 22));
        assert!(a.shortfalls.is_empty(), "{:?}", a.shortfalls);
        assert_eq!(a.windows_11_capable, Some(true));
        assert_eq!(a.age_years.unwrap().1, AgeSource::FirstSeen);
        let unknown_cpu = Facts {
            cpu_model: Some("Intel(R) Pentium(R) CPU G4560".into()),
            ..facts.clone()
        };
        m.facts = &unknown_cpu;
        assert_eq!(
            assess(&m, &thresholds(), date(2026, 11, 22)).windows_11_capable,
            None
        );
        m.os_family = Some("debian");
        assert_eq!(
            assess(&m, &thresholds(), date(2026, 11, 22)).windows_11_capable,
            None,
            "not judged for other systems"
        );
    }

    #[test]
    fn the_firmware_decides_where_the_agent_reads_it() {
        let ready = FirmwareFacts {
            tpm_present: Some(true),
            tpm_version: Some("2.0".into()),
            uefi_supported: Some(true),
            secure_boot: Some(false),
        };
        let judge = |firmware: Option<FirmwareFacts>| {
            let facts = Facts {
                memory_total_bytes: Some(8 << 30),
                system_disk_bytes: Some(256_060_514_304),
                cpu_model: Some("Intel(R) Core(TM) i5-10500 CPU @ 3.10GHz".into()),
                firmware,
                ..Default::default()
            };
            let m = Machine {
                facts: &facts,
                health: None,
                first_seen: date(2026, 1, 1),
                os_family: Some("windows"),
                os_version: Some("10 (19045)"),
                arch: Some("x86_64"),
            };
            let a = assess(&m, &thresholds(), date(2026, 11, 22));
            let reason = a
                .shortfalls
                .iter()
                .find(|s| s.0 == GapKind::NoWindows11)
                .map(|s| s.1.clone());
            (a.windows_11_capable, reason)
        };
        // Secure Boot merely off is switched on, not bought.
        assert_eq!(judge(Some(ready.clone())), (Some(true), None));
        let tpm_12 = FirmwareFacts {
            tpm_version: Some("1.2".into()),
            ..ready.clone()
        };
        let (capable, reason) = judge(Some(tpm_12));
        assert_eq!(capable, Some(false));
        assert!(reason.unwrap().contains("TPM 1.2, not 2.0"));
        let no_tpm_no_uefi = FirmwareFacts {
            tpm_present: Some(false),
            tpm_version: None,
            uefi_supported: Some(false),
            ..ready.clone()
        };
        let reason = judge(Some(no_tpm_no_uefi)).1.unwrap();
        assert!(reason.contains("no TPM found"), "{reason}");
        assert!(reason.contains("without UEFI"), "{reason}");
        // The TPM could not be queried: unknown, not ready.
        let unread = FirmwareFacts {
            tpm_present: None,
            tpm_version: None,
            ..ready
        };
        assert_eq!(judge(Some(unread)), (None, None));
        // An agent that reads no firmware facts: judged on the rest.
        assert_eq!(judge(None), (Some(true), None));
    }
}
