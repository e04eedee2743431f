//! ICMP echo ("ping") with surge-ping. One socket per address family is
//! opened when the prober is made and shared by every probe.
//!
//! Linux lets unprivileged processes ping through "ping sockets" when their
//! group is inside `net.ipv4.ping_group_range`; otherwise a raw socket needs
//! `CAP_NET_RAW`. The prober tries the first, then the second, and when both
//! are refused it says why instead of failing: TCP and DNS probes do not
//! need either.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use surge_ping::{Client, Config, ICMP, PingIdentifier, PingSequence, SurgeError};
use tokio::task::JoinSet;

use crate::target::Address;

/// How one target is pinged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpSpec {
    /// Echo requests per target.
    pub count: u32,
    /// Pause between two requests to the same target.
    pub interval: Duration,
    /// How long each request waits for its reply.
    pub timeout: Duration,
}

impl IcmpSpec {
    /// The longest one probe with this spec can take.
    pub fn max_duration(&self) -> Duration {
        self.interval * self.count.saturating_sub(1) + self.timeout
    }
}

impl Default for IcmpSpec {
    fn default() -> Self {
        Self {
            count: 5,
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct IcmpOutcome {
    /// Requests sent (or attempted: a request the host could not send, e.g.
    /// for want of a route, counts as sent and lost).
    pub sent: u32,
    pub lost: u32,
    /// Round-trip times of the replies, in the order they were sent.
    pub rtts: Vec<Duration>,
    /// Why requests could not be sent at all, or the first send error.
    pub error: Option<String>,
}

/// Round-trip statistics, as `ping` prints them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RttStats {
    pub min: Duration,
    pub avg: Duration,
    pub max: Duration,
    /// Population standard deviation (ping's "mdev").
    pub stddev: Duration,
}

impl IcmpOutcome {
    pub fn stats(&self) -> Option<RttStats> {
        let n = self.rtts.len();
        if n == 0 {
            return None;
        }
        let secs: Vec<f64> = self.rtts.iter().map(Duration::as_secs_f64).collect();
        let avg = secs.iter().sum::<f64>() / n as f64;
        let var = secs.iter().map(|s| (s - avg).powi(2)).sum::<f64>() / n as f64;
        Some(RttStats {
            min: *self.rtts.iter().min()?,
            max: *self.rtts.iter().max()?,
            avg: Duration::from_secs_f64(avg),
            stddev: Duration::from_secs_f64(var.sqrt()),
        })
    }

    fn unavailable(reason: &str) -> Self {
        Self {
            error: Some(reason.to_owned()),
            ..Self::default()
        }
    }
}

/// Pings targets. Must be made inside a tokio runtime (each socket gets a
/// receive task).
pub struct IcmpProber {
    // Shared through `Arc`, never cloned: dropping any clone of a
    // surge-ping 0.8 `Client` marks its reply map destroyed for every
    // clone, and later pings fail at once.
    v4: Result<Arc<Client>, String>,
    v6: Result<Arc<Client>, String>,
}

impl IcmpProber {
    pub fn new() -> Self {
        Self {
            v4: open(ICMP::V4),
            v6: open(ICMP::V6),
        }
    }

    /// Why IPv4 ICMP cannot be used, if it cannot. (IPv6 alone can be
    /// missing on hosts without IPv6; that shows per target.)
    pub fn unavailable_reason(&self) -> Option<&str> {
        self.v4.as_ref().err().map(String::as_str)
    }

    /// Sends `spec.count` echo requests `spec.interval` apart and waits for
    /// each reply at most `spec.timeout`.
    pub async fn probe(&self, addr: Address, spec: &IcmpSpec) -> IcmpOutcome {
        let client = match addr.ip {
            IpAddr::V4(_) => &self.v4,
            IpAddr::V6(_) => &self.v6,
        };
        let client = match client {
            Ok(c) => Arc::clone(c),
            Err(reason) => return IcmpOutcome::unavailable(reason),
        };
        // Raw sockets see every echo reply on the host: a random identifier
        // keeps ours apart (ping sockets get one from the kernel instead).
        let ident = PingIdentifier(fastrand::u16(..));
        let first_seq = fastrand::u16(..);
        let mut pings = JoinSet::new();
        for i in 0..spec.count {
            let client = Arc::clone(&client);
            let spec = *spec;
            let seq = PingSequence(first_seq.wrapping_add(i as u16));
            pings.spawn(async move {
                tokio::time::sleep(spec.interval * i).await;
                let mut pinger = client.pinger(addr.ip, ident).await;
                pinger.scope_id(addr.scope_id).timeout(spec.timeout);
                (i, pinger.ping(seq, PAYLOAD).await)
            });
        }
        let mut outcome = IcmpOutcome {
            sent: spec.count,
            ..IcmpOutcome::default()
        };
        let mut replies = Vec::new();
        while let Some(joined) = pings.join_next().await {
            match joined {
                Ok((i, Ok((_, rtt)))) => replies.push((i, rtt)),
                Ok((_, Err(SurgeError::Timeout { .. }))) => outcome.lost += 1,
                Ok((_, Err(e))) => {
                    outcome.lost += 1;
                    outcome.error.get_or_insert_with(|| e.to_string());
                }
                Err(e) => {
                    outcome.lost += 1;
                    outcome.error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        replies.sort_by_key(|(i, _)| *i);
        outcome.rtts = replies.into_iter().map(|(_, rtt)| rtt).collect();
        outcome
    }
}

impl Default for IcmpProber {
    fn default() -> Self {
        Self::new()
    }
}

const PAYLOAD: &[u8] = b"campanile probe, campanile probe, campanile probe";

fn open(kind: ICMP) -> Result<Arc<Client>, String> {
    // Ping sockets first: they need no privilege when the group is allowed.
    let config = Config::builder()
        .kind(kind)
        .sock_type_hint(socket2::Type::DGRAM)
        .build();
    Client::new(&config).map(Arc::new).map_err(|e| {
        let family = match kind {
            ICMP::V4 => "IPv4",
            ICMP::V6 => "IPv6",
        };
        match e.kind() {
            std::io::ErrorKind::PermissionDenied => format!(
                "{family} ICMP not permitted ({e}): grant CAP_NET_RAW or put the agent's group in net.ipv4.ping_group_range"
            ),
            _ => format!("{family} ICMP unavailable: {e}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_match_ping_summary() {
        let ms = Duration::from_millis;
        let o = IcmpOutcome {
            sent: 4,
            lost: 1,
            rtts: vec![ms(10), ms(20), ms(30)],
            error: None,
        };
        let s = o.stats().unwrap();
        assert_eq!((s.min, s.max), (ms(10), ms(30)));
        assert!((s.avg.as_secs_f64() - 0.020).abs() < 1e-9);
        // sqrt(((10-20)^2 + 0 + (30-20)^2) / 3) ms
        assert!((s.stddev.as_secs_f64() - 0.008_164_965).abs() < 1e-6);
        assert_eq!(IcmpOutcome::default().stats(), None);
    }

    #[test]
    fn max_duration_covers_the_last_request() {
        let spec = IcmpSpec::default();
        assert_eq!(spec.max_duration(), Duration::from_millis(1800));
    }
}
