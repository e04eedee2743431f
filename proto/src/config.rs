//! The one way both binaries read their TOML config: read the file, parse
//! with the caller's `deny_unknown_fields` structs, and name the file (and,
//! in validation, the field) in every error.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: {field}: {reason}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },
    /// A file the config names (a territory register, a catalog) that
    /// cannot be used; its own error says where and why.
    #[error(transparent)]
    File(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl ConfigError {
    /// A refused file the config names, with its own error.
    pub fn file(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::File(Box::new(e))
    }

    pub fn invalid(path: &Path, field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.to_owned(),
            field,
            reason: reason.into(),
        }
    }
}

/// Reads a config file's text.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Parses TOML `text` as read from `path`, on one line for the operator.
pub fn parse_toml<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let message = e.message().trim_end().replace('\n', " ");
        ConfigError::Parse {
            path: path.to_owned(),
            message: match line {
                Some(n) => format!("line {n}: {message}"),
                None => message,
            },
        }
    })
}

/// The directory relative paths in a config resolve against.
pub fn base_dir(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}
