//! A full disk under the agent's spool: the agent keeps running, makes room
//! by dropping its oldest reports (counted, and the counts reach the
//! collector), delivers the rest once the collector is back, and takes new
//! reports again once space is freed, all without a restart.
//!
//! The spool sits on a tmpfs of its own, so "full" is a real ENOSPC from
//! the kernel. Root only (mounting; CI runs as root); skipped otherwise.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use campanile_agent::spool::Spool;
use campanile_agent::{Agent, AgentConfig};
use campanile_proto::v1::Report;
use campanile_tests::scrape::family_sum;
use campanile_tests::{TestCollector, TestPki, eventually, is_root, sample, steady_report};

/// A tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .context("running mount")?;
        if !status.success() {
            bail!("mount tmpfs on {}: {status}", dir.path().display());
        }
        Ok(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the filesystem refuses more: the disk is full.
    fn fill(&self) -> Result<PathBuf> {
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path)?;
        let chunk = vec![0x42u8; 4096];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => return Err(e.into()),
            }
        }
        // Smaller writes take what the last 4 KiB could not.
        while f.write(&[0x42]).is_ok_and(|n| n > 0) {}
        Ok(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a task still holding the spool must not leave it mounted.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The `i`th copy of `base`, ~1 KB, collected `i` ms after it.
fn padded(base: &Report, i: i64) -> Report {
    let mut r = base.clone();
    r.collected_at_ms = base.collected_at_ms + i;
    r.agent_version = format!("{}+{}", base.agent_version, "x".repeat(700));
    r
}

/// The agent's config with its spool at `spool`, bounded only by the disk.
fn config_with_spool(text: &str, spool: &Path) -> Result<AgentConfig> {
    let mut in_spool = false;
    let text: String = text
        .lines()
        .map(|l| {
            in_spool = if l.starts_with('[') {
                l == "[spool]"
            } else {
                in_spool
            };
            if in_spool && l.starts_with("path = ") {
                format!(
                    "path = \"{}\"\nmax_bytes = {}",
                    spool.display(),
                    64 * 1024 * 1024
                )
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    Ok(AgentConfig::parse(&text, Path::new("/test/agent.toml"))?)
}

#[tokio::test]
async fn a_full_disk_drops_the_oldest_counted_and_heals_without_a_restart() -> Result<()> {
    if !is_root() {
        campanile_tests::skipped("mounting a small tmpfs needs root");
        return Ok(());
    }
    let disk = Tmpfs::mount("2m")?;
    let pki = TestPki::new()?;
    let dir = tempfile::tempdir()?;
    let (text, port) = pki.offline_agent_toml("disk-pc", "site-disk", 1)?;
    let cfg = config_with_spool(&text, &disk.path().join("spool.redb"))?;
    let spool_cfg = cfg.send.spool.clone();
    let mut agent = Agent::new(cfg)?;
    let base = steady_report("disk-pc").await;

    // The collector is down and reports pile up until the disk is full,
    // then for as many again.
    let mut produced = 0u64;
    while agent.spool().counters().dropped_spool_full == 0 {
        agent.enqueue(padded(&base, produced as i64));
        produced += 1;
        assert!(produced < 20_000, "2 MiB never filled");
    }
    let held_at_full = agent.spool().len();
    for _ in 0..held_at_full {
        agent.enqueue(padded(&base, produced as i64));
        produced += 1;
    }
    let spool = agent.spool();
    let counters = spool.counters();
    assert_eq!(spool.next_seq() - 1, produced, "every report used a seq");
    assert_eq!(
        spool.len() + counters.dropped_spool_full,
        produced,
        "every report is kept or counted"
    );
    assert!(
        spool.len() * 2 > held_at_full,
        "making room keeps most of the backlog: {} of {held_at_full}",
        spool.len()
    );
    assert_eq!(counters.resets, 0, "the full disk was not taken for damage");
    let seqs: Vec<u64> = agent.spooled()?.iter().map(|r| r.seq).collect();
    let expected: Vec<u64> = (produced - seqs.len() as u64 + 1..=produced).collect();
    assert_eq!(seqs, expected, "the newest are kept, the oldest dropped");

    // Then something else takes the last free byte: the spool cannot grow.
    let filler = disk.fill()?;
    for _ in 0..100 {
        agent.enqueue(padded(&base, produced as i64));
        produced += 1;
    }
    assert_eq!(agent.spool().next_seq() - 1, produced);
    assert_eq!(
        agent.spool().len() + agent.spool().counters().dropped_spool_full,
        produced
    );

    // The collector returns; the agent, still on a full disk, runs on.
    let c = TestCollector::start_on(&pki, &dir.path().join("campanile.db"), port).await?;
    let epoch = agent.spool().epoch();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(agent.run(async {
        let _ = stopped.await;
    }));
    let back = Instant::now();
    let store = &c.running.store;
    eventually(Duration::from_secs(60), "the backlog delivered", || async {
        (store.delivered_seq("disk-pc", epoch).ok()?? >= produced).then_some(())
    })
    .await?;
    let delivered_in = back.elapsed();

    // Space is freed: from now on nothing more is dropped.
    std::fs::remove_file(&filler)?;
    let dropped = |text: &str| family_sum(text, "campanile_site_agent_reports_dropped_total");
    let after_free = dropped(&c.metrics().await?);
    let cursor = store.delivered_seq("disk-pc", epoch)?.unwrap_or(0);
    eventually(Duration::from_secs(30), "new reports delivered", || async {
        (store.delivered_seq("disk-pc", epoch).ok()?? >= cursor + 3).then_some(())
    })
    .await?;
    let _ = stop.send(());
    run.await?;

    let text = c.metrics().await?;
    let accepted = sample(&text, "campanile_ingest_reports_accepted_total").unwrap_or(0.0);
    let reported_drops = dropped(&text);
    let cursor = store.delivered_seq("disk-pc", epoch)?.unwrap_or(0);
    assert_eq!(reported_drops, after_free, "no drop once space was freed");
    assert_eq!(
        accepted + reported_drops,
        cursor as f64,
        "delivered + counted drops = every seq up to the collector's cursor"
    );
    let mut left = Spool::open(&spool_cfg)?;
    assert_eq!(left.epoch(), epoch);
    let spooled = left.batch(usize::MAX, u64::MAX)?;
    assert!(
        spooled.iter().all(|r| r.seq > cursor),
        "no acknowledged report left behind once space was freed"
    );
    assert_eq!(
        left.next_seq() - 1,
        cursor + spooled.len() as u64,
        "produced = delivered + counted drops + still spooled"
    );
    assert_eq!(
        left.counters().dropped_total() as f64,
        reported_drops,
        "the collector saw every drop"
    );
    eprintln!(
        "full disk: {produced} reports produced before the collector returned, {} dropped and counted, \
         backlog delivered {delivered_in:?} after its return",
        left.counters().dropped_spool_full
    );
    c.stop().await?;
    Ok(())
}
