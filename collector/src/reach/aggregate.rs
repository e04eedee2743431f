//! What the agents' latest probes say, per site and target and per device.
//! Only hosts that are up count: a silent host's last results are old news.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;

use campanile_territory::evaluate::{Presence, View};
use campanile_territory::host::HostState;
use campanile_territory::register::Register;

/// The latest cycle of one target across the up hosts of one site.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TargetSummary {
    /// Up hosts whose latest report has a result for the target.
    pub hosts: u32,
    /// Of those, the ones whose probe succeeded (a reply, a connection, an
    /// answer).
    pub succeeded: u32,
    /// ICMP only: requests sent and lost in the latest cycle.
    pub packets_sent: u64,
    pub packets_lost: u64,
    rtt_sum: f64,
    rtt_n: u32,
}

impl TargetSummary {
    pub fn loss_ratio(&self) -> Option<f64> {
        (self.packets_sent > 0).then(|| self.packets_lost as f64 / self.packets_sent as f64)
    }

    /// Mean over the hosts that got through: ICMP average RTT, TCP connect
    /// time, DNS answer time.
    pub fn rtt_seconds(&self) -> Option<f64> {
        (self.rtt_n > 0).then(|| self.rtt_sum / f64::from(self.rtt_n))
    }

    pub fn success_ratio(&self) -> Option<f64> {
        (self.hosts > 0).then(|| f64::from(self.succeeded) / f64::from(self.hosts))
    }

    fn add(&mut self, success: bool, rtt: Option<f64>) {
        self.hosts += 1;
        if success {
            self.succeeded += 1;
            if let Some(r) = rtt {
                self.rtt_sum += r;
                self.rtt_n += 1;
            }
        }
    }
}

/// One agentless device from the register and what its probers found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceSummary {
    pub device: String,
    pub site: String,
    pub kind: String,
    pub address: String,
    /// Up agents whose latest report probed the device.
    pub agents: u32,
    /// Reached by at least one of them; `None` when none probed it.
    pub up: Option<bool>,
    /// The best round trip (or connect time) among those that reached it.
    pub rtt_seconds: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SiteProbes {
    /// (site, target) → the latest cycle.
    pub targets: BTreeMap<(String, String), TargetSummary>,
    pub devices: Vec<DeviceSummary>,
    /// Up hosts per site that cannot send ICMP.
    pub icmp_unavailable: BTreeMap<String, u32>,
}

pub fn aggregate(
    view: &View,
    hosts: &[Arc<HostState>],
    register: &Register,
    targets: &BTreeSet<String>,
    now_ms: i64,
) -> SiteProbes {
    let sites: HashMap<&str, &str> = view
        .hosts
        .iter()
        .filter(|h| h.presence == Presence::Up)
        .map(|h| (h.host_id.as_str(), h.site.as_str()))
        .collect();
    let mut out = SiteProbes::default();
    // device id → (agents, reached, best rtt)
    let mut seen: HashMap<&str, (u32, bool, Option<f64>)> = HashMap::new();
    for h in hosts {
        let (Some(site), Some(p)) = (sites.get(h.host_id.as_str()), &h.probes) else {
            continue;
        };
        if !h.is_up(now_ms) {
            continue;
        }
        if p.icmp_unavailable.is_some() {
            *out.icmp_unavailable.entry((*site).to_owned()).or_default() += 1;
        }
        for r in &p.icmp {
            let success = r.lost < r.sent;
            if r.device.is_empty() {
                if let Some(t) = entry(&mut out.targets, targets, site, &r.target) {
                    t.packets_sent += u64::from(r.sent);
                    t.packets_lost += u64::from(r.lost);
                    t.add(success, r.rtt_avg_seconds);
                }
            } else {
                note(&mut seen, &r.device, success, r.rtt_avg_seconds);
            }
        }
        for r in &p.tcp {
            let rtt = Some(r.seconds);
            if r.device.is_empty() {
                if let Some(t) = entry(&mut out.targets, targets, site, &r.target) {
                    t.add(r.success, rtt);
                }
            } else {
                note(&mut seen, &r.device, r.success, rtt);
            }
        }
        for r in &p.dns {
            if let Some(t) = entry(&mut out.targets, targets, site, &r.target) {
                t.add(r.success, Some(r.seconds));
            }
        }
    }
    out.devices = register
        .devices
        .iter()
        .map(|d| {
            let (agents, reached, rtt) =
                seen.get(d.id.as_str()).copied().unwrap_or((0, false, None));
            DeviceSummary {
                device: d.id.clone(),
                site: d.site.clone(),
                kind: d.kind.clone(),
                address: d.address.clone(),
                agents,
                up: (agents > 0).then_some(reached),
                rtt_seconds: rtt,
            }
        })
        .collect();
    out
}

/// The summary of a counted target; `None` for names not in `probes.targets`.
fn entry<'a>(
    summaries: &'a mut BTreeMap<(String, String), TargetSummary>,
    targets: &BTreeSet<String>,
    site: &str,
    name: &str,
) -> Option<&'a mut TargetSummary> {
    targets.contains(name).then(|| {
        summaries
            .entry((site.to_owned(), name.to_owned()))
            .or_default()
    })
}

fn note<'a>(
    seen: &mut HashMap<&'a str, (u32, bool, Option<f64>)>,
    device: &'a str,
    success: bool,
    rtt: Option<f64>,
) {
    let e = seen.entry(device).or_insert((0, false, None));
    e.0 += 1;
    if success {
        e.1 = true;
        if let Some(r) = rtt {
            e.2 = Some(e.2.map_or(r, |best: f64| best.min(r)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reach::config::ProbesConfig;
    use campanile_proto::v1::{IcmpResult, Probes, TcpResult};
    use campanile_territory::config::TerritoryConfig;
    use campanile_territory::eol::EolCatalog;
    use campanile_territory::evaluate::evaluate;

    const NOW: i64 = 1_790_000_000_000;

    fn icmp(target: &str, device: &str, sent: u32, lost: u32) -> IcmpResult {
        IcmpResult {
            target: target.into(),
            device: device.into(),
            sent,
            lost,
            rtt_avg_seconds: (lost < sent).then_some(0.010),
            ..Default::default()
        }
    }

    #[test]
    fn a_device_is_up_if_any_agent_reaches_it_and_targets_sum_per_site() {
        let register = Register::parse(
            "[[comune]]\nistat_code = \"999001\"\nname = \"Alfa\"\n\
             [[site]]\nid = \"a\"\ncomune = \"999001\"\nname = \"A\"\n\
             [[device]]\nid = \"router\"\nsite = \"a\"\naddress = \"192.0.2.1\"\n\
             [[device]]\nid = \"printer\"\nsite = \"a\"\naddress = \"192.0.2.2\"\n\
             [[device]]\nid = \"switch\"\nsite = \"a\"\naddress = \"192.0.2.3\"\n",
            "t",
        )
        .unwrap();
        let host = |id: &str, probes: Probes, last: i64| HostState {
            probes: Some(probes),
            ..HostState::reported(id, "a", last)
        };
        let hosts = [
            host(
                "a1",
                Probes {
                    icmp: vec![
                        icmp("gateway", "", 5, 0),
                        icmp("", "router", 5, 5),
                        icmp("bogus", "", 5, 5),
                    ],
                    tcp: vec![TcpResult {
                        device: "printer".into(),
                        success: false,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                NOW,
            ),
            host(
                "a2",
                Probes {
                    icmp_unavailable: Some("no CAP_NET_RAW".into()),
                    icmp: vec![icmp("gateway", "", 5, 2), icmp("", "router", 5, 0)],
                    ..Default::default()
                },
                NOW,
            ),
            // Silent for an hour: its results are old news.
            host(
                "a3",
                Probes {
                    icmp: vec![icmp("", "switch", 5, 0)],
                    ..Default::default()
                },
                NOW - 3_600_000,
            ),
        ]
        .map(Arc::new);
        let view = evaluate(
            &register,
            &EolCatalog::embedded(),
            &TerritoryConfig::default(),
            &hosts,
            NOW,
        );
        let s = aggregate(
            &view,
            &hosts,
            &register,
            &ProbesConfig::default().targets,
            NOW,
        );
        let dev = |id: &str| s.devices.iter().find(|d| d.device == id).unwrap();
        assert_eq!((dev("router").agents, dev("router").up), (2, Some(true)));
        assert_eq!((dev("printer").agents, dev("printer").up), (1, Some(false)));
        assert_eq!((dev("switch").agents, dev("switch").up), (0, None));
        let gw = &s.targets[&("a".to_owned(), "gateway".to_owned())];
        assert_eq!(
            (gw.hosts, gw.succeeded, gw.packets_sent, gw.packets_lost),
            (2, 2, 10, 2)
        );
        assert_eq!(gw.loss_ratio(), Some(0.2));
        assert!(
            !s.targets
                .contains_key(&("a".to_owned(), "bogus".to_owned())),
            "not in probes.targets"
        );
        assert_eq!(s.icmp_unavailable.get("a"), Some(&1));
    }
}
