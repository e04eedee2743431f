//! The collector binary's allocator settings, as the process starts with
//! them (jemalloc prints its options on request).

use anyhow::{Context, Result};

#[test]
fn the_collector_returns_freed_memory_to_the_system_on_a_timer() -> Result<()> {
    let out = std::process::Command::new(campanile_tests::collector_binary()?)
        .arg("--version")
        // Adds a print of jemalloc's options at exit; keeps the built-in ones.
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .context("run the collector")?;
    assert!(out.status.success(), "{out:?}");
    let stats = String::from_utf8_lossy(&out.stderr);
    assert!(
        stats
            .lines()
            .any(|l| l.trim_start().starts_with("opt.background_thread: true")),
        "jemalloc's background thread is off:\n{stats}"
    );
    Ok(())
}
