//! Reloads the gRPC port's certificates without a restart: on SIGHUP, and
//! when one of the files changes (looked at every [`EVERY`]). A renewed
//! server certificate, a CA added to the bundle or a new signing key take
//! effect for the next handshake; connections open keep theirs. Files
//! that do not load leave what is in force, with a warning and
//! `campanile_tls_reloads_total{result="failed"}`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::enroll::Enroller;
use crate::ingest::config::TlsConfig;
use crate::ingest::tls::{LiveConfig, TlsError, server_config};
use crate::revocation::Revoked;
use crate::telemetry::Telemetry;

/// How often the files are looked at.
pub const EVERY: Duration = Duration::from_secs(10);

/// What the server config is built of.
pub struct TlsInputs {
    pub tls: TlsConfig,
    pub enrollment: bool,
    pub revoked: Arc<Revoked>,
}

impl TlsInputs {
    pub fn build(&self) -> Result<rustls::ServerConfig, TlsError> {
        server_config(
            &self.tls.ca_cert_path,
            &self.tls.cert_path,
            &self.tls.key_path,
            self.tls.session_resumption,
            self.enrollment,
            self.revoked.clone(),
        )
    }

    /// The server certificate's expiry, for its gauge.
    pub fn server_not_after(&self) -> Option<i64> {
        let pem = std::fs::read(&self.tls.cert_path).ok()?;
        let block = x509_parser::pem::parse_x509_pem(&pem).ok()?.1;
        let cert = block.parse_x509().ok()?;
        Some(cert.validity().not_after.timestamp())
    }
}

/// Length and modification time of each file: a change in either is a
/// change of the file (an editor's or a renewal's rename included).
fn stamps(paths: &[PathBuf]) -> Vec<Option<(u64, SystemTime)>> {
    paths
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.len(), m.modified().ok()?))
        })
        .collect()
}

/// Reloads on SIGHUP and on a change of the files, until `shutdown`
/// turns true. `enroller`'s signing CA and bundle are read again with
/// the rest.
pub fn spawn(
    inputs: TlsInputs,
    live: Arc<LiveConfig>,
    enroller: Option<Arc<Enroller>>,
    signing_key: Option<PathBuf>,
    telemetry: Arc<Telemetry>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let inputs = Arc::new(inputs);
    let files: Vec<PathBuf> = [
        inputs.tls.ca_cert_path.clone(),
        inputs.tls.cert_path.clone(),
        inputs.tls.key_path.clone(),
    ]
    .into_iter()
    .chain(signing_key)
    .collect();
    if let Some(t) = inputs.server_not_after() {
        telemetry.server_certificate_expiry.set(t);
    }
    let mut hup = crate::reload::hangup();
    tokio::spawn(async move {
        let mut seen = stamps(&files);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let why = tokio::select! {
                () = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
                _ = tick.tick() => {
                    let now = stamps(&files);
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    "changed"
                }
                _ = crate::reload::next_hangup(&mut hup) => "SIGHUP",
            };
            let (inputs, live, enroller, telemetry) = (
                inputs.clone(),
                live.clone(),
                enroller.clone(),
                telemetry.clone(),
            );
            let _ = tokio::task::spawn_blocking(move || {
                reload(&inputs, &live, enroller.as_deref(), &telemetry, why)
            })
            .await;
        }
    })
}

fn reload(
    inputs: &TlsInputs,
    live: &LiveConfig,
    enroller: Option<&Enroller>,
    telemetry: &Telemetry,
    why: &'static str,
) {
    let result = inputs.build().map_err(|e| e.to_string()).and_then(|cfg| {
        // The signer first: a bundle whose CA the key is not is refused
        // before the handshakes trust it.
        if let Some(e) = enroller {
            e.reload().map_err(|e| e.to_string())?;
        }
        live.replace(cfg);
        Ok(())
    });
    match result {
        Ok(()) => {
            let not_after = inputs.server_not_after();
            if let Some(t) = not_after {
                telemetry.server_certificate_expiry.set(t);
            }
            telemetry.tls_reloads.with_label_values(&["ok"]).inc();
            tracing::info!(
                why,
                server_certificate_not_after = not_after,
                "certificates reloaded"
            );
        }
        Err(error) => {
            telemetry.tls_reloads.with_label_values(&["failed"]).inc();
            tracing::warn!(why, %error, "certificates not reloaded; those in force stay");
        }
    }
}
