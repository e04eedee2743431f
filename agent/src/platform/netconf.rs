//! Parsers for where a host keeps its network setup: the kernel's routing
//! tables (/proc/net/route, /proc/net/ipv6_route) and resolv.conf. Pure
//! text in, addresses out, so they are tested on any machine.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use campanile_probe::{Address, parse_address};

/// The default routes' next hops, lowest metric first per family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gateways {
    pub v4: Option<Address>,
    pub v6: Option<Address>,
}

const RTF_UP: u32 = 0x1;
const RTF_GATEWAY: u32 = 0x2;

/// The IPv4 default gateway from /proc/net/route. Addresses there are the
/// kernel's `__be32` printed as a host-order integer, so the native byte
/// order of the parsed number gives the address bytes on both little- and
/// big-endian machines (MIPS routers are often big-endian).
pub fn ipv4_default_gateway(route: &str) -> Option<Ipv4Addr> {
    route
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let hex = |s: &str| u32::from_str_radix(s, 16).ok();
            let (dest, gw, flags, metric, mask) = (
                hex(f[1])?,
                hex(f[2])?,
                hex(f[3])?,
                f[6].parse::<u32>().ok()?,
                hex(f[7])?,
            );
            (dest == 0
                && mask == 0
                && gw != 0
                && flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY)
                .then(|| (metric, Ipv4Addr::from(gw.to_ne_bytes())))
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, ip)| ip)
}

/// The IPv6 default gateway from /proc/net/ipv6_route, with the device it
/// is reached through (link-local next hops need it).
pub fn ipv6_default_gateway(route: &str) -> Option<(Ipv6Addr, String)> {
    route
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[9] == "lo" {
                return None;
            }
            let v6 = |s: &str| -> Option<Ipv6Addr> {
                (s.len() == 32).then_some(())?;
                u128::from_str_radix(s, 16).ok().map(Ipv6Addr::from)
            };
            let hex = |s: &str| u32::from_str_radix(s, 16).ok();
            let (dest, plen, next_hop, metric, flags) =
                (v6(f[0])?, hex(f[1])?, v6(f[4])?, hex(f[5])?, hex(f[8])?);
            (dest.is_unspecified()
                && plen == 0
                && !next_hop.is_unspecified()
                && flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY)
                .then(|| (metric, next_hop, f[9].to_owned()))
        })
        .min_by_key(|(metric, _, _)| *metric)
        .map(|(_, ip, dev)| (ip, dev))
}

/// `nameserver` lines of a resolv.conf, at most three (as the C library).
pub fn resolv_conf_nameservers(text: &str) -> Vec<Address> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            parse_address(words.next()?)
        })
        .take(3)
        .collect()
}

/// systemd-resolved's stub listener: pinging it says nothing of the network.
pub fn is_local_stub(addr: &Address) -> bool {
    match addr.ip {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => ip.is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE_LE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
";

    #[test]
    fn picks_the_lowest_metric_ipv4_default_route() {
        let gw = ipv4_default_gateway(ROUTE_LE).unwrap();
        let expected = if cfg!(target_endian = "little") {
            Ipv4Addr::new(192, 168, 0, 1)
        } else {
            Ipv4Addr::new(1, 0, 168, 192)
        };
        assert_eq!(gw, expected);
        assert_eq!(ipv4_default_gateway("Iface\tDestination\n"), None);
    }

    #[test]
    fn finds_the_ipv6_default_route_and_its_device() {
        let text = "\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo
";
        let (ip, dev) = ipv6_default_gateway(text).unwrap();
        assert_eq!(ip, "fe80::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(dev, "eth0");
    }

    #[test]
    fn reads_at_most_three_nameservers() {
        let text = "# generated\nsearch example\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n nameserver bogus\nnameserver 192.0.2.54\nnameserver 192.0.2.55\n";
        let ns: Vec<String> = resolv_conf_nameservers(text)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ns, ["192.0.2.53", "2001:db8::53", "192.0.2.54"]);
        assert!(is_local_stub(&parse_address("127.0.0.53").unwrap()));
    }
}
