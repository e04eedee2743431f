//! Campanile network probes, shared by the agent (its own links, probe duty)
//! and the collector (each site's WAN address, seen from the centre).
//!
//! Every probe is bounded in time by its spec and never fails as a whole:
//! what went wrong is part of the outcome, so one bad target never hides
//! the others.

pub mod dns;
pub mod icmp;
pub mod target;
pub mod tcp;

pub use dns::{DnsOutcome, dns_query};
pub use icmp::{IcmpOutcome, IcmpProber, IcmpSpec, RttStats};
pub use target::{Address, parse_address, resolve_host};
pub use tcp::{TcpOutcome, tcp_connect};

/// Probe target names become label values on the collector: short, lower
/// case, no spaces. Agent and collector config both hold to this.
pub fn valid_target_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}
