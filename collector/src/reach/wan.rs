//! The centre's view of each comune's line: every `probes.wan.interval_secs`
//! the collector probes the WAN address the register gives for a site
//! (ICMP echo, or a TCP connect where ICMP is filtered).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use campanile_probe::{IcmpProber, tcp_connect};

use crate::reach::config::WanMethod;

/// The latest probe of one site's WAN address, and its running counters.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WanSite {
    pub address: IpAddr,
    pub up: bool,
    pub rtt_seconds: Option<f64>,
    pub error: Option<String>,
    pub probed_at_ms: i64,
    /// Echo requests (or connects) sent and lost since the collector started.
    pub packets_sent_total: u64,
    pub packets_lost_total: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct WanState {
    pub enabled: bool,
    /// Why ICMP cannot be used by the collector, when it cannot.
    pub icmp_unavailable: Option<String>,
    pub sites: BTreeMap<String, WanSite>,
}

impl WanState {
    /// Up or down by the latest probe; `None` when not probed (yet).
    pub fn site_up(&self, site: &str) -> Option<bool> {
        self.sites.get(site).map(|s| s.up)
    }
}

/// (sent, lost, rtt, error) of one probe.
pub async fn probe(
    icmp: Option<&IcmpProber>,
    method: &WanMethod,
    address: IpAddr,
) -> (u32, u32, Option<f64>, Option<String>) {
    match (method, icmp) {
        (WanMethod::Icmp(spec), Some(p)) => {
            let o = p.probe(address.into(), spec).await;
            let rtt = o.stats().map(|s| s.avg.as_secs_f64());
            (o.sent, o.lost, rtt, o.error)
        }
        (WanMethod::Tcp { port, timeout }, _) => {
            let o = tcp_connect(SocketAddr::new(address, *port), *timeout).await;
            let rtt = o.success.then_some(o.elapsed.as_secs_f64());
            (1, u32::from(!o.success), rtt, o.error)
        }
        (WanMethod::Icmp(_), None) => (0, 0, None, Some("ICMP unavailable".into())),
    }
}
