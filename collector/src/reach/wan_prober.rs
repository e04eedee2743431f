//! The task that probes every site's WAN address from the centre.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use campanile_probe::IcmpProber;
use campanile_territory::state::Territory;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::clock::now_ms;
use crate::reach::config::{WanConfig, WanMethod};
use crate::reach::state::Reach;
use crate::reach::wan::{WanSite, WanState, probe};

/// Probes every site's WAN address each interval until shutdown. The first
/// round starts at once.
pub fn spawn(
    reach: Arc<Reach>,
    territory: Arc<Territory>,
    cfg: WanConfig,
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
