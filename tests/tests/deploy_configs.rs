//! The example configs in deploy/ are parsed by the real loaders, so they
//! never drift from the code.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use campanile_agent::AgentConfig;
use campanile_collector::CollectorConfig;

fn deploy(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

#[test]
fn example_collector_config_parses() -> Result<()> {
    let c = CollectorConfig::load(&deploy("collector.toml"))?;
    assert_eq!(c.grpc_listen.port(), 9470);
    assert_eq!(c.http_listen.port(), 9471);
    Ok(())
}

#[test]
fn example_agent_config_parses() -> Result<()> {
    let a = AgentConfig::load(&deploy("agent.toml"))?;
    assert_eq!(a.collector.server_name, "collector.cst.example");
    assert_eq!(a.collect.interval_secs, 60);
    Ok(())
}

#[test]
fn example_prometheus_config_passes_promtool() -> Result<()> {
    let promtool = campanile_tests::require_tool("promtool")?;
    let out = Command::new(promtool)
        .args(["check", "config"])
        .arg(deploy("prometheus/prometheus.yml"))
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(())
}
