//! Network probes of one cycle: ICMP to the gateways, resolvers, collector
//! and configured targets; TCP connects; DNS queries; and the agentless
//! devices of the probe duty the collector gave this agent.
//!
//! Everything runs concurrently and is bounded by the config's timeouts, so
//! a cycle's probes take at most [`ProbeConfig::max_duration`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use campanile_probe::{Address, IcmpOutcome, IcmpProber, dns_query, resolve_host, tcp_connect};
use campanile_proto::v1::{DnsResult, IcmpResult, ProbeDuty, Probes, TcpResult};
use tokio::task::JoinSet;

use crate::config::ProbeConfig;
use crate::platform;

/// Who a result is for: an own target or a duty device.
#[derive(Debug, Clone)]
enum Owner {
    Target(String),
    Device(String),
}

pub struct Prober {
    cfg: ProbeConfig,
    collector_host: String,
    icmp: Arc<IcmpProber>,
    duty: ProbeDuty,
}

impl Prober {
    /// Opens the ICMP sockets (inside the tokio runtime). When ICMP is not
    /// permitted this logs one warning and the agent goes on without it.
    pub fn new(cfg: ProbeConfig, collector_host: String) -> Self {
        let icmp = IcmpProber::new();
        if let Some(reason) = icmp.unavailable_reason() {
            tracing::warn!(%reason, "ICMP probes unavailable; TCP and DNS probes still run");
        }
        Self {
            cfg,
            collector_host,
            icmp: Arc::new(icmp),
            duty: ProbeDuty::default(),
        }
    }

    /// Takes the duty the collector sent; devices over the configured cap
    /// are left out (and said so).
    pub fn set_duty(&mut self, mut duty: ProbeDuty) {
        if duty.devices.len() > self.cfg.max_duty_devices {
            tracing::warn!(
                devices = duty.devices.len(),
                max = self.cfg.max_duty_devices,
                "probe duty larger than probes.max_duty_devices; probing only the first"
            );
            duty.devices.truncate(self.cfg.max_duty_devices);
        }
        tracing::info!(devices = duty.devices.len(), "probe duty received");
        self.duty = duty;
    }

    pub fn duty_sha256(&self) -> Vec<u8> {
        self.duty.sha256.clone()
    }

    /// Runs every probe once.
    pub async fn run(&self) -> Probes {
        let mut probes = Probes {
            icmp_unavailable: self.icmp.unavailable_reason().map(str::to_owned),
            ..Probes::default()
        };
        let mut icmp_jobs: Vec<(Owner, Result<Address, String>)> = Vec::new();
        let mut tcp_jobs: Vec<(Owner, String, u16)> = Vec::new();
        if self.cfg.auto_gateway
            && let Some(gw) = platform::default_gateways()
        {
            for (name, addr) in [("gateway", gw.v4), ("gateway6", gw.v6)] {
                if let Some(a) = addr {
                    icmp_jobs.push((Owner::Target(name.into()), Ok(a)));
                }
            }
        }
        let resolvers = self.resolvers();
        if self.cfg.auto_dns {
            for (i, r) in resolvers.iter().enumerate() {
                icmp_jobs.push((Owner::Target(format!("dns{}", i + 1)), Ok(*r)));
            }
        }
        if self.cfg.auto_collector {
            icmp_jobs.push((
                Owner::Target("collector".into()),
                resolve_host(&self.collector_host).await,
            ));
        }
        for t in &self.cfg.icmp_targets {
            icmp_jobs.push((
                Owner::Target(t.name.clone()),
                resolve_host(&t.address).await,
            ));
        }
        for t in &self.cfg.tcp_targets {
            tcp_jobs.push((Owner::Target(t.name.clone()), t.host.clone(), t.port));
        }
        for d in &self.duty.devices {
            let owner = Owner::Device(d.device.clone());
            match d.tcp_port.and_then(|p| u16::try_from(p).ok()) {
                Some(port) => tcp_jobs.push((owner, d.address.clone(), port)),
                None => icmp_jobs.push((owner, resolve_host(&d.address).await)),
            }
        }

        let (icmp, tcp, dns) = tokio::join!(
            self.run_icmp(icmp_jobs),
            self.run_tcp(tcp_jobs),
            self.run_dns(&resolvers)
        );
        probes.icmp = icmp;
        probes.tcp = tcp;
        probes.dns = dns;
        probes
    }

    fn resolvers(&self) -> Vec<Address> {
        if !self.cfg.dns_resolvers.is_empty() {
            return self
                .cfg
                .dns_resolvers
                .iter()
                .map(|s| Address::new(s.ip()))
                .collect();
        }
        platform::dns_resolvers().unwrap_or_default()
    }

    /// Pings each distinct address once, however many targets share it (the
    /// gateway is often the resolver and the site router too).
    async fn run_icmp(&self, jobs: Vec<(Owner, Result<Address, String>)>) -> Vec<IcmpResult> {
        if self.icmp.unavailable_reason().is_some() {
            // Not lost packets: nothing was sent. The reason travels in
            // `icmp_unavailable`.
            return Vec::new();
        }
        let mut pings = JoinSet::new();
        let mut seen = HashMap::new();
        for (_, addr) in &jobs {
            if let Ok(a) = addr
                && seen.insert(*a, None::<IcmpOutcome>).is_none()
            {
                let prober = self.icmp.clone();
                let spec = self.cfg.icmp;
                let a = *a;
                pings.spawn(async move { (a, prober.probe(a, &spec).await) });
            }
        }
        while let Some(Ok((a, outcome))) = pings.join_next().await {
            seen.insert(a, Some(outcome));
        }
        jobs.into_iter()
            .map(|(owner, addr)| {
                let mut r = IcmpResult::default();
                set_owner(&owner, &mut r.target, &mut r.device);
                match addr {
                    Err(e) => r.error = Some(e),
                    Ok(a) => {
                        r.address = a.to_string();
                        if let Some(Some(o)) = seen.get(&a) {
                            r.sent = o.sent;
                            r.lost = o.lost;
                            r.error.clone_from(&o.error);
                            if let Some(s) = o.stats() {
                                r.rtt_min_seconds = Some(s.min.as_secs_f64());
                                r.rtt_avg_seconds = Some(s.avg.as_secs_f64());
                                r.rtt_max_seconds = Some(s.max.as_secs_f64());
                                r.rtt_stddev_seconds = Some(s.stddev.as_secs_f64());
                            }
                        }
                    }
                }
                r
            })
            .collect()
    }

    async fn run_tcp(&self, jobs: Vec<(Owner, String, u16)>) -> Vec<TcpResult> {
        let mut set = JoinSet::new();
        for (i, (_, host, port)) in jobs.iter().enumerate() {
            let (host, port, timeout) = (host.clone(), *port, self.cfg.tcp_timeout);
            set.spawn(async move {
                let addr = match resolve_host(&host).await {
                    Ok(a) => a,
                    Err(e) => return (i, format!("{host}:{port}"), None, Some(e)),
                };
                let mut sa = SocketAddr::new(addr.ip, port);
                if let SocketAddr::V6(v6) = &mut sa {
                    v6.set_scope_id(addr.scope_id);
                }
                (
                    i,
                    sa.to_string(),
                    Some(tcp_connect(sa, timeout).await),
                    None,
                )
            });
        }
        let mut out: Vec<Option<TcpResult>> = vec![None; jobs.len()];
        while let Some(Ok((i, address, outcome, err))) = set.join_next().await {
            let mut r = TcpResult {
                address,
                ..TcpResult::default()
            };
            set_owner(&jobs[i].0, &mut r.target, &mut r.device);
            match outcome {
                Some(o) => {
                    r.success = o.success;
                    r.seconds = o.elapsed.as_secs_f64();
                    r.error = o.error;
                }
                None => r.error = err,
            }
            out[i] = Some(r);
        }
        out.into_iter().flatten().collect()
    }

    async fn run_dns(&self, resolvers: &[Address]) -> Vec<DnsResult> {
        let mut set = JoinSet::new();
        for (i, t) in self.cfg.dns_targets.iter().enumerate() {
            let resolver = t.resolver.or_else(|| {
                resolvers.first().map(|a| {
                    let mut sa = SocketAddr::new(a.ip, 53);
                    if let SocketAddr::V6(v6) = &mut sa {
                        v6.set_scope_id(a.scope_id);
                    }
                    sa
                })
            });
            let (name, query, ipv6, timeout) = (
                t.name.clone(),
                t.query.clone(),
                t.ipv6,
                self.cfg.dns_timeout,
            );
            set.spawn(async move {
                let mut r = DnsResult {
                    target: name,
                    name: query.clone(),
                    ..DnsResult::default()
                };
                match resolver {
                    None => r.error = Some("no resolver configured or found".into()),
                    Some(resolver) => {
                        r.resolver = resolver.to_string();
                        let o = dns_query(&query, ipv6, resolver, timeout).await;
                        r.success = o.success;
                        r.seconds = o.elapsed.as_secs_f64();
                        r.error = o.error;
                    }
                }
                (i, r)
            });
        }
        let mut out: Vec<(usize, DnsResult)> = Vec::new();
        while let Some(Ok(r)) = set.join_next().await {
            out.push(r);
        }
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, r)| r).collect()
    }
}

fn set_owner(owner: &Owner, target: &mut String, device: &mut String) {
    match owner {
        Owner::Target(t) => target.clone_from(t),
        Owner::Device(d) => device.clone_from(d),
    }
}
