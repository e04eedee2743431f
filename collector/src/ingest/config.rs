//! `[grpc]` and `[tls]`: where agents connect and how, parsed
//! ([`RawGrpc`], [`RawTls`]) then validated ([`validate_grpc`],
//! [`validate_tls`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use campanile_proto::config::ConfigError;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrpc {
    listen_addr: String,
    #[serde(default = "default_max_message_bytes")]
    max_message_bytes: usize,
    #[serde(default = "default_handshake_timeout_secs")]
    handshake_timeout_secs: u64,
    /// 0: connections stay open as long as the agents keep them.
    #[serde(default)]
    idle_timeout_secs: u64,
    #[serde(default = "default_listen_backlog")]
    listen_backlog: u32,
    #[serde(default = "default_max_handshakes_in_progress")]
    max_handshakes_in_progress: usize,
    #[serde(default = "default_client_hello_timeout_ms")]
    client_hello_timeout_ms: u64,
    #[serde(default = "default_max_connections_per_source")]
    max_connections_per_source: usize,
    #[serde(default = "default_max_unauthenticated_connections")]
    max_unauthenticated_connections: usize,
    #[serde(default = "default_max_handshakes_per_source")]
    max_handshakes_per_source: usize,
    #[serde(default = "default_true")]
    prioritize_known_sources: bool,
    #[serde(default = "default_known_source_ttl_secs")]
    known_source_ttl_secs: u64,
    #[serde(default = "default_max_streams_per_connection")]
    max_streams_per_connection: u32,
    #[serde(default = "default_request_body_timeout_secs")]
    request_body_timeout_secs: u64,
    /// Default: twice max_message_bytes.
    #[serde(default)]
    max_connection_buffer_bytes: Option<usize>,
    #[serde(default = "default_max_connections_per_identity")]
    max_connections_per_identity: usize,
    #[serde(default = "default_max_inflight_request_bytes")]
    max_inflight_request_bytes: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    ca_cert_path: PathBuf,
    cert_path: PathBuf,
    key_path: PathBuf,
    #[serde(default = "default_session_resumption")]
    session_resumption: bool,
}

fn default_max_message_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_handshake_timeout_secs() -> u64 {
    10
}
fn default_listen_backlog() -> u32 {
    4096
}
fn default_max_handshakes_in_progress() -> usize {
    256
}
fn default_session_resumption() -> bool {
    true
}
fn default_true() -> bool {
    true
}
/// An agent sends its ClientHello (one or two segments) as soon as TCP is
/// up; 3 s leaves room for a retransmission on a lossy rural link.
fn default_client_hello_timeout_ms() -> u64 {
    3000
}
/// A comune's PCs share its one public address: a burst of them after a
/// restart is well below this, and a connection lasts here only until
/// its handshake ends.
fn default_max_connections_per_source() -> usize {
    256
}
fn default_max_unauthenticated_connections() -> usize {
    16_384
}
fn default_max_handshakes_per_source() -> usize {
    64
}
fn default_known_source_ttl_secs() -> u64 {
    86_400
}
/// An agent sends one request at a time; the rest is headroom.
fn default_max_streams_per_connection() -> u32 {
    4
}
/// A full inventory of 4 MiB at 1 Mbit/s takes 34 s.
fn default_request_body_timeout_secs() -> u64 {
    60
}
/// An agent's connection is replaced when it reconnects before the old
/// one is seen dead; a third is not the agent's.
fn default_max_connections_per_identity() -> usize {
    2
}
fn default_max_inflight_request_bytes() -> usize {
    256 * 1024 * 1024
}
/// Validated `[grpc]`.
#[derive(Debug, Clone)]
pub struct GrpcConfig {
    pub listen: SocketAddr,
    pub max_message_bytes: usize,
    pub handshake_timeout: Duration,
    /// Close an agent connection once no byte has crossed it for this
    /// long and no request is waiting for its answer; `None` keeps
    /// connections open.
    pub idle_timeout: Option<Duration>,
    /// Connections the kernel queues before the collector accepts them.
    pub listen_backlog: u32,
    /// TLS handshakes run at once; connections beyond wait their turn.
    pub max_handshakes_in_progress: usize,
    /// A connection whose whole ClientHello has not come by then is closed.
    pub client_hello_timeout: Duration,
    /// Connections not yet authenticated, per source and in all.
    pub max_connections_per_source: usize,
    pub max_unauthenticated_connections: usize,
    /// Handshakes one source runs at once.
    pub max_handshakes_per_source: usize,
    /// How long a source that presented a verified certificate goes first
    /// for a handshake slot; `None`: none goes first.
    pub known_source_ttl: Option<Duration>,
    /// HTTP/2 streams one connection may have open at once.
    pub max_streams_per_connection: u32,
    /// A request whose body has not all come this long after its headers
    /// is reset.
    pub request_body_timeout: Duration,
    /// Request bytes one connection's unanswered requests may hold.
    pub max_connection_buffer_bytes: usize,
    /// Connections one certificate identity may hold; a new one replaces
    /// the oldest.
    pub max_connections_per_identity: usize,
    /// Request bytes all unanswered requests may hold together.
    pub max_inflight_request_bytes: usize,
}

/// Validated `[tls]`, its paths resolved.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub ca_cert_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// TLS 1.3 session tickets (false: every connection makes a full
    /// handshake).
    pub session_resumption: bool,
}

/// Validates `[grpc]`; `invalid` makes the error that names the field.
pub fn validate_grpc(
    raw: RawGrpc,
    invalid: &impl Fn(&'static str, String) -> ConfigError,
) -> Result<GrpcConfig, ConfigError> {
    let listen = raw.listen_addr.parse::<SocketAddr>().map_err(|e| {
        invalid(
            "grpc.listen_addr",
            format!("{:?} is not an ip:port address ({e})", raw.listen_addr),
        )
    })?;
    if raw.max_message_bytes < 64 * 1024 {
        return Err(invalid(
            "grpc.max_message_bytes",
            "must be at least 65536".into(),
        ));
    }
    if raw.handshake_timeout_secs == 0 {
        return Err(invalid(
            "grpc.handshake_timeout_secs",
            "must be positive".into(),
        ));
    }
    if !(128..=65_535).contains(&raw.listen_backlog) {
        return Err(invalid(
            "grpc.listen_backlog",
            format!(
                "{} is out of range: 128 to 65535 (the kernel caps it at net.core.somaxconn)",
                raw.listen_backlog
            ),
        ));
    }
    // The upper end keeps the semaphore below its maximum of permits
    // (tokio panics past it), far beyond any open-files limit.
    if !(1..=1_000_000).contains(&raw.max_handshakes_in_progress) {
        return Err(invalid(
            "grpc.max_handshakes_in_progress",
            format!(
                "{} is out of range: 1 to 1000000 (0 would refuse every connection)",
                raw.max_handshakes_in_progress
            ),
        ));
    }
    if raw.client_hello_timeout_ms == 0 {
        return Err(invalid(
            "grpc.client_hello_timeout_ms",
            "must be positive".into(),
        ));
    }
    for (field, value) in [
        (
            "grpc.max_connections_per_source",
            raw.max_connections_per_source,
        ),
        (
            "grpc.max_unauthenticated_connections",
            raw.max_unauthenticated_connections,
        ),
        (
            "grpc.max_handshakes_per_source",
            raw.max_handshakes_per_source,
        ),
        (
            "grpc.max_streams_per_connection",
            raw.max_streams_per_connection as usize,
        ),
        (
            "grpc.max_connections_per_identity",
            raw.max_connections_per_identity,
        ),
    ] {
        if value == 0 {
            return Err(invalid(
                field,
                "must be positive (0 would refuse every agent)".into(),
            ));
        }
    }
    if raw.request_body_timeout_secs == 0 {
        return Err(invalid(
            "grpc.request_body_timeout_secs",
            "must be positive".into(),
        ));
    }
    let max_connection_buffer_bytes = raw
        .max_connection_buffer_bytes
        .unwrap_or(raw.max_message_bytes.saturating_mul(2));
    if max_connection_buffer_bytes < raw.max_message_bytes {
        return Err(invalid(
            "grpc.max_connection_buffer_bytes",
            format!(
                "{max_connection_buffer_bytes} is below grpc.max_message_bytes ({}): \
                 no message of the largest size could arrive",
                raw.max_message_bytes
            ),
        ));
    }
    if raw.max_inflight_request_bytes < max_connection_buffer_bytes {
        return Err(invalid(
            "grpc.max_inflight_request_bytes",
            format!(
                "{} is below one connection's buffer ({max_connection_buffer_bytes} bytes)",
                raw.max_inflight_request_bytes
            ),
        ));
    }
    Ok(GrpcConfig {
        client_hello_timeout: Duration::from_millis(raw.client_hello_timeout_ms),
        max_connections_per_source: raw.max_connections_per_source,
        max_unauthenticated_connections: raw.max_unauthenticated_connections,
        max_handshakes_per_source: raw.max_handshakes_per_source,
        known_source_ttl: (raw.prioritize_known_sources && raw.known_source_ttl_secs > 0)
            .then(|| Duration::from_secs(raw.known_source_ttl_secs)),
        max_streams_per_connection: raw.max_streams_per_connection,
        request_body_timeout: Duration::from_secs(raw.request_body_timeout_secs),
        max_connection_buffer_bytes,
        max_connections_per_identity: raw.max_connections_per_identity,
        max_inflight_request_bytes: raw.max_inflight_request_bytes,
        listen,
        max_message_bytes: raw.max_message_bytes,
        handshake_timeout: Duration::from_secs(raw.handshake_timeout_secs),
        idle_timeout: (raw.idle_timeout_secs > 0)
            .then(|| Duration::from_secs(raw.idle_timeout_secs)),
        listen_backlog: raw.listen_backlog,
        max_handshakes_in_progress: raw.max_handshakes_in_progress,
    })
}

/// Resolves `[tls]`'s paths against `base`.
pub fn validate_tls(raw: RawTls, base: &Path) -> TlsConfig {
    TlsConfig {
        ca_cert_path: base.join(raw.ca_cert_path),
        cert_path: base.join(raw.cert_path),
        key_path: base.join(raw.key_path),
        session_resumption: raw.session_resumption,
    }
}
