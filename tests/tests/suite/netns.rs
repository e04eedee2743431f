//! Probes across a real (namespaced) network: the agent runs inside a
//! client namespace whose default routes lead to a "gateway" namespace,
//! where nftables drops a share of the pings to one address, all pings to
//! another, and every SYN to one port. Root only (CI runs as root); skipped
//! with the reason otherwise.

use anyhow::{Context, Result};
use campanile_tests::netns::Lan;
use campanile_tests::{agent_binary, is_root};
use serde_json::Value;

fn icmp<'a>(report: &'a Value, target: &str) -> Result<&'a Value> {
    report["probes"]["icmp"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["target"] == target))
        .with_context(|| format!("no ICMP result for {target}: {report:#}"))
}

fn tcp<'a>(report: &'a Value, target: &str) -> Result<&'a Value> {
    report["probes"]["tcp"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["target"] == target))
        .with_context(|| format!("no TCP result for {target}: {report:#}"))
}

#[test]
fn agent_finds_its_gateways_and_resolver_and_measures_loss_drops_and_silence() -> Result<()> {
    if !is_root() {
        campanile_tests::skipped("network namespaces need root");
        return Ok(());
    }
    let lan = Lan::new()?;
    let n = lan.n;
    let lossy = lan.gateway_address(3)?;
    let dark = lan.gateway_address(4)?;
    lan.gateway.nft(&format!(
        "table inet campanile_test {{
            chain input {{
                type filter hook input priority 0; policy accept;
                ip daddr {lossy} icmp type echo-request numgen random mod 100 < 30 drop
                ip daddr {dark} icmp type echo-request drop
                tcp dport 9 drop
            }}
        }}"
    ))?;
    lan.client
        .set_resolv_conf(&format!("# test namespace\nnameserver 10.{n}.0.1\n"))?;

    let dir = tempfile::tempdir()?;
    let config = dir.path().join("agent.toml");
    // `once` sends nothing: the endpoint only has to be well formed.
    std::fs::write(
        &config,
        format!(
            r#"
[identity]
host_id = "netns-pc"
[collector]
endpoint = "https://127.0.0.1:1"
ca_cert_path = "ca.pem"
cert_path = "agent.pem"
key_path = "agent.key"
[collect]
systemd_units = false
packages = false
[probes]
auto_gateway = true
auto_dns = true
auto_collector = false
icmp_count = 200
icmp_interval_ms = 5
icmp_timeout_ms = 500
tcp_timeout_ms = 700
[[probes.icmp]]
name = "lossy"
address = "{lossy}"
[[probes.icmp]]
name = "dark"
address = "{dark}"
[[probes.tcp]]
name = "silent"
address = "10.{n}.0.1:9"
[[probes.tcp]]
name = "refused"
address = "10.{n}.0.1:10"
"#
        ),
    )?;
    let out = lan
        .client
        .command(&agent_binary()?)
        .args(["once", "--config"])
        .arg(&config)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "agent once failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout)?;
    assert!(report["probes"]["icmp_unavailable"].is_null(), "{report:#}");

    // Gateways from the namespace's routing tables, resolver from its resolv.conf.
    let gw = icmp(&report, "gateway")?;
    assert_eq!(gw["address"], format!("10.{n}.0.1"));
    assert_eq!(
        (gw["sent"].as_u64(), gw["lost"].as_u64()),
        (Some(200), Some(0))
    );
    let gw6 = icmp(&report, "gateway6")?;
    assert_eq!(gw6["address"], format!("fd00:{n}::1"));
    assert_eq!(gw6["lost"].as_u64(), Some(0), "{gw6}");
    assert_eq!(icmp(&report, "dns1")?["address"], format!("10.{n}.0.1"));

    // 30% dropped at random: 200 packets put the ratio within 0.15..0.45
    // with overwhelming probability (binomial, about 4.6 standard deviations).
    let l = icmp(&report, "lossy")?;
    let ratio = l["lost"].as_f64().unwrap_or(0.0) / l["sent"].as_f64().unwrap_or(1.0);
    assert!((0.15..=0.45).contains(&ratio), "loss ratio {ratio}: {l}");
    let d = icmp(&report, "dark")?;
    assert_eq!(
        (d["sent"].as_u64(), d["lost"].as_u64()),
        (Some(200), Some(200)),
        "{d}"
    );
    assert!(d["rtt_avg_seconds"].is_null());

    let silent = tcp(&report, "silent")?;
    assert_eq!(silent["success"], false);
    assert_eq!(silent["error"], "no answer within 700 ms");
    let secs = silent["seconds"].as_f64().unwrap_or(0.0);
    assert!((0.7..5.0).contains(&secs), "{secs}");
    let refused = tcp(&report, "refused")?;
    assert_eq!(refused["success"], false);
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or_default()
            .contains("refused"),
        "{refused}"
    );
    assert!(refused["seconds"].as_f64().unwrap_or(1.0) < 0.7);
    Ok(())
}
