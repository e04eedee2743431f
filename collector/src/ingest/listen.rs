//! Listening sockets with a backlog sized for a territory.
//!
//! `TcpListener::bind` (tokio, mio, std alike) listens with a backlog of
//! 128. Every agent report may open a connection (idle ones are closed
//! beyond a few thousand agents), and after a collector restart every agent
//! reconnects at once: a queue of 128 overflows as soon as the accept loop
//! falls a fraction of a second behind, the kernel drops the SYN and the
//! agent waits a full second for its retransmission. At 50,000 simulated
//! agents that was the whole of the report latency's tail.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Binds `addr` and listens with `backlog` pending connections (Linux caps
/// it at `net.core.somaxconn`).
pub async fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted collector rebinds its port
    // while the old connections sit in TIME_WAIT. (On Windows it would let
    // another process take the port, so not there.)
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Connections the test opens while nothing accepts them: more than the
    /// default backlog of 128.
    const BURST: usize = 400;

    #[tokio::test]
    async fn queues_a_burst_of_connections_beyond_the_default_backlog() {
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4096);
        assert!(
            somaxconn > BURST,
            "net.core.somaxconn is {somaxconn}: the kernel would cap any backlog below the burst"
        );
        let listener = bind("127.0.0.1:0".parse().unwrap(), 1024).await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Nothing accepts: every connection must wait in the queue. Beyond
        // the backlog the kernel drops the SYN and connect() hangs in
        // retransmissions (1 s, 3 s, 7 s, ...) for far longer than this.
        let mut connects = tokio::task::JoinSet::new();
        for _ in 0..BURST {
            connects.spawn(tokio::time::timeout(
                Duration::from_secs(10),
                tokio::net::TcpStream::connect(addr),
            ));
        }
        let mut streams = Vec::new();
        while let Some(done) = connects.join_next().await {
            if let Ok(Ok(stream)) = done.unwrap() {
                streams.push(stream);
            }
        }
        assert_eq!(streams.len(), BURST, "connections completed while queued");
        // And they are all there to be accepted.
        for _ in 0..BURST {
            tokio::time::timeout(Duration::from_secs(10), listener.accept())
                .await
                .expect("queued connection")
                .unwrap();
        }
    }
}
