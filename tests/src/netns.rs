//! Network namespaces a test makes for itself (root only): small private
//! networks for probes, so no test ever sends a packet to this machine's
//! real gateway, resolvers or the outside world.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

/// Runs a command, failing with its stderr.
pub fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {args:?}"))?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// One namespace, deleted (with its interfaces) on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    fn new(name: String) -> Result<Self> {
        run(&["ip", "netns", "add", &name])?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip <args>` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend_from_slice(args);
        run(&all)
    }

    /// Loads an nftables ruleset inside the namespace.
    pub fn nft(&self, ruleset: &str) -> Result<()> {
        let out = crate::output_with_stdin(
            Command::new("ip").args(["netns", "exec", &self.name, "nft", "-f", "-"]),
            ruleset,
        )?;
        if !out.status.success() {
            bail!("nft: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// The resolv.conf that `ip netns exec` shows programs in the namespace.
    pub fn set_resolv_conf(&self, text: &str) -> Result<()> {
        let dir = format!("/etc/netns/{}", self.name);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(format!("{dir}/resolv.conf"), text)?;
        Ok(())
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}

/// A client namespace whose default routes (IPv4 and IPv6) go through a
/// second "gateway" namespace over a veth pair:
/// client 10.<n>.0.2 / fd00:<n>::2, gateway 10.<n>.0.1 / fd00:<n>::1.
pub struct Lan {
    pub client: NetNs,
    pub gateway: NetNs,
    pub n: u32,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Lan {
    pub fn new() -> Result<Self> {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // Interface names have 15 bytes at most.
        let tag = format!("{}{k}", pid % 100_000);
        let n = 200 + (pid % 40) + k;
        let client = NetNs::new(format!("campanile-{tag}-c"))?;
        let gateway = NetNs::new(format!("campanile-{tag}-g"))?;
        let (vc, vg) = (format!("vc{tag}"), format!("vg{tag}"));
        run(&[
            "ip",
            "link",
            "add",
            &vc,
            "netns",
            &client.name,
            "type",
            "veth",
            "peer",
            "name",
            &vg,
            "netns",
            &gateway.name,
        ])?;
        let v4 = |host: u32| format!("10.{n}.0.{host}/24");
        let v6 = |host: u32| format!("fd00:{n}::{host}/64");
        gateway.ip(&["addr", "add", &v4(1), "dev", &vg])?;
        gateway.ip(&["-6", "addr", "add", &v6(1), "dev", &vg, "nodad"])?;
        gateway.ip(&["link", "set", &vg, "up"])?;
        client.ip(&["addr", "add", &v4(2), "dev", &vc])?;
        client.ip(&["-6", "addr", "add", &v6(2), "dev", &vc, "nodad"])?;
        client.ip(&["link", "set", &vc, "up"])?;
        client.ip(&["route", "add", "default", "via", &format!("10.{n}.0.1")])?;
        client.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &format!("fd00:{n}::1"),
        ])?;
        Ok(Self { client, gateway, n })
    }

    /// An extra IPv4 address of the gateway namespace.
    pub fn gateway_address(&self, host: u32) -> Result<String> {
        let addr = format!("10.{}.0.{host}", self.n);
        let dev = self.gateway_dev();
        self.gateway
            .ip(&["addr", "add", &format!("{addr}/24"), "dev", &dev])?;
        Ok(addr)
    }

    fn gateway_dev(&self) -> String {
        let tag = self
            .gateway
            .name
            .trim_start_matches("campanile-")
            .trim_end_matches("-g");
        format!("vg{tag}")
    }
}
