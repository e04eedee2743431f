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
    Ok(GrpcConfig {
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
