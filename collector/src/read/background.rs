//! Work that can wait for the reports: scrapes, API reads, alert
//! evaluation and probe planning evaluate the whole territory over every
//! host, which at 50,000 hosts keeps a core busy for a second or more.
//! On a small collector host that second was taken from the TLS handshakes
//! and reports in flight, and most of the report latency's tail fell while
//! a scrape was served.
//!
//! These readers run on threads of their own at a lower scheduling
//! priority (nice +10): when the host has CPU to spare they run as fast as
//! before, when it does not, reports go first and the scrape takes longer.
//! The committer, which every report waits for, keeps the normal priority,
//! and so does anything a report waits on: the readers share no lock with
//! ingest (they read through the store's own reader connection).

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// How far below normal the readers run (nice +10: about a tenth of a core
/// they contend for, all of an idle one).
pub const NICE: i32 = 10;

/// Readers that may run at once: a scrape does not wait behind an API
/// request; more would only hold more snapshots in memory.
const THREADS: usize = 2;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug, thiserror::Error)]
pub enum BackgroundError {
    #[error("background reader panicked: {0}")]
    Panicked(String),
    #[error("background readers stopped")]
    Stopped,
}

/// The background readers; cloning shares them.
#[derive(Clone)]
pub struct Background {
    jobs: mpsc::Sender<Job>,
}

impl Background {
    /// Starts the reader threads. They end when the last handle is dropped.
    pub fn start() -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..THREADS {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("campanile-read-{n}"))
                .spawn(move || {
                    lower_this_threads_priority();
                    loop {
                        // The lock is held only while waiting for a job, not
                        // while running it.
                        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(mpsc::RecvError) => return,
                        }
                    }
                })?;
        }
        Ok(Self { jobs })
    }

    /// Runs `f` on a reader thread and waits for its result without
    /// blocking the async threads. A panic in `f` is returned as an error;
    /// the thread goes on serving.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, BackgroundError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let out = std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
                p.downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into())
            });
            let _ = tx.send(out);
        });
        self.jobs.send(job).map_err(|_| BackgroundError::Stopped)?;
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(message)) => Err(BackgroundError::Panicked(message)),
            Err(_) => Err(BackgroundError::Stopped),
        }
    }
}

/// Lowers the calling thread's priority by [`NICE`]. On Linux the nice
/// value belongs to each thread; elsewhere (where the collector is not
/// deployed) the readers keep the normal priority.
pub fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority takes plain integers and touches no memory of
        // ours; `who = 0` with PRIO_PROCESS means the calling thread on
        // Linux, where each thread has its own nice value (setpriority(2),
        // NOTES). Raising one's own nice value needs no privilege.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, NICE) };
        if rc != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "cannot lower a background thread's priority; scrapes compete with reports"
            );
        }
    }
}

/// This thread's nice value (Linux), for tests.
#[cfg(all(test, target_os = "linux"))]
fn this_threads_nice() -> i32 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // Field 19 (nice) counted after the command name's closing parenthesis.
    let rest = stat.rsplit_once(')').unwrap().1;
    rest.split_whitespace().nth(16).unwrap().parse().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_below_normal_priority_and_survives_a_panic() {
        let bg = Background::start().unwrap();
        #[cfg(target_os = "linux")]
        {
            let base = this_threads_nice();
            let there = bg.run(this_threads_nice).await.unwrap();
            assert_eq!(there, (base + NICE).min(19), "the reader's nice value");
        }
        let e = bg.run(|| panic!("boom")).await.unwrap_err();
        assert!(e.to_string().contains("boom"), "{e}");
        // Both threads still serve after the panic.
        let (a, b) = tokio::join!(bg.run(|| 1 + 1), bg.run(|| 2 + 2));
        assert_eq!((a.unwrap(), b.unwrap()), (2, 4));
    }
}
