//! Where a connection comes from, as the defences against floods count it.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// The source a connection is counted against: its IPv4 address, or the
/// /64 prefix of its IPv6 address. One IPv6 host is given a whole /64 and
/// may pick any address in it, so counting single addresses would let one
/// host appear as 2^64 sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey(IpAddr);

impl SourceKey {
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self(addr),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                // A dual-stack socket sees IPv4 peers as ::ffff:a.b.c.d.
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Self(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SourceKey {
        SourceKey::of(s.parse().unwrap())
    }

    #[test]
    fn an_ipv6_host_counts_as_its_slash_64() {
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff:1:2:3"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("2001:db8:1:2::99").to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn an_ipv4_peer_is_the_same_source_on_a_dual_stack_socket() {
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
    }
}
