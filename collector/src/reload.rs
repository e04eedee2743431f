//! Reloads the territory's register and catalog on SIGHUP and when either
//! file changes on disk (checked every `territory.reload_check_secs`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use campanile_territory::state::Territory;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::now_ms;

/// Reloads on SIGHUP and when the files change (checked every
/// `reload_check_secs`), until `shutdown` turns true.
pub fn watch(territory: Arc<Territory>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    let every = Duration::from_secs(territory.config().reload_check_secs);
    let paths: Vec<PathBuf> = [
        &territory.config().register_path,
        &territory.config().eol_catalog_path,
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect();
    // Registered before returning: a SIGHUP that arrives once the collector
    // has started is handled, never the default action (terminate).
    let mut hup = hangup();
    tokio::spawn(async move {
        // The first check one period after start: the files were just read.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
                _ = tick.tick(), if !paths.is_empty() => {
                    let t = territory.clone();
                    let _ = tokio::task::spawn_blocking(move || t.reload_if_changed(now_ms())).await;
                }
                _ = next_hangup(&mut hup) => {
                    tracing::info!("SIGHUP: reloading the territory register");
                    let t = territory.clone();
                    let _ = tokio::task::spawn_blocking(move || t.reload(now_ms())).await;
                }
            }
        }
    })
}

#[cfg(unix)]
pub(crate) type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
pub(crate) type Hangup = ();

#[cfg(unix)]
pub(crate) fn hangup() -> Hangup {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; files reload when they change only");
            None
        }
    }
}

#[cfg(not(unix))]
pub(crate) fn hangup() -> Hangup {}

#[cfg(unix)]
pub(crate) async fn next_hangup(h: &mut Hangup) {
    match h {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
pub(crate) async fn next_hangup(_: &mut Hangup) {
    std::future::pending().await
}
