//! DNS resolution probe: one A (or AAAA) query to one resolver over UDP.
//! The probe asks the resolver directly, not the system stub, so it tells
//! which resolver is failing.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use simple_dns::{CLASS, Name, Packet, PacketFlag, QCLASS, QTYPE, Question, RCODE, TYPE};

#[derive(Debug, Clone, PartialEq)]
pub struct DnsOutcome {
    /// The resolver answered NOERROR with at least one answer record.
    pub success: bool,
    pub elapsed: Duration,
    pub answers: u32,
    pub error: Option<String>,
}

impl DnsOutcome {
    fn failed(elapsed: Duration, error: String) -> Self {
        Self {
            success: false,
            elapsed,
            answers: 0,
            error: Some(error),
        }
    }
}

/// Asks `resolver` for the A record of `name` (AAAA when `ipv6`).
pub async fn dns_query(
    name: &str,
    ipv6: bool,
    resolver: SocketAddr,
    timeout: Duration,
) -> DnsOutcome {
    let start = Instant::now();
    match tokio::time::timeout(timeout, query(name, ipv6, resolver)).await {
        Ok(Ok(outcome)) => outcome(start.elapsed()),
        Ok(Err(e)) => DnsOutcome::failed(start.elapsed(), e),
        Err(_) => DnsOutcome::failed(
            start.elapsed(),
            format!(
                "no answer from {resolver} within {} ms",
                timeout.as_millis()
            ),
        ),
    }
}

async fn query(
    name: &str,
    ipv6: bool,
    resolver: SocketAddr,
) -> Result<impl FnOnce(Duration) -> DnsOutcome, String> {
    let id: u16 = fastrand::u16(..);
    let mut packet = Packet::new_query(id);
    packet.set_flags(PacketFlag::RECURSION_DESIRED);
    let qname = Name::new(name).map_err(|e| format!("invalid name {name:?}: {e}"))?;
    let qtype = if ipv6 { TYPE::AAAA } else { TYPE::A };
    packet.questions.push(Question::new(
        qname,
        QTYPE::TYPE(qtype),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    let bytes = packet
        .build_bytes_vec()
        .map_err(|e| format!("cannot build a query for {name:?}: {e}"))?;
    let bind: SocketAddr = match resolver.ip() {
        IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    socket
        .connect(resolver)
        .await
        .map_err(|e| format!("cannot reach {resolver}: {e}"))?;
    socket
        .send(&bytes)
        .await
        .map_err(|e| format!("cannot send to {resolver}: {e}"))?;
    let mut buf = vec![0u8; 4096];
    loop {
        // A refused port comes back as an error here (ICMP port unreachable).
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|e| format!("{resolver}: {e}"))?;
        // Stray or spoofed datagrams with another id are not our answer.
        let Ok(reply) = Packet::parse(&buf[..n]) else {
            continue;
        };
        if reply.id() != id {
            continue;
        }
        let rcode = reply.rcode();
        let answers = reply
            .answers
            .iter()
            .filter(|rr| matches!(rr.rdata.type_code(), TYPE::A | TYPE::AAAA))
            .count();
        let answers = u32::try_from(answers).unwrap_or(u32::MAX);
        return Ok(move |elapsed| {
            let error = match rcode {
                RCODE::NoError if answers > 0 => None,
                RCODE::NoError => Some("no address in the answer".to_owned()),
                RCODE::NameError => Some("NXDOMAIN".to_owned()),
                other => Some(format!("resolver answered {other:?}")),
            };
            DnsOutcome {
                success: error.is_none(),
                elapsed,
                answers,
                error,
            }
        });
    }
}
