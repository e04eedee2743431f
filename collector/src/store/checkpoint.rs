//! WAL checkpoints off the commit path. Left to SQLite, the commit that
//! grows the WAL past 1000 pages also copies the WAL back into the
//! database and fsyncs it, and every request in that group waits for it:
//! at 50,000 agents that was the tail of the report latency. Here a thread
//! of its own checkpoints (passively: writers and readers go on) at most
//! once per [`PERIOD`] while commits arrive, and once more when the
//! committer stops. A checkpoint that finds the WAL long asks the
//! committer to copy the rest between two groups, so that the WAL starts
//! over ([`Store::restart_wal_if_wanted`]): commits land during every
//! checkpoint, and without that the WAL never would.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use crate::store::Store;
use crate::telemetry::Telemetry;

/// At 1,000 reports/s a second of WAL is a few thousand pages: copied in
/// one go, well before the WAL file grows large.
const PERIOD: Duration = Duration::from_secs(1);

/// Tells the checkpointer that a commit has grown the WAL; never blocks.
pub struct Nudge(SyncSender<()>);

impl Nudge {
    pub fn committed(&self) {
        // Full: a nudge is already waiting, which is all it needs; gone: the
        // checkpointer has stopped, and commits are ending too.
        let _ = self.0.try_send(());
    }
}

/// Starts the checkpointer. It stops once the [`Nudge`] is dropped, after
/// a last checkpoint.
pub fn start(
    store: Arc<Store>,
    telemetry: Arc<Telemetry>,
) -> std::io::Result<(Nudge, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let handle = std::thread::Builder::new()
        .name("campanile-checkpoint".into())
        .spawn(move || run(&rx, &store, &telemetry))?;
    Ok((Nudge(tx), handle))
}

fn run(rx: &Receiver<()>, store: &Store, telemetry: &Telemetry) {
    let mut last = Instant::now();
    let mut stopping = false;
    while !stopping {
        if rx.recv().is_err() {
            stopping = true;
        }
        // Lets commits accumulate up to PERIOD since the last checkpoint,
        // but not past the committer's end.
        while !stopping {
            let Some(left) = (last + PERIOD).checked_duration_since(Instant::now()) else {
                break;
            };
            match rx.recv_timeout(left) {
                Ok(()) => {}
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => stopping = true,
            }
        }
        last = Instant::now();
        match store.checkpoint() {
            Ok(done) => {
                telemetry
                    .checkpoint_duration
                    .observe(last.elapsed().as_secs_f64());
                tracing::trace!(
                    wal_pages = done.wal_pages,
                    copied_pages = done.copied_pages,
                    "checkpoint"
                );
            }
            // Nothing is lost: the WAL holds what was committed, and the
            // next checkpoint copies it. A full disk shows here first.
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; retrying at the next commit")
            }
        }
    }
}
