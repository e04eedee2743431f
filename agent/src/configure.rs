//! `campanile-agent configure`: the config an unattended install starts
//! from, written from the collector's address and an enrollment token (the
//! MSI's `COLLECTOR` and `TOKEN`). An existing config is never touched: an
//! upgrade or a repair keeps what the centre set.

use std::path::{Path, PathBuf};

use campanile_proto::enrollment::EnrollmentToken;

use crate::config::{AgentConfig, ConfigError};
use crate::enroll::files::{FilesError, write_private};

#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    #[error("collector {0:?}: give HOST:PORT (or https://HOST:PORT)")]
    Collector(String),
    #[error("enrollment token: {0}")]
    Token(String),
    #[error("the config written would not load: {0}")]
    Invalid(#[from] ConfigError),
    #[error(transparent)]
    Write(#[from] FilesError),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Written(PathBuf),
    /// A config was there already, and was kept as it is.
    Kept(PathBuf),
}

/// The config for `collector` (`HOST:PORT`, `https://` optional) and an
/// optional token. Only the collector and the token are set: every other
/// setting keeps its default, so a later version's defaults apply.
pub fn render(collector: &str, token: Option<&str>) -> Result<String, ConfigureError> {
    let collector = collector.trim();
    let authority = collector.strip_prefix("https://").unwrap_or(collector);
    // Letters, digits and the punctuation of names and addresses only:
    // nothing that would need quoting in TOML.
    let safe = !authority.is_empty()
        && authority.contains(':')
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]_".contains(c));
    if !safe {
        return Err(ConfigureError::Collector(collector.to_owned()));
    }
    let mut out = format!(
        "# Written by `campanile-agent configure`: the collector and, until\n\
         # this agent has enrolled, its enrollment token. Every other setting\n\
         # has its default; deploy/agent.toml lists them.\n\n\
         [collector]\nendpoint = \"https://{authority}\"\n"
    );
    if let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) {
        // Parsed, so a mistyped token is refused now, not at the first run.
        EnrollmentToken::parse(token).map_err(|e| ConfigureError::Token(e.to_string()))?;
        out.push_str(&format!("\n[enrollment]\ntoken = \"{token}\"\n"));
    }
    Ok(out)
}

/// Writes the config at `path` unless one is there. It holds the token,
/// a secret: it is written as the enrolled key is (SYSTEM and
/// Administrators only on Windows, mode 0600 elsewhere).
pub fn write_if_missing(
    path: &Path,
    collector: &str,
    token: Option<&str>,
) -> Result<Outcome, ConfigureError> {
    if path.exists() {
        return Ok(Outcome::Kept(path.to_owned()));
    }
    let text = render(collector, token)?;
    AgentConfig::parse(&text, path)?;
    write_private(path, text.as_bytes())?;
    Ok(Outcome::Written(path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "cmp1.0a1b2c3d.00112233445566778899aabbccddeeff.\
                         0011223344556677889900112233445566778899001122334455667788990011";

    #[test]
    fn a_config_is_written_once_and_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Campanile").join("agent.toml");
        let out = write_if_missing(&path, "collector.cst.example:9470", Some(TOKEN)).unwrap();
        assert_eq!(out, Outcome::Written(path.clone()));
        let cfg = AgentConfig::load(&path).unwrap();
        assert_eq!(cfg.collector.endpoint, "https://collector.cst.example:9470");
        assert!(cfg.enrollment_token.is_some());
        // A repair or an upgrade with other values keeps the first.
        let again = write_if_missing(&path, "other.example:1", None).unwrap();
        assert_eq!(again, Outcome::Kept(path.clone()));
        let cfg = AgentConfig::load(&path).unwrap();
        assert_eq!(cfg.collector.endpoint, "https://collector.cst.example:9470");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "the token is a secret");
        }
    }

    #[test]
    fn bad_collectors_and_tokens_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        for bad in ["", "collector", "host:1\"\n[x]", "https://"] {
            assert!(
                matches!(
                    write_if_missing(&path, bad, None),
                    Err(ConfigureError::Collector(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            write_if_missing(&path, "h:1", Some("cmp1.nope")),
            Err(ConfigureError::Token(_))
        ));
        assert!(!path.exists());
        // An https:// prefix and an IPv6 literal are fine; no token is fine.
        let text = render("https://[2001:db8::5]:9470", None).unwrap();
        assert!(
            text.contains("endpoint = \"https://[2001:db8::5]:9470\""),
            "{text}"
        );
        assert!(!text.contains("[enrollment]"));
    }
}
