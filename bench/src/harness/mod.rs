//! `make bench`: measurements taken side by side in one run, written to
//! `docs/benchmarks/make-bench.md` with the machine, date and commit, each
//! figure beside its goal. Ratios against a reference measured in the same run (Debian's
//! node_exporter, a bare tonic server) hold up on a shared, noisy machine
//! where absolute figures drift.

pub mod capacity;
pub mod footprint;
pub mod ingest;
pub mod relay;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use campanile_tests::{ChildGuard, TestPki, free_port};

/// One line of the results table.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Figure {
    pub what: String,
    pub measured: String,
    pub goal: String,
    /// None: recorded, no goal.
    pub pass: Option<bool>,
}

impl Figure {
    pub fn info(what: impl Into<String>, measured: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            measured: measured.into(),
            goal: String::new(),
            pass: None,
        }
    }

    pub fn goal(
        what: impl Into<String>,
        measured: impl Into<String>,
        goal: impl Into<String>,
        pass: bool,
    ) -> Self {
        Self {
            what: what.into(),
            measured: measured.into(),
            goal: goal.into(),
            pass: Some(pass),
        }
    }
}

/// A section of `docs/benchmarks/make-bench.md`: a table and the notes
/// that explain it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Section {
    pub title: String,
    pub setup: String,
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
}

impl Section {
    pub fn new(title: impl Into<String>, setup: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            setup: setup.into(),
            ..Default::default()
        }
    }

    /// What a benchmark tool prints: the section as JSON with `--json`
    /// (for `benchmarks`, which writes every figure into the record),
    /// else as Markdown for a person.
    pub fn print(&self, json: bool) -> Result<()> {
        if json {
            println!("{}", serde_json::to_string(self)?);
        } else {
            print!("{}", self.markdown());
        }
        Ok(())
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("## {}\n\n{}\n\n", self.title, self.setup);
        out += "| figure | measured | goal | result |\n|---|---|---|---|\n";
        for f in &self.figures {
            let result = match f.pass {
                Some(true) => "pass",
                Some(false) => "**FAIL**",
                None => "",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {result} |",
                f.what, f.measured, f.goal
            );
        }
        for n in &self.notes {
            let _ = write!(out, "\n{n}\n");
        }
        out + "\n"
    }
}

/// Runs one of the single benchmark tools of `bin_dir` with `--json` and
/// reads the section it prints (its progress goes to stderr).
pub fn run_tool(bin_dir: &Path, tool: &str, args: &[String]) -> Result<Section> {
    let bin = bin_dir.join(tool);
    let out = Command::new(&bin)
        .args(args)
        .arg("--json")
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    anyhow::ensure!(out.status.success(), "{tool} failed: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text
        .lines()
        .rfind(|l| l.starts_with('{'))
        .with_context(|| format!("{tool} printed no section"))?;
    serde_json::from_str(json).with_context(|| format!("{tool}'s section"))
}

/// What machine, when, which commit.
pub fn machine_header() -> String {
    let cpu = cpu_model();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = campanile_tests::procs::kib_field("/proc/meminfo", "MemTotal:")
        .map_or(0.0, |k| k as f64 / (1024.0 * 1024.0));
    let run = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let commit = run("git", &["rev-parse", "--short=12", "HEAD"]);
    let dirty = !run("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let kernel = run("uname", &["-r"]);
    format!(
        "- machine: {cpu}, {cores} cores, {mem_gib:.0} GiB, Linux {kernel}\n\
         - date: {}\n\
         - commit: {commit}{}\n",
        time::OffsetDateTime::now_utc().date(),
        if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        }
    )
}

/// The CPU's model name from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|x| x.1.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The binaries `make bench` builds: the collector and the bare server
/// with the release profile, the agent as it ships (profile `agent`).
#[derive(Debug, Clone)]
pub struct Binaries {
    pub agent: PathBuf,
    pub collector: PathBuf,
    pub bare_ingest: PathBuf,
}

/// Where `cargo build --profile agent -p campanile-agent` puts the agent.
pub const SHIPPED_AGENT: &str = "target/agent/campanile-agent";

impl Binaries {
    /// The release binaries in `dir`, and the `agent` given.
    pub fn in_dir(dir: &Path, agent: &Path) -> Result<Self> {
        let find = |p: PathBuf, build: &str| {
            anyhow::ensure!(
                p.is_file(),
                "{} not found: build it with `{build}` first",
                p.display()
            );
            Ok(p)
        };
        let release = |name: &str| find(dir.join(name), "cargo build --release");
        Ok(Self {
            agent: find(
                agent.to_owned(),
                "cargo build --profile agent -p campanile-agent",
            )?,
            collector: release("campanile-collector")?,
            bare_ingest: release("bare-ingest")?,
        })
    }
}

/// A collector process (the release binary) on loopback ports with its own
/// store, started with `extra` TOML appended to its config.
pub struct CollectorProcess {
    pub grpc: std::net::SocketAddr,
    pub http: std::net::SocketAddr,
    pub pid: u32,
    _child: ChildGuard,
    pub dir: tempfile::TempDir,
}

impl CollectorProcess {
    pub async fn start(bin: &Path, pki: &TestPki, extra: &str) -> Result<Self> {
        Self::start_tuned(bin, pki, &[], extra).await
    }

    /// The same, with TOML lines added under existing tables:
    /// `("[grpc]", "idle_timeout_secs = 10")`.
    pub async fn start_tuned(
        bin: &Path,
        pki: &TestPki,
        tables: &[(&str, String)],
        extra: &str,
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let (grpc_port, http_port) = (free_port()?, free_port()?);
        let config = dir.path().join("collector.toml");
        let mut text = pki.collector_toml(
            &dir.path().join("campanile.db"),
            grpc_port,
            http_port,
            extra,
        );
        for (table, lines) in tables {
            text = text.replacen(table, &format!("{table}\n{lines}"), 1);
        }
        std::fs::write(&config, text)?;
        let log = std::fs::File::create(dir.path().join("collector.log"))?;
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let pid = child.id();
        let guard = ChildGuard(child);
        let http: std::net::SocketAddr = ([127, 0, 0, 1], http_port).into();
        let url = format!("http://{http}/metrics");
        let deadline = Instant::now() + Duration::from_secs(60);
        while campanile_tests::scrape::http_get(&url).await.is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "collector did not start: {}",
                std::fs::read_to_string(dir.path().join("collector.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            grpc: ([127, 0, 0, 1], grpc_port).into(),
            http,
            pid,
            _child: guard,
            dir,
        })
    }

    pub fn rss_bytes(&self) -> u64 {
        campanile_tests::procs::rss_bytes(self.pid).unwrap_or(0)
    }

    /// One `/metrics` scrape; returns the time to the last byte and the body.
    pub async fn scrape(&self) -> Result<(Duration, String)> {
        let t = Instant::now();
        let body =
            campanile_tests::scrape::http_get(&format!("http://{}/metrics", self.http)).await?;
        Ok((t.elapsed(), body))
    }
}

pub use crate::stats::median;

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
