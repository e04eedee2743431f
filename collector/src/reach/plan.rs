//! The probe plan, recomputed every `probes.plan_refresh_secs` (from a
//! scrape's snapshot when one came, see [`super::Reach::plan_due`]) from the
//! territory view: which site each host counts for, and which agents of a
//! site probe its agentless devices.
//!
//! Duty goes to at most `duty_agents_per_site` agents per site, chosen
//! among the hosts that are up and run probes, by rendezvous hashing of
//! (site, host): the choice stays put while those hosts stay up, and when
//! one goes away only its share moves.

use std::collections::HashMap;
use std::sync::Arc;

use campanile_proto::v1::{DeviceProbe, ProbeDuty};
use prost::Message;

use campanile_territory::evaluate::{Presence, View};
use campanile_territory::host::HostState;
use campanile_territory::register::{Device, Register};

#[derive(Debug, Default)]
pub struct Plan {
    site_of: HashMap<String, String>,
    duty: HashMap<String, Arc<ProbeDuty>>,
}

impl Plan {
    pub fn compute(
        register: &Register,
        view: &View,
        hosts: &[Arc<HostState>],
        per_site: usize,
    ) -> Self {
        let probing: HashMap<&str, bool> = hosts
            .iter()
            .map(|h| (h.host_id.as_str(), h.probes.is_some()))
            .collect();
        let mut site_of = HashMap::with_capacity(view.hosts.len());
        let mut candidates: HashMap<&str, Vec<&str>> = HashMap::new();
        for h in &view.hosts {
            site_of.insert(h.host_id.clone(), h.site.clone());
            if h.presence == Presence::Up && probing.get(h.host_id.as_str()) == Some(&true) {
                candidates.entry(&h.site).or_default().push(&h.host_id);
            }
        }
        let mut devices: HashMap<&str, Vec<&Device>> = HashMap::new();
        for d in &register.devices {
            devices.entry(&d.site).or_default().push(d);
        }
        let mut duty = HashMap::new();
        for (site, site_devices) in devices {
            let Some(hosts) = candidates.get_mut(site) else {
                continue;
            };
            hosts.sort_by_cached_key(|h| rendezvous(site, h));
            let d = Arc::new(duty_for(&site_devices));
            for h in hosts.iter().take(per_site) {
                duty.insert((*h).to_owned(), d.clone());
            }
        }
        Self { site_of, duty }
    }

    /// The host's site by the register (when the view last saw it).
    pub fn site_of(&self, host_id: &str) -> Option<&str> {
        self.site_of.get(host_id).map(String::as_str)
    }

    pub fn duty_of(&self, host_id: &str) -> Option<&ProbeDuty> {
        self.duty.get(host_id).map(Arc::as_ref)
    }

    /// What the ack must carry for a host that holds the duty `held_sha256`:
    /// its planned duty when it holds another, an empty duty to drop one
    /// it should no longer hold, nothing when it is up to date.
    pub fn directive(&self, host_id: &str, held_sha256: &[u8]) -> Option<ProbeDuty> {
        match self.duty.get(host_id) {
            Some(d) if d.sha256 != held_sha256 => Some(d.as_ref().clone()),
            Some(_) => None,
            None if !held_sha256.is_empty() => Some(ProbeDuty::default()),
            None => None,
        }
    }
}

fn rendezvous(site: &str, host: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(site.as_bytes());
    ctx.update(&[0]);
    ctx.update(host.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The duty for a site's devices; its hash covers the encoded device list,
/// so any change to a device (address, port) is a new duty.
fn duty_for(devices: &[&Device]) -> ProbeDuty {
    let mut duty = ProbeDuty {
        sha256: Vec::new(),
        devices: devices
            .iter()
            .map(|d| DeviceProbe {
                device: d.id.clone(),
                address: d.address.clone(),
                tcp_port: d.tcp_port.map(u32::from),
            })
            .collect(),
    };
    duty.sha256 = ring::digest::digest(&ring::digest::SHA256, &duty.encode_to_vec())
        .as_ref()
        .to_vec();
    duty
}

#[cfg(test)]
mod tests {
    use super::*;
    use campanile_territory::config::TerritoryConfig;
    use campanile_territory::eol::EolCatalog;
    use campanile_territory::evaluate::evaluate;

    const NOW: i64 = 1_790_000_000_000;

    fn register(devices: &str) -> Register {
        let text = format!(
            "[[comune]]\nistat_code = \"999001\"\nname = \"Alfa\"\n\
             [[site]]\nid = \"a\"\ncomune = \"999001\"\nname = \"A\"\n\
             [[site]]\nid = \"b\"\ncomune = \"999001\"\nname = \"B\"\n{devices}"
        );
        Register::parse(&text, "test").unwrap()
    }

    const DEVICES: &str = "[[device]]\nid = \"router-a\"\nsite = \"a\"\naddress = \"192.0.2.1\"\n\
                           [[device]]\nid = \"switch-a\"\nsite = \"a\"\naddress = \"192.0.2.2\"\n";

    fn plan(reg: &Register, hosts: &[(&str, &str, bool)], per_site: usize) -> Plan {
        let hosts: Vec<Arc<HostState>> = hosts
            .iter()
            .map(|(h, site, probing)| {
                Arc::new(HostState {
                    probes: probing.then(Default::default),
                    ..HostState::reported(h, site, NOW)
                })
            })
            .collect();
        let view = evaluate(
            reg,
            &EolCatalog::embedded(),
            &TerritoryConfig::default(),
            &hosts,
            NOW,
        );
        Plan::compute(reg, &view, &hosts, per_site)
    }

    #[test]
    fn gives_duty_to_a_bounded_stable_set_of_probing_hosts_of_the_site() {
        let reg = register(DEVICES);
        let hosts = [
            ("a1", "a", true),
            ("a2", "a", true),
            ("a3", "a", true),
            ("a4", "a", false),
            ("b1", "b", true),
        ];
        let p = plan(&reg, &hosts, 2);
        let on_duty: Vec<&str> = ["a1", "a2", "a3", "a4", "b1"]
            .into_iter()
            .filter(|h| p.duty_of(h).is_some())
            .collect();
        assert_eq!(on_duty.len(), 2, "{on_duty:?}");
        assert!(
            !on_duty.contains(&"a4"),
            "a host without probes gets no duty"
        );
        assert!(!on_duty.contains(&"b1"), "site b has no devices");
        assert_eq!(p.duty_of(on_duty[0]).unwrap().devices.len(), 2);
        assert_eq!(p.site_of("b1"), Some("b"));

        // The same inputs give the same choice; losing a host not on duty
        // moves nothing.
        let off_duty = ["a1", "a2", "a3"]
            .into_iter()
            .find(|h| !on_duty.contains(h))
            .unwrap();
        let fewer: Vec<_> = hosts
            .iter()
            .copied()
            .filter(|(h, _, _)| *h != off_duty)
            .collect();
        let again = plan(&reg, &fewer, 2);
        for h in &on_duty {
            assert!(again.duty_of(h).is_some(), "{h} kept its duty");
        }
    }

    #[test]
    fn sends_duty_only_when_the_agent_holds_another() {
        let reg = register(DEVICES);
        let p = plan(&reg, &[("a1", "a", true)], 1);
        let d = p.directive("a1", &[]).expect("new duty");
        assert_eq!(d.devices[0].device, "router-a");
        assert_eq!(p.directive("a1", &d.sha256), None);
        // A host no longer on duty is told to drop what it holds.
        let cleared = p.directive("zz", &d.sha256).expect("clear");
        assert!(cleared.devices.is_empty() && cleared.sha256.is_empty());
        assert_eq!(p.directive("zz", &[]), None);
        // Changing a device changes the hash.
        let p2 = plan(
            &register(&DEVICES.replace("192.0.2.2", "192.0.2.3")),
            &[("a1", "a", true)],
            1,
        );
        assert!(p2.directive("a1", &d.sha256).is_some());
    }
}
