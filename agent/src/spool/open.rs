//! Opening the spool file: redb's own recovery, a full checksum pass, and
//! setting aside a file too damaged to open. Used at start and again after
//! an I/O error, when redb refuses every operation until it is reopened.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::{Database, DatabaseError, ReadableTable, ReadableTableMetadata, StorageError};

use super::counters::Counters;
use super::error::SpoolError;
use super::reserve::ReservedFile;
use super::schema::{BYTES, CACHE_BYTES, EPOCH, META, NEXT_SEQ, REPORTS};

/// What the file held when it was opened.
pub(super) struct Loaded {
    /// No epoch was committed yet: a new file, or one set aside.
    pub fresh: bool,
    /// The file was damaged and set aside: a new one was started.
    pub reset: bool,
    pub epoch: u64,
    pub next_seq: u64,
    pub len: u64,
    pub bytes: u64,
    pub counters: Counters,
}

/// Opens `path`, setting it aside as `<path>.damaged` and starting a new
/// file if redb cannot open it as a database; only "in use" and I/O errors
/// (a full disk, a missing directory) are returned.
pub(super) fn load(path: &Path) -> Result<(Database, Loaded), SpoolError> {
    match open_db(path) {
        Ok(ok) => Ok(ok),
        Err(Opened::Fatal(e)) => Err(e),
        Err(Opened::Damaged(message)) => {
            let aside = set_aside(path)?;
            tracing::error!(spool = %path.display(), moved_to = %aside.display(), %message,
                "spool file damaged beyond repair: set aside, starting a new spool; its unsent reports are lost");
            match open_db(path) {
                Ok((db, mut loaded)) => {
                    loaded.reset = true;
                    Ok((db, loaded))
                }
                Err(Opened::Fatal(e)) => Err(e),
                Err(Opened::Damaged(message)) => Err(SpoolError::Storage {
                    path: path.to_owned(),
                    message,
                }),
            }
        }
    }
}

fn open_db(path: &Path) -> Result<(Database, Loaded), Opened> {
    // redb asserts on some damage it finds while opening (a file cut
    // short by a full disk, say) instead of returning an error. That
    // must not stop the agent: a panic while opening means "damaged".
    // Unwinding is sound here: nothing outlives the closure but what it
    // returns, and the file handle and lock are released on unwind
    // (the release profile must keep panic = "unwind").
    // A new file goes through redb's recovery path too: only an
    // existing one is worth a warning.
    let existed = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
    let repaired = Arc::new(AtomicBool::new(false));
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let flag = repaired.clone();
        let mut db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            // Called (repeatedly, with progress) when the last shutdown
            // was not clean: redb verifies checksums and rolls back an
            // interrupted commit.
            .set_repair_callback(move |_| flag.store(true, Ordering::Relaxed))
            .create_with_backend(reserved(path)?)
            .map_err(|e| classify_open(path, e))?;
        if existed && repaired.load(Ordering::Relaxed) {
            tracing::warn!(spool = %path.display(),
                "spool was not closed cleanly (agent killed, power cut or I/O error): verified, interrupted commit rolled back");
        }
        // The file may also have been damaged after a clean shutdown
        // (bad sector, another program): verify every checksum once
        // per open, so damage is found here and not mid-run.
        match db.check_integrity() {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(spool = %path.display(), "spool damage found and repaired")
            }
            Err(e) => return Err(classify_open(path, e)),
        }
        let loaded = Loaded::read(&db).map_err(|e| match e {
            // Reading the tables commits them on a new file: on a full
            // disk that fails, which is not damage.
            ReadError::Io(error) => Opened::Fatal(SpoolError::Io {
                path: path.to_owned(),
                error,
            }),
            ReadError::Other(message) => Opened::Damaged(message),
        })?;
        Ok((db, loaded))
    }));
    opened.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "redb panicked".into());
        Err(Opened::Damaged(message))
    })
}

/// The file, opened as redb's `create` opens it, with its space reserved
/// as it grows.
fn reserved(path: &Path) -> Result<ReservedFile, Opened> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|error| {
            Opened::Fatal(SpoolError::Io {
                path: path.to_owned(),
                error,
            })
        })?;
    ReservedFile::new(file).map_err(|e| classify_open(path, e))
}

enum ReadError {
    Io(std::io::Error),
    Other(String),
}

fn rd(e: impl Into<redb::Error>) -> ReadError {
    match e.into() {
        redb::Error::Io(error) => ReadError::Io(error),
        other => ReadError::Other(other.to_string()),
    }
}

impl Loaded {
    /// Reads the numbering and counters; a spool whose tables do not read
    /// back is damaged.
    fn read(db: &Database) -> Result<Self, ReadError> {
        let tx = db.begin_write().map_err(rd)?;
        let loaded = {
            let meta = tx.open_table(META).map_err(rd)?;
            let reports = tx.open_table(REPORTS).map_err(rd)?;
            let get = |k: &str| -> Result<Option<u64>, ReadError> {
                Ok(meta.get(k).map_err(rd)?.map(|v| v.value()))
            };
            let len = reports.len().map_err(rd)?;
            let last = reports.last().map_err(rd)?.map(|(k, _)| k.value());
            let epoch = get(EPOCH)?;
            if epoch.is_none() && len > 0 {
                return Err(ReadError::Other("reports without an epoch".into()));
            }
            let mut counters = [0u64; 6];
            for (slot, k) in counters.iter_mut().zip(Counters::KEYS) {
                *slot = get(k)?.unwrap_or(0);
            }
            Self {
                fresh: epoch.is_none(),
                reset: false,
                // Zero means "none" on the wire: never draw it.
                epoch: epoch.unwrap_or_else(|| fastrand::u64(1..)),
                // Never reuse a number, even if the meta row lagged behind.
                next_seq: get(NEXT_SEQ)?.unwrap_or(1).max(last.map_or(1, |l| l + 1)),
                len,
                bytes: get(BYTES)?.unwrap_or(0),
                counters: Counters::from_values(counters),
            }
        };
        // Creates the tables on a new file, so readers always find them.
        tx.commit().map_err(rd)?;
        Ok(loaded)
    }
}

enum Opened {
    Fatal(SpoolError),
    Damaged(String),
}

fn classify_open(path: &Path, e: DatabaseError) -> Opened {
    match e {
        DatabaseError::DatabaseAlreadyOpen => Opened::Fatal(SpoolError::InUse {
            path: path.to_owned(),
        }),
        DatabaseError::Storage(StorageError::Io(error))
            if !matches!(
                error.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
            ) =>
        {
            Opened::Fatal(SpoolError::Io {
                path: path.to_owned(),
                error,
            })
        }
        other => Opened::Damaged(other.to_string()),
    }
}

/// Renames a damaged spool to `<path>.damaged`, replacing an older one so
/// repeated damage cannot fill the disk.
fn set_aside(path: &Path) -> Result<PathBuf, SpoolError> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".damaged");
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside).map_err(|error| SpoolError::Io {
        path: path.to_owned(),
        error,
    })?;
    Ok(aside)
}
