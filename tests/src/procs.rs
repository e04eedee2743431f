//! What a process costs and may use, read from /proc and the system: CPU
//! time, resident memory (the one reader of it), size on disk, the
//! open-files limit, whether it runs as root, and the tools on `PATH`.

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
    proc_status_kib(pid, "VmRSS:").map(|k| k * 1024)
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

/// Runs as root: only then can tests make network namespaces and drop
/// privileges.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// A memory figure of a process from /proc/<pid>/status, in KiB: `field`
/// is e.g. "VmRSS:" (resident now) or "VmHWM:" (peak).
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    kib_field(&format!("/proc/{pid}/status"), field)
}

/// A "<field> <n> kB" line of a /proc file (status, meminfo), in KiB.
pub fn kib_field(path: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Peak resident memory of a process (VmHWM), in bytes.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmHWM:").map(|kib| kib * 1024)
}

/// Raises this process's open-files soft limit to its hard limit (and, as
/// root, the hard limit to 1,048,576 first): a fleet holds one socket per
/// agent. Returns the soft limit now in force. Children inherit it.
pub fn raise_open_files_limit() -> anyhow::Result<u64> {
    use rlimit::Resource;
    if is_root() {
        let _ = Resource::NOFILE.set(1 << 20, 1 << 20);
    }
    let (_, hard) = Resource::NOFILE.get()?;
    let _ = Resource::NOFILE.set(hard, hard);
    Ok(Resource::NOFILE.get()?.0)
}

/// Finds a tool that `make test` installs (Debian's prometheus package).
pub fn require_tool(name: &str) -> anyhow::Result<std::path::PathBuf> {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = std::path::Path::new(dir).join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    anyhow::bail!(
        "{name} not found on PATH: run `make test`, which installs Debian's prometheus package"
    )
}
