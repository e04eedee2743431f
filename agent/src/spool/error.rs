//! The spool's errors, carrying the file they concern.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: already open by another process (two agents with one spool?)")]
    InUse { path: PathBuf },
    #[error("spool {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("spool {path}: {message}")]
    Storage { path: PathBuf, message: String },
}
