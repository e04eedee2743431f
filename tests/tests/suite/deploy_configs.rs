//! The example configs in deploy/ are parsed by the real loaders, so they
//! never drift from the code.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
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
    assert_eq!(c.grpc.listen.port(), 9470);
    assert_eq!(c.http_listen.port(), 9471);
    // The example's alerting: one receiver, the rules' documented defaults.
    assert_eq!(c.alerts.receivers.len(), 1);
    assert_eq!(c.alerts.receivers[0].severities.len(), 2);
    let defaults =
        campanile_collector::alerts::AlertsConfig::defaults(&c.store_path, c.http_listen);
    assert_eq!(
        c.alerts.rules, defaults.rules,
        "the example shows the defaults"
    );
    assert_eq!(c.alerts.group_wait, defaults.group_wait);
    assert!(c.alerts.state_path.ends_with("campanile-alerts.db"));
    Ok(())
}

#[test]
fn example_windows_agent_config_parses() -> Result<()> {
    let a = AgentConfig::load(&deploy("windows/agent.toml"))?;
    assert_eq!(a.collector.server_name, "collector.cst.example");
    assert!(a.collect.packages && a.probes.enabled && a.probes.auto_gateway);
    // Windows paths (relative to the file when read elsewhere).
    assert!(
        a.collector
            .key_path
            .to_string_lossy()
            .ends_with(r"C:\ProgramData\Campanile\agent.key"),
        "{}",
        a.collector.key_path.display()
    );
    Ok(())
}

#[test]
fn example_agent_config_parses() -> Result<()> {
    let a = AgentConfig::load(&deploy("agent.toml"))?;
    assert_eq!(a.collector.server_name, "collector.cst.example");
    // The example enrolls: the files go where enrollment writes them.
    assert_eq!(
        a.collector.cert_path,
        campanile_agent::config::state_dir().join("agent.pem")
    );
    assert_eq!(a.host_id, None, "the host id comes from the certificate");
    assert_eq!(a.collect.interval_secs, 60);
    // Real installs probe their own links by default.
    assert!(a.probes.enabled && a.probes.auto_gateway && a.probes.auto_dns);
    // Every example target is a name the example collector counts.
    let c = CollectorConfig::load(&deploy("collector.toml"))?;
    let names = a
        .probes
        .icmp_targets
        .iter()
        .map(|t| &t.name)
        .chain(a.probes.tcp_targets.iter().map(|t| &t.name))
        .chain(a.probes.dns_targets.iter().map(|t| &t.name));
    for n in names {
        assert!(
            c.probes.targets.contains(n),
            "{n} not in the collector's probes.targets"
        );
    }
    for auto in campanile_agent::config::AUTO_TARGETS {
        assert!(c.probes.targets.contains(*auto), "{auto}");
    }
    Ok(())
}

#[test]
fn systemd_units_grant_cap_net_raw_and_nothing_else() -> Result<()> {
    for unit in ["campanile-agent.service", "campanile-collector.service"] {
        let text = std::fs::read_to_string(deploy(&format!("systemd/{unit}")))?;
        let values = |key: &str| -> Vec<String> {
            text.lines()
                .filter_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_owned())
                .collect()
        };
        assert_eq!(values("AmbientCapabilities="), ["CAP_NET_RAW"], "{unit}");
        assert_eq!(values("CapabilityBoundingSet="), ["CAP_NET_RAW"], "{unit}");
        assert_eq!(values("NoNewPrivileges="), ["yes"], "{unit}");
    }
    Ok(())
}

#[test]
fn agent_unit_provides_the_example_spool_directory() -> Result<()> {
    let unit = std::fs::read_to_string(deploy("systemd/campanile-agent.service"))?;
    let state = unit
        .lines()
        .find_map(|l| l.strip_prefix("StateDirectory="))
        .context("StateDirectory= in the agent unit")?;
    let cfg = campanile_agent::AgentConfig::load(&deploy("agent.toml"))?;
    assert!(
        cfg.send
            .spool
            .path
            .starts_with(Path::new("/var/lib").join(state.trim())),
        "spool {} outside /var/lib/{state}",
        cfg.send.spool.path.display()
    );
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

#[test]
fn example_register_loads_and_the_collector_config_points_at_it() -> Result<()> {
    let r = campanile_territory::register::Register::load(&deploy("territory/register.toml"))?;
    assert!(r.comuni.len() >= 3 && r.sites.len() >= 5 && r.assets.len() >= 5);
    assert!(r.devices.iter().any(|d| d.tcp_port.is_some()));
    let c = CollectorConfig::load(&deploy("collector.toml"))?;
    assert_eq!(
        c.territory.register_path.as_deref(),
        Some(std::path::Path::new("/etc/campanile/register.toml"))
    );
    assert_eq!(c.api.tokens.len(), 1);
    Ok(())
}

#[test]
fn alerting_and_recording_rules_pass_their_promtool_tests() -> Result<()> {
    let promtool = campanile_tests::require_tool("promtool")?;
    for args in [
        vec!["check", "rules", "campanile.rules.yml"],
        vec!["test", "rules", "campanile.rules.test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(&args)
            .current_dir(deploy("prometheus/rules"))
            .output()?;
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[test]
fn grafana_dashboard_uses_the_provisioned_datasource() -> Result<()> {
    let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(deploy(
        "grafana/dashboards/campanile-territory.json",
    ))?)?;
    let provisioned =
        std::fs::read_to_string(deploy("grafana/provisioning/datasources/campanile.yml"))?;
    assert!(provisioned.contains("uid: campanile-prometheus"));
    let mut uids = Vec::new();
    collect_datasource_uids(&dash, &mut uids);
    assert!(!uids.is_empty());
    assert!(uids.iter().all(|u| u == "campanile-prometheus"), "{uids:?}");
    let mut ids: Vec<i64> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "panel ids are unique");
    Ok(())
}

fn collect_datasource_uids(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(uid) = m.get("datasource").and_then(|d| d["uid"].as_str()) {
                out.push(uid.to_owned());
            }
            m.values().for_each(|x| collect_datasource_uids(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_datasource_uids(x, out)),
        _ => {}
    }
}
