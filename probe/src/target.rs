//! Probe addresses: an IP with an optional IPv6 zone ("fe80::1%eth0"), or
//! a host name resolved when the probe runs.

use std::fmt;
use std::net::IpAddr;

/// An IP address to probe. Link-local IPv6 gateways need the interface
/// (scope id) they live on, or no packet leaves the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Address {
    pub ip: IpAddr,
    pub scope_id: u32,
}

impl Address {
    pub fn new(ip: IpAddr) -> Self {
        Self { ip, scope_id: 0 }
    }
}

impl From<IpAddr> for Address {
    fn from(ip: IpAddr) -> Self {
        Self::new(ip)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.scope_id) {
            (IpAddr::V6(ip), id) if id != 0 => write!(f, "{ip}%{id}"),
            (ip, _) => write!(f, "{ip}"),
        }
    }
}

/// Parses "192.0.2.1", "2001:db8::1", "fe80::1%eth0" or "fe80::1%2".
/// `None` when the text is not an IP literal (a host name, say).
pub fn parse_address(text: &str) -> Option<Address> {
    let text = text.trim();
    let (ip, zone) = match text.split_once('%') {
        Some((ip, zone)) => (ip, Some(zone)),
        None => (text, None),
    };
    let ip: IpAddr = ip
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let scope_id = match zone {
        None => 0,
        Some(z) if !ip.is_ipv6() || z.is_empty() => return None,
        Some(z) => z.parse().ok().or_else(|| interface_index(z))?,
    };
    Some(Address { ip, scope_id })
}

#[cfg(target_os = "linux")]
fn interface_index(name: &str) -> Option<u32> {
    if name.contains('/') || name.starts_with('.') {
        return None;
    }
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn interface_index(_name: &str) -> Option<u32> {
    None
}

/// An IP literal as is, else the first address the system resolver gives
/// for the name.
pub async fn resolve_host(host: &str) -> Result<Address, String> {
    if let Some(a) = parse_address(host) {
        return Ok(a);
    }
    let mut addrs = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    addrs
        .next()
        .map(|a| Address::new(a.ip()))
        .ok_or_else(|| format!("cannot resolve {host}: no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_literals_with_and_without_zone() {
        assert_eq!(parse_address("192.0.2.1").unwrap().to_string(), "192.0.2.1");
        assert_eq!(parse_address("[::1]").unwrap().to_string(), "::1");
        assert_eq!(parse_address("fe80::1%3").unwrap().scope_id, 3);
        assert_eq!(parse_address("fe80::1%3").unwrap().to_string(), "fe80::1%3");
        assert!(parse_address("router.local").is_none());
        assert!(
            parse_address("192.0.2.1%eth0").is_none(),
            "zones are IPv6 only"
        );
        assert!(parse_address("fe80::1%no-such-interface-here").is_none());
    }
}
