//! Network probes against loopback only: ICMP, TCP and DNS probes, an agent
//! without ICMP permission, and probe duty for agentless devices end to end.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{Context, Result};
use campanile_agent::{Agent, AgentConfig};
use campanile_probe::{IcmpProber, IcmpSpec, dns_query, parse_address, tcp_connect};
use campanile_tests::planted::write;
use campanile_tests::{TestCollector, TestPki, eventually, is_root, sample};
use simple_dns::rdata::{A, RData};
use simple_dns::{CLASS, Name, Packet, RCODE, ResourceRecord};

/// ICMP needs privileges. Where the test process has none, a test that is
/// only ICMP is skipped, and one with other parts runs them without its
/// ICMP part (both say so).
fn icmp_available(p: &IcmpProber) -> bool {
    match p.unavailable_reason() {
        Some(reason) => {
            eprintln!("without its ICMP part: {reason}");
            false
        }
        None => true,
    }
}

#[tokio::test]
async fn icmp_to_loopback_v4_and_v6_gets_every_reply() -> Result<()> {
    let p = IcmpProber::new();
    if let Some(reason) = p.unavailable_reason() {
        campanile_tests::skipped(&format!("no ICMP here: {reason}"));
        return Ok(());
    }
    let spec = IcmpSpec {
        count: 5,
        interval: Duration::from_millis(20),
        timeout: Duration::from_secs(2),
    };
    for addr in ["127.0.0.1", "::1"] {
        let o = p
            .probe(parse_address(addr).context("address")?, &spec)
            .await;
        assert_eq!((o.sent, o.lost), (5, 0), "{addr}: {o:?}");
        let s = o.stats().context("round trips")?;
        assert!(s.min <= s.avg && s.avg <= s.max, "{addr}: {s:?}");
    }
    Ok(())
}

#[tokio::test]
async fn refused_tcp_port_fails_at_once_not_at_the_timeout() -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    // The listener is gone: the port answers with a reset.
    let o = tcp_connect(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(30),
    )
    .await;
    assert!(!o.success);
    let error = o.error.unwrap_or_default();
    assert!(error.contains("refused"), "{error}");
    assert!(
        o.elapsed < Duration::from_secs(30),
        "did not wait for the timeout"
    );
    Ok(())
}

#[tokio::test]
async fn silent_tcp_port_times_out_within_the_bound() -> Result<()> {
    // A listener that never accepts, with a backlog of one: once its queue
    // is full the kernel drops further SYNs, as a filtered port does.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind("127.0.0.1:0".parse()?)?;
    let listener = socket.listen(0)?;
    let addr = listener.local_addr()?;
    let mut held = Vec::new();
    let mut silent = false;
    for _ in 0..16 {
        match tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(e)) => anyhow::bail!("connect failed instead of hanging: {e}"),
            Err(_) => {
                silent = true;
                break;
            }
        }
    }
    anyhow::ensure!(silent, "the listener's queue never filled");
    let bound = Duration::from_millis(500);
    let o = tcp_connect(addr, bound).await;
    assert!(!o.success);
    assert_eq!(o.error.as_deref(), Some("no answer within 500 ms"));
    assert!(
        o.elapsed >= bound && o.elapsed < bound + Duration::from_secs(5),
        "{:?}",
        o.elapsed
    );
    drop(listener);
    Ok(())
}

/// A resolver on loopback: answers "portal.test" with an address, "nope.test"
/// with NXDOMAIN and never answers "silent.test".
fn start_test_resolver() -> Result<SocketAddr> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let addr = socket.local_addr()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let Ok(query) = Packet::parse(&buf[..n]) else {
                continue;
            };
            let Some(q) = query.questions.first() else {
                continue;
            };
            let name = q.qname.to_string();
            let mut reply = Packet::new_reply(query.id());
            reply.questions.push(q.clone());
            match name.as_str() {
                "silent.test" => continue,
                "portal.test" => reply.answers.push(ResourceRecord::new(
                    Name::new_unchecked("portal.test"),
                    CLASS::IN,
                    60,
                    RData::A(A {
                        address: u32::from(std::net::Ipv4Addr::new(192, 0, 2, 80)),
                    }),
                )),
                _ => *reply.rcode_mut() = RCODE::NameError,
            }
            if let Ok(bytes) = reply.build_bytes_vec() {
                let _ = socket.send_to(&bytes, peer);
            }
        }
    });
    Ok(addr)
}

#[tokio::test]
async fn dns_probe_tells_an_answer_from_nxdomain_from_silence() -> Result<()> {
    let resolver = start_test_resolver()?;
    let t = Duration::from_millis(700);
    let ok = dns_query("portal.test", false, resolver, t).await;
    assert!(ok.success && ok.answers == 1, "{ok:?}");
    let nx = dns_query("nope.test", false, resolver, t).await;
    assert!(!nx.success);
    assert_eq!(nx.error.as_deref(), Some("NXDOMAIN"));
    let silent = dns_query("silent.test", false, resolver, t).await;
    assert!(!silent.success);
    assert!(
        silent
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("no answer"),
        "{silent:?}"
    );
    assert!(silent.elapsed >= t && silent.elapsed < t + Duration::from_secs(5));
    Ok(())
}

const DUTY_REGISTER: &str = r#"
[[comune]]
istat_code = "999001"
name = "Alfa"

[[site]]
id = "alfa-municipio"
comune = "999001"
name = "Municipio"

[[device]]
id = "alfa-router"
site = "alfa-municipio"
address = "127.0.0.1"
kind = "router"

[[device]]
id = "alfa-printer"
site = "alfa-municipio"
address = "127.0.0.1"
kind = "printer"
tcp_port = PRINTER_PORT

[[device]]
id = "alfa-switch"
site = "alfa-municipio"
address = "localhost"
kind = "switch"
tcp_port = CLOSED_PORT
"#;

#[tokio::test]
async fn agent_on_duty_probes_the_sites_devices_and_they_appear_in_metrics() -> Result<()> {
    let pki = TestPki::new()?;
    let printer = std::net::TcpListener::bind("127.0.0.1:0")?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let register = DUTY_REGISTER
        .replace("PRINTER_PORT", &printer.local_addr()?.port().to_string())
        .replace("CLOSED_PORT", &closed.to_string());
    let register = write(pki.path(), "register.toml", &register)?;
    let c = TestCollector::start_with(
        &pki,
        &format!(
            "[territory]\nregister_path = \"{}\"\n[probes]\nplan_refresh_secs = 1\n",
            register.display()
        ),
    )
    .await?;
    let probes = "[probes]\nauto_gateway = false\nauto_dns = false\nauto_collector = false\n\
                  icmp_count = 2\nicmp_interval_ms = 10\nicmp_timeout_ms = 500\ntcp_timeout_ms = 500\n";
    let text =
        pki.probing_agent_toml("duty-pc", "alfa-municipio", c.running.grpc_addr, 60, probes)?;
    let mut agent = Agent::new(AgentConfig::parse(
        &text,
        std::path::Path::new("/test/agent.toml"),
    )?)?;
    let icmp = icmp_available(&IcmpProber::new());

    let device = |d: &str, kind: &str| {
        format!(r#"campanile_device_up{{site="alfa-municipio",device="{d}",kind="{kind}"}}"#)
    };
    // Cycle by cycle: the first report shows the agent probes, the plan
    // gives it duty, a later ack carries it, the next report has results.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        agent.collect().await;
        agent.send().await;
        let t = c.metrics().await?;
        let printer_up = sample(&t, &device("alfa-printer", "printer"));
        let switch_up = sample(&t, &device("alfa-switch", "switch"));
        let router_seen = !icmp || sample(&t, &device("alfa-router", "router")).is_some();
        if printer_up == Some(1.0) && switch_up == Some(0.0) && router_seen {
            break t;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no device results after 30 s:\n{t}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if icmp {
        assert_eq!(sample(&text, &device("alfa-router", "router")), Some(1.0));
    }
    assert_eq!(
        sample(
            &text,
            r#"campanile_device_probe_agents{site="alfa-municipio",device="alfa-printer"}"#
        ),
        Some(1.0)
    );
    let state = c.running.store.host_states();
    assert_eq!(
        state[0].probe_duty_sha256.len(),
        32,
        "the agent echoes its duty"
    );
    drop(printer);
    c.stop().await?;
    Ok(())
}

/// ping_group_range "lo hi": can `gid` open ping sockets?
fn ping_group_allows(gid: u32) -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .is_some_and(|(lo, hi)| lo <= gid && gid <= hi)
}

#[tokio::test]
async fn agent_without_icmp_permission_says_so_and_still_reports_tcp_probes() -> Result<()> {
    const NOBODY: u32 = 65534;
    if !is_root() {
        campanile_tests::skipped("dropping to an unprivileged user needs root");
        return Ok(());
    }
    if ping_group_allows(NOBODY) {
        campanile_tests::skipped(&format!("net.ipv4.ping_group_range lets gid {NOBODY} ping"));
        return Ok(());
    }
    let pki = TestPki::new()?;
    let c = TestCollector::start(&pki).await?;
    // Everything the unprivileged agent reads, readable by it (test keys).
    let dir = tempfile::tempdir()?;
    let open = |p: &std::path::Path, mode| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
    };
    open(dir.path(), 0o755)?;
    let (cert, key) = pki.agent("nopriv-pc", "site-np")?;
    for (from, name) in [
        (pki.path().join("ca.pem"), "ca.pem"),
        (cert, "agent.pem"),
        (key, "agent.key"),
    ] {
        std::fs::copy(&from, dir.path().join(name))?;
        open(&dir.path().join(name), 0o644)?;
    }
    // The spool's directory, writable by the unprivileged agent.
    std::fs::create_dir(dir.path().join("state"))?;
    open(&dir.path().join("state"), 0o777)?;
    let bin = dir.path().join("campanile-agent");
    std::fs::copy(campanile_tests::agent_binary()?, &bin)?;
    open(&bin, 0o755)?;
    let config = format!(
        r#"
[identity]
host_id = "nopriv-pc"
[collector]
endpoint = "https://127.0.0.1:{grpc}"
server_name = "localhost"
ca_cert_path = "ca.pem"
cert_path = "agent.pem"
key_path = "agent.key"
[collect]
interval_secs = 2
systemd_units = false
packages = false
[spool]
path = "state/spool.redb"
[probes]
auto_gateway = false
auto_dns = false
icmp_count = 1
icmp_timeout_ms = 500
tcp_timeout_ms = 500
dns_timeout_ms = 500
[[probes.tcp]]
name = "centre"
address = "{http}"
"#,
        grpc = c.running.grpc_addr.port(),
        http = c.running.http_addr
    );
    std::fs::write(dir.path().join("agent.toml"), config)?;
    open(&dir.path().join("agent.toml"), 0o644)?;
    let mut child = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&bin)
        .args(["run", "--config"])
        .arg(dir.path().join("agent.toml"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("setpriv (util-linux)")?;

    let result = eventually(Duration::from_secs(30), "a report with probes", || async {
        let hosts = c.running.store.host_states();
        let probes = hosts
            .iter()
            .find(|h| h.host_id == "nopriv-pc")?
            .probes
            .clone()?;
        Some(probes)
    })
    .await;
    let metrics = c.metrics().await;
    let _ = child.kill();
    let output = child.wait_with_output()?;
    let log = String::from_utf8_lossy(&output.stderr);
    let probes = result.with_context(|| format!("agent log:\n{log}"))?;
    let reason = probes
        .icmp_unavailable
        .context("ICMP reported unavailable")?;
    assert!(reason.contains("CAP_NET_RAW"), "{reason}");
    assert!(
        probes.icmp.is_empty(),
        "nothing counted as lost: {:?}",
        probes.icmp
    );
    assert!(
        probes.tcp.iter().any(|t| t.target == "centre" && t.success),
        "{:?}",
        probes.tcp
    );
    assert_eq!(
        log.matches("ICMP probes unavailable").count(),
        1,
        "one clear warning:\n{log}"
    );
    let metrics = metrics?;
    assert_eq!(
        sample(
            &metrics,
            r#"campanile_site_probe_success_ratio{site="site-np",target="centre"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    c.stop().await?;
    Ok(())
}
