//! The centre's view of each comune's line: every `probes.wan.interval_secs`
//! the collector probes the WAN address the register gives for a site
//! (ICMP echo, or a TCP connect where ICMP is filtered).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use campanile_probe::{IcmpProber, tcp_connect};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::reach::config::{WanConfig, WanMethod};
use campanile_territory::state::Territory;

use super::Reach;

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

/// Probes every site's WAN address each interval until shutdown. The first
/// round starts at once.
pub fn spawn(
    reach: Arc<Reach>,
    territory: Arc<Territory>,
    cfg: WanConfig,
    now_ms: fn() -> i64,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let icmp = match cfg.method {
            WanMethod::Icmp(_) => {
                let p = IcmpProber::new();
                if let Some(reason) = p.unavailable_reason() {
                    tracing::warn!(%reason, "WAN probes by ICMP unavailable: sites' lines are not probed from the centre (or set probes.wan.method = \"tcp\")");
                }
                Some(Arc::new(p))
            }
            WanMethod::Tcp { .. } => None,
        };
        let limit = Arc::new(Semaphore::new(cfg.max_concurrent));
        let mut ticker = tokio::time::interval(cfg.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = ticker.tick() => {}
            }
            let register = territory.current().register.clone();
            let targets: Vec<(String, IpAddr)> = register
                .sites
                .iter()
                .filter_map(|s| s.wan_address.map(|a| (s.id.clone(), a)))
                .collect();
            let previous = reach.wan();
            let mut state = WanState {
                enabled: true,
                icmp_unavailable: icmp
                    .as_ref()
                    .and_then(|p| p.unavailable_reason().map(str::to_owned)),
                sites: BTreeMap::new(),
            };
            if state.icmp_unavailable.is_some() {
                reach.set_wan(state);
                continue;
            }
            let mut probes = JoinSet::new();
            for (site, address) in targets {
                let (icmp, method, limit) = (icmp.clone(), cfg.method.clone(), limit.clone());
                probes.spawn(async move {
                    let _permit = limit.acquire_owned().await;
                    let r = probe(icmp.as_deref(), &method, address).await;
                    (site, address, r)
                });
            }
            while let Some(joined) = probes.join_next().await {
                let Ok((site, address, (sent, lost, rtt, error))) = joined else {
                    continue;
                };
                // Counters continue only while the address stays the same.
                let (sent_total, lost_total) = match previous.sites.get(&site) {
                    Some(p) if p.address == address => (p.packets_sent_total, p.packets_lost_total),
                    _ => (0, 0),
                };
                let up = lost < sent;
                if !up {
                    tracing::debug!(%site, %address, ?error, "WAN address unreachable from the centre");
                }
                state.sites.insert(
                    site,
                    WanSite {
                        address,
                        up,
                        rtt_seconds: rtt,
                        error,
                        probed_at_ms: now_ms(),
                        packets_sent_total: sent_total + u64::from(sent),
                        packets_lost_total: lost_total + u64::from(lost),
                    },
                );
            }
            reach.set_wan(state);
        }
    })
}

/// (sent, lost, rtt, error) of one probe.
async fn probe(
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
