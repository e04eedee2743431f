//! Network adapters from `GetAdaptersAddresses`: the NICs with their MAC
//! and addresses for the inventory, and the default gateways and DNS
//! servers the automatic probes target, as `ipconfig /all` shows them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use campanile_probe::Address;
use campanile_proto::v1::{Nic, NicList};

use crate::platform::netconf::Gateways;

/// IANA ifType values Windows uses (ipifcons.h).
const IF_TYPE_SOFTWARE_LOOPBACK: u32 = 24;
const IF_TYPE_TUNNEL: u32 = 131;

/// One adapter as the mapping needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Adapter {
    /// The name the user sees ("Ethernet", "Wi-Fi").
    pub friendly_name: String,
    /// The driver's name ("Intel(R) Ethernet Connection I219-LM").
    pub description: String,
    pub mac: Vec<u8>,
    pub if_type: u32,
    pub up: bool,
    pub addresses: Vec<(IpAddr, u8)>,
    pub gateways: Vec<Address>,
    pub dns_servers: Vec<Address>,
    /// Route metrics of the adapter per family: the lower wins.
    pub ipv4_metric: u32,
    pub ipv6_metric: u32,
}

impl Adapter {
    /// Loopback and tunnels (Teredo, 6to4, IP-HTTPS) are no NIC of the
    /// machine's; virtual switches and VPN adapters are Ethernet to
    /// Windows and show when they are up.
    pub fn is_virtual(&self) -> bool {
        matches!(self.if_type, IF_TYPE_SOFTWARE_LOOPBACK | IF_TYPE_TUNNEL)
    }
}

/// The inventory's NICs: adapters with a MAC, by name.
pub fn nics(adapters: &[Adapter], include_virtual: bool) -> NicList {
    let mut items: Vec<Nic> = adapters
        .iter()
        .filter(|a| include_virtual || !a.is_virtual())
        .filter(|a| a.mac.iter().any(|b| *b != 0) || include_virtual)
        .map(|a| {
            let mut addresses: Vec<String> = a
                .addresses
                .iter()
                .map(|(ip, prefix)| format!("{ip}/{prefix}"))
                .collect();
            addresses.sort();
            Nic {
                name: a.friendly_name.clone(),
                mac: mac(&a.mac),
                addresses,
            }
        })
        .collect();
    items.sort_by(|a, b| a.name.cmp(&b.name));
    NicList { items }
}

/// "aa:bb:cc:dd:ee:ff", as the Linux agent writes it.
fn mac(bytes: &[u8]) -> Option<String> {
    (bytes.len() == 6 && bytes.iter().any(|b| *b != 0)).then(|| {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    })
}

/// The default gateway of each family, from the adapters that are up,
/// the lowest metric first (as Windows picks its route).
pub fn gateways(adapters: &[Adapter]) -> Gateways {
    let pick = |v6: bool| {
        adapters
            .iter()
            .filter(|a| a.up && !a.is_virtual())
            .flat_map(|a| {
                let metric = if v6 { a.ipv6_metric } else { a.ipv4_metric };
                a.gateways
                    .iter()
                    .filter(move |g| g.ip.is_ipv6() == v6 && !g.ip.is_unspecified())
                    .map(move |g| (metric, *g))
            })
            .min_by_key(|(metric, _)| *metric)
            .map(|(_, g)| g)
    };
    Gateways {
        v4: pick(false),
        v6: pick(true),
    }
}

/// The DNS servers of the adapters that are up, in their order, without
/// repeats, at most three (as the Linux side reads resolv.conf). Windows
/// lists the site-local `fec0:0:0:ffff::1..3` on adapters with no IPv6
/// resolver configured: those are skipped, nothing answers there.
pub fn dns_servers(adapters: &[Adapter]) -> Vec<Address> {
    let mut out: Vec<Address> = Vec::new();
    let mut ordered: Vec<&Adapter> = adapters
        .iter()
        .filter(|a| a.up && !a.is_virtual())
        .collect();
    ordered.sort_by_key(|a| a.ipv4_metric);
    for a in ordered {
        for d in &a.dns_servers {
            let placeholder =
                matches!(d.ip, IpAddr::V6(v6) if v6.segments()[..4] == [0xfec0, 0, 0, 0xffff]);
            if !placeholder && !out.contains(d) {
                out.push(*d);
            }
        }
    }
    out.truncate(3);
    out
}

/// A `SOCKADDR` of `AF_INET` or `AF_INET6` from its bytes: the family
/// (little-endian u16) at 0; IPv4's address at 4..8; IPv6's at 8..24 and
/// its scope id at 24..28.
pub fn sockaddr(bytes: &[u8]) -> Option<Address> {
    const AF_INET: u16 = 2;
    const AF_INET6: u16 = 23;
    let family = u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?);
    match family {
        AF_INET => {
            let b: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
            Some(Address::new(Ipv4Addr::from(b).into()))
        }
        AF_INET6 => {
            let b: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
            let scope_id = u32::from_le_bytes(bytes.get(24..28)?.try_into().ok()?);
            let ip = Ipv6Addr::from(b);
            Some(Address {
                ip: ip.into(),
                // Only link-local addresses need their interface.
                scope_id: if ip.is_unicast_link_local() {
                    scope_id
                } else {
                    0
                },
            })
        }
        _ => None,
    }
}

// Calls into Windows: each unsafe block says why it is sound.
#[cfg(windows)]
#[allow(unsafe_code)]
pub mod read {
    //! Walking the list `GetAdaptersAddresses` fills.
    use super::*;
    use windows_sys::Win32::Foundation::{ERROR_BUFFER_OVERFLOW, NO_ERROR};
    use windows_sys::Win32::NetworkManagement::IpHelper::{
        GAA_FLAG_INCLUDE_GATEWAYS, GAA_FLAG_SKIP_ANYCAST, GAA_FLAG_SKIP_MULTICAST,
        GetAdaptersAddresses, IP_ADAPTER_ADDRESSES_LH,
    };
    use windows_sys::Win32::NetworkManagement::Ndis::IfOperStatusUp;
    use windows_sys::Win32::Networking::WinSock::{AF_UNSPEC, SOCKET_ADDRESS};

    /// Every adapter, or `None` if Windows would not list them.
    pub fn adapters() -> Option<Vec<Adapter>> {
        let flags = GAA_FLAG_INCLUDE_GATEWAYS | GAA_FLAG_SKIP_ANYCAST | GAA_FLAG_SKIP_MULTICAST;
        // Microsoft's advice: start at 15 KB, grow to what it asks for.
        let mut size: u32 = 16 * 1024;
        for _ in 0..4 {
            // u64 words: the list's structs need 8-byte alignment.
            let mut buf = vec![0u64; (size as usize).div_ceil(8)];
            let list = buf.as_mut_ptr().cast::<IP_ADAPTER_ADDRESSES_LH>();
            // SAFETY: `list` points to `size` writable bytes, aligned for
            // the structs; Windows writes at most `size` and says how many
            // it needed when that was too few.
            let rc = unsafe {
                GetAdaptersAddresses(
                    u32::from(AF_UNSPEC),
                    flags,
                    std::ptr::null(),
                    list,
                    &mut size,
                )
            };
            match rc {
                NO_ERROR => {
                    let mut out = Vec::new();
                    let mut at = list.cast_const();
                    while !at.is_null() {
                        // SAFETY: a non-null entry of the list Windows just
                        // wrote into `buf`, which lives until we return.
                        let a = unsafe { &*at };
                        out.push(adapter(a));
                        at = a.Next;
                    }
                    return Some(out);
                }
                ERROR_BUFFER_OVERFLOW => continue,
                _ => return None,
            }
        }
        None
    }

    fn adapter(a: &IP_ADAPTER_ADDRESSES_LH) -> Adapter {
        let mut addresses = Vec::new();
        let mut u = a.FirstUnicastAddress;
        while !u.is_null() {
            // SAFETY: entries of the same list, alive as `a` is.
            let entry = unsafe { &*u };
            if let Some(addr) = socket_address(&entry.Address) {
                addresses.push((addr.ip, entry.OnLinkPrefixLength));
            }
            u = entry.Next;
        }
        let mut gateways = Vec::new();
        let mut g = a.FirstGatewayAddress;
        while !g.is_null() {
            // SAFETY: as above.
            let entry = unsafe { &*g };
            gateways.extend(socket_address(&entry.Address));
            g = entry.Next;
        }
        let mut dns_servers = Vec::new();
        let mut d = a.FirstDnsServerAddress;
        while !d.is_null() {
            // SAFETY: as above.
            let entry = unsafe { &*d };
            dns_servers.extend(socket_address(&entry.Address));
            d = entry.Next;
        }
        let len = (a.PhysicalAddressLength as usize).min(a.PhysicalAddress.len());
        // SAFETY: strings of the list Windows filled, alive as `a` is.
        let (friendly_name, description) = unsafe {
            (
                crate::platform::windows::wide::to_string(a.FriendlyName),
                crate::platform::windows::wide::to_string(a.Description),
            )
        };
        Adapter {
            friendly_name,
            description,
            mac: a.PhysicalAddress[..len].to_vec(),
            if_type: a.IfType,
            up: a.OperStatus == IfOperStatusUp,
            addresses,
            gateways,
            dns_servers,
            ipv4_metric: a.Ipv4Metric,
            ipv6_metric: a.Ipv6Metric,
        }
    }

    fn socket_address(s: &SOCKET_ADDRESS) -> Option<Address> {
        let len = usize::try_from(s.iSockaddrLength).ok()?;
        if s.lpSockaddr.is_null() || len == 0 {
            return None;
        }
        // SAFETY: Windows gives the sockaddr's address and its length in
        // bytes; both belong to the list being walked.
        let bytes = unsafe { std::slice::from_raw_parts(s.lpSockaddr.cast::<u8>(), len) };
        sockaddr(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As `ipconfig /all` shows a municipal office PC: a wired NIC with a
    /// DHCP lease and IPv6 from the router, a Wi-Fi card that is down, a
    /// Hyper-V switch, the loopback, and Teredo.
    fn office_pc() -> Vec<Adapter> {
        let a = |s: &str| Address::new(s.parse().unwrap());
        vec![
            Adapter {
                friendly_name: "Ethernet".into(),
                description: "Intel(R) Ethernet Connection (7) I219-LM".into(),
                mac: vec![0x8c, 0x04, 0xba, 0x5e, 0x12, 0x7f],
                if_type: 6,
                up: true,
                addresses: vec![
                    ("fe80::3c1a:9b2e:77d0:4a11".parse().unwrap(), 64),
                    ("192.168.10.47".parse().unwrap(), 24),
                ],
                gateways: vec![
                    Address {
                        ip: "fe80::1".parse().unwrap(),
                        scope_id: 12,
                    },
                    a("192.168.10.1"),
                ],
                dns_servers: vec![a("fec0:0:0:ffff::1"), a("192.168.10.1"), a("8.8.8.8")],
                ipv4_metric: 25,
                ipv6_metric: 25,
            },
            Adapter {
                friendly_name: "Wi-Fi".into(),
                description: "Intel(R) Wi-Fi 6 AX201 160MHz".into(),
                mac: vec![0x3c, 0x58, 0xc2, 0x91, 0x0a, 0xe4],
                if_type: 71,
                up: false,
                dns_servers: vec![a("192.168.1.1")],
                gateways: vec![a("192.168.1.1")],
                ipv4_metric: 35,
                ..Default::default()
            },
            Adapter {
                friendly_name: "vEthernet (Default Switch)".into(),
                description: "Hyper-V Virtual Ethernet Adapter".into(),
                mac: vec![0x00, 0x15, 0x5d, 0x01, 0x02, 0x03],
                if_type: 6,
                up: true,
                addresses: vec![("172.27.160.1".parse().unwrap(), 20)],
                ipv4_metric: 5000,
                ..Default::default()
            },
            Adapter {
                friendly_name: "Loopback Pseudo-Interface 1".into(),
                description: "Software Loopback Interface 1".into(),
                if_type: 24,
                up: true,
                addresses: vec![("127.0.0.1".parse().unwrap(), 8)],
                ..Default::default()
            },
            Adapter {
                friendly_name: "Teredo Tunneling Pseudo-Interface".into(),
                description: "Microsoft Teredo Tunneling Adapter".into(),
                mac: vec![0, 0, 0, 0, 0, 0, 0, 0xe0],
                if_type: 131,
                up: true,
                ..Default::default()
            },
        ]
    }

    #[test]
    fn nics_have_their_mac_and_addresses() {
        let list = nics(&office_pc(), false);
        let names: Vec<&str> = list.items.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["Ethernet", "Wi-Fi", "vEthernet (Default Switch)"]);
        let eth = &list.items[0];
        assert_eq!(eth.mac.as_deref(), Some("8c:04:ba:5e:12:7f"));
        assert_eq!(
            eth.addresses,
            ["192.168.10.47/24", "fe80::3c1a:9b2e:77d0:4a11/64"]
        );
        let all = nics(&office_pc(), true);
        assert_eq!(all.items.len(), 5);
    }

    #[test]
    fn the_gateway_is_the_up_adapters_with_the_lowest_metric() {
        let gw = gateways(&office_pc());
        assert_eq!(gw.v4, Some(Address::new("192.168.10.1".parse().unwrap())));
        assert_eq!(
            gw.v6,
            Some(Address {
                ip: "fe80::1".parse().unwrap(),
                scope_id: 12
            })
        );
        assert_eq!(gateways(&[]), Gateways::default());
    }

    #[test]
    fn dns_servers_skip_windows_placeholders_and_down_adapters() {
        let dns: Vec<String> = dns_servers(&office_pc())
            .iter()
            .map(|a| a.ip.to_string())
            .collect();
        assert_eq!(dns, ["192.168.10.1", "8.8.8.8"]);
    }

    #[test]
    fn sockaddrs_decode_from_their_bytes() {
        // SOCKADDR_IN for 192.168.10.1:0.
        let v4 = [2, 0, 0, 0, 192, 168, 10, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            sockaddr(&v4),
            Some(Address::new("192.168.10.1".parse().unwrap()))
        );
        // SOCKADDR_IN6 for fe80::1%12.
        let mut v6 = vec![23, 0, 0, 0, 0, 0, 0, 0, 0xfe, 0x80];
        v6.extend_from_slice(&[0; 13]);
        v6.push(1);
        v6.extend_from_slice(&12u32.to_le_bytes());
        assert_eq!(
            sockaddr(&v6),
            Some(Address {
                ip: "fe80::1".parse().unwrap(),
                scope_id: 12
            })
        );
        assert_eq!(sockaddr(&[2, 0, 0]), None);
        assert_eq!(sockaddr(&[17, 0, 0, 0, 0, 0, 0, 0]), None);
    }
}
