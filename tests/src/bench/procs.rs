//! What a process costs, read from /proc: CPU time and resident memory.

use anyhow::{Context, Result};

/// User + system CPU seconds a process has used so far.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields start after its ')'.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks / clock_ticks_per_second())
}

/// USER_HZ: 100 on every Linux this runs on; `getconf` says for sure
/// (asked once: observers sample every few seconds).
fn clock_ticks_per_second() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Resident memory now (VmRSS), in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    crate::proc_status_kib(pid, "VmRSS:").map(|k| k * 1024)
}

/// A stripped copy's size: what the binary weighs once installed.
pub fn stripped_size(bin: &std::path::Path) -> Result<u64> {
    let dir = tempfile::tempdir()?;
    let copy = dir.path().join("stripped");
    std::fs::copy(bin, &copy)?;
    let status = std::process::Command::new("strip").arg(&copy).status();
    anyhow::ensure!(
        status.map(|s| s.success()).unwrap_or(false),
        "strip {} failed (binutils missing?)",
        bin.display()
    );
    Ok(std::fs::metadata(&copy)?.len())
}
