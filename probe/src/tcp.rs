//! TCP connect probe: can a service be reached, and how long does the
//! three-way handshake take.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub struct TcpOutcome {
    pub success: bool,
    /// Time to connect (success) or to fail.
    pub elapsed: Duration,
    pub error: Option<String>,
}

/// Connects and closes at once. A refused port fails as soon as the RST
/// arrives; a silent one fails at `timeout`.
pub async fn tcp_connect(addr: SocketAddr, timeout: Duration) -> TcpOutcome {
    let start = Instant::now();
    let result = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await;
    let elapsed = start.elapsed();
    match result {
        Ok(Ok(_stream)) => TcpOutcome {
            success: true,
            elapsed,
            error: None,
        },
        Ok(Err(e)) => TcpOutcome {
            success: false,
            elapsed,
            error: Some(e.to_string()),
        },
        Err(_) => TcpOutcome {
            success: false,
            elapsed,
            error: Some(format!("no answer within {} ms", timeout.as_millis())),
        },
    }
}
