//! Group commit: one thread owns the store's writer and commits whatever
//! requests are waiting in one transaction, so a burst of agents (a
//! territory coming back after an outage) pays one fsync per group instead
//! of one per request. A request waits for no timer: when the queue is
//! empty a lone request commits at once.
//!
//! Each caller gets its own outcome, and only after the transaction that
//! holds its reports has committed, so an ack always means "on disk".

use std::sync::Arc;
use std::time::Instant;

use campanile_proto::identity::HostIdentity;
use campanile_proto::v1::{AgentStats, Report};
use tokio::sync::{mpsc, oneshot};

use crate::store::checkpoint;
use crate::store::{IngestJob, IngestOutcome, ProbeCounting, Store, StoreError};
use crate::telemetry::Telemetry;
use campanile_territory::host::PeerFacts;

/// Requests waiting for the committer; beyond this, callers wait to enqueue
/// (back-pressure on the gRPC handlers rather than unbounded memory).
const QUEUE_REQUESTS: usize = 1024;

/// One validated Deliver request, owned, for the committer thread.
pub struct Request {
    pub identity: HostIdentity,
    pub reports: Vec<Report>,
    pub agent_stats: Option<AgentStats>,
    pub received_ms: i64,
    /// The site its probe figures count for.
    pub site: String,
    pub peer: PeerFacts,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the committer has stopped (collector shutting down)")]
    Stopped,
}

type Job = (Request, oneshot::Sender<Result<IngestOutcome, StoreError>>);

#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Job>,
}

/// The committer thread; [`CommitterThread::join`] waits until every
/// request already handed over is committed.
pub struct CommitterThread {
    handle: std::thread::JoinHandle<()>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
}

impl CommitterThread {
    /// Blocks until the committer has drained its queue and stopped: call it
    /// once every [`Committer`] handle is dropped (the gRPC server has
    /// finished its in-flight requests).
    pub fn join(self) {
        if self.handle.join().is_err() {
            tracing::error!("committer thread panicked");
        }
        // The committer dropped its nudge on the way out: this is the last
        // checkpoint.
        if let Some(checkpointer) = self.checkpointer
            && checkpointer.join().is_err()
        {
            tracing::error!("checkpoint thread panicked");
        }
    }
}

impl Committer {
    /// Starts the committer thread. At most `max_group_reports` reports go
    /// in one transaction (a request is never split); 1 gives one
    /// transaction per request, for comparison.
    pub fn start(
        store: Arc<Store>,
        targets: Arc<std::collections::BTreeSet<String>>,
        telemetry: Arc<Telemetry>,
        max_group_reports: usize,
    ) -> (Self, CommitterThread) {
        let (tx, rx) = mpsc::channel(QUEUE_REQUESTS);
        // The thread first: until autocheckpoint is off, commits still
        // checkpoint themselves, so either failure only costs slower tails.
        let (nudge, checkpointer) = match checkpoint::start(store.clone(), telemetry.clone()) {
            Ok((nudge, handle)) => {
                if let Err(error) = store.hand_checkpoints_over() {
                    tracing::warn!(%error, "commits keep checkpointing the WAL themselves");
                }
                (Some(nudge), Some(handle))
            }
            Err(error) => {
                tracing::warn!(%error, "no checkpoint thread; commits checkpoint the WAL themselves");
                (None, None)
            }
        };
        let handle = std::thread::Builder::new()
            .name("campanile-commit".into())
            .spawn(move || {
                run(
                    rx,
                    &store,
                    &targets,
                    &telemetry,
                    max_group_reports.max(1),
                    nudge,
                )
            })
            .expect("spawn committer thread");
        (
            Self { tx },
            CommitterThread {
                handle,
                checkpointer,
            },
        )
    }

    /// Hands a request over and waits until it is committed (or failed).
    pub async fn commit(&self, request: Request) -> Result<IngestOutcome, CommitError> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send((request, reply))
            .await
            .map_err(|_| CommitError::Stopped)?;
        Ok(wait.await.map_err(|_| CommitError::Stopped)??)
    }
}

fn run(
    mut rx: mpsc::Receiver<Job>,
    store: &Store,
    targets: &std::collections::BTreeSet<String>,
    telemetry: &Telemetry,
    max_group_reports: usize,
    nudge: Option<checkpoint::Nudge>,
) {
    // Ends when every sender is gone and the queue is empty: requests
    // accepted before a shutdown are still committed.
    while let Some(first) = rx.blocking_recv() {
        let mut reports = first.0.reports.len();
        let mut group = vec![first];
        while reports < max_group_reports {
            match rx.try_recv() {
                Ok(job) => {
                    reports += job.0.reports.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let jobs: Vec<IngestJob<'_>> = group
            .iter()
            .map(|(r, _)| IngestJob {
                identity: &r.identity,
                reports: &r.reports,
                agent_stats: r.agent_stats.as_ref(),
                received_ms: r.received_ms,
                counting: ProbeCounting {
                    site: &r.site,
                    targets,
                },
                peer: r.peer,
            })
            .collect();
        let results = store.ingest_group(&jobs);
        drop(jobs);
        telemetry
            .commit_duration
            .observe(started.elapsed().as_secs_f64());
        telemetry.commit_reports.observe(reports as f64);
        if let Some(nudge) = &nudge {
            nudge.committed();
        }
        match results {
            Ok(results) => {
                for ((_, reply), result) in group.into_iter().zip(results) {
                    // A caller that went away (client cancelled) will
                    // resend; its reports are committed and deduplicated.
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, requests = group.len(), "group commit failed; nothing of it stored");
                for (_, reply) in group {
                    let _ = reply.send(Err(e.clone_for_caller()));
                }
            }
        }
        // After the answers, so no acknowledgement waits for it.
        match store.restart_wal_if_wanted() {
            Ok(Some(restarted)) => tracing::debug!(restarted, "WAL restart"),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot restart the WAL; retrying after the next checkpoint")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use campanile_proto::v1::Health;

    use super::*;

    #[tokio::test]
    async fn a_stopped_committer_leaves_every_commit_in_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Arc::new(Store::open(&path).unwrap());
        let (committer, thread) = Committer::start(
            store.clone(),
            Arc::new(Default::default()),
            Arc::new(Telemetry::new()),
            100,
        );
        for n in 0..20 {
            let request = Request {
                identity: HostIdentity::new(&format!("pc-{n}"), "s").unwrap(),
                reports: vec![Report {
                    host_id: format!("pc-{n}"),
                    epoch: 1,
                    seq: 1,
                    collected_at_ms: 1_000,
                    interval_secs: 60,
                    health: Some(Health::default()),
                    ..Default::default()
                }],
                agent_stats: None,
                received_ms: 1_000,
                site: "s".into(),
                peer: PeerFacts::default(),
            };
            committer.commit(request).await.unwrap();
        }
        drop(committer);
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .unwrap();
        // The database file alone, without its WAL, as a checkpoint left it.
        let copy = dir.path().join("copy.db");
        std::fs::copy(&path, &copy).unwrap();
        let hosts: i64 = rusqlite::Connection::open(&copy)
            .unwrap()
            .query_row("SELECT count(*) FROM hosts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(hosts, 20);
        drop(store);
    }
}
