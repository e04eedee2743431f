//! `[api]`: the tokens that may read (and maintain), and whether `/metrics`
//! needs one, parsed ([`RawApi`]) then validated ([`validate`]).

use campanile_proto::config::ConfigError;
use serde::Deserialize;

use crate::http::token;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    #[serde(default)]
    protect_metrics: bool,
    #[serde(default)]
    tokens: Vec<RawToken>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    /// SHA-256 of the token, hex: the config never holds the secret itself.
    sha256: String,
    #[serde(default = "default_role")]
    role: String,
}

fn default_role() -> String {
    "read".into()
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every GET.
    Read,
    /// Read, and set or end maintenance windows.
    Maintain,
    /// Read, and make, list and end enrollment tokens.
    Enroll,
}

#[derive(Debug, Clone)]
pub struct ApiToken {
    pub name: String,
    pub sha256: [u8; 32],
    pub role: Role,
}

/// Who may read the API (and `/metrics` when `protect_metrics` is set).
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    pub protect_metrics: bool,
    pub tokens: Vec<ApiToken>,
}

/// Validates `[api]`; `invalid` makes the error that names the field.
pub fn validate(
    raw: RawApi,
    invalid: &impl Fn(&'static str, String) -> ConfigError,
) -> Result<ApiConfig, ConfigError> {
    let mut tokens = Vec::with_capacity(raw.tokens.len());
    for t in raw.tokens {
        let name = t.name.trim().to_owned();
        if name.is_empty() {
            return Err(invalid("api.tokens.name", "must not be empty".into()));
        }
        let sha256 = token::parse_sha256(&t.sha256).ok_or_else(|| {
            invalid(
                "api.tokens.sha256",
                format!(
                    "token {name}: must be 64 hex digits (see `campanile-collector token new`)"
                ),
            )
        })?;
        let role = match t.role.as_str() {
            "read" => Role::Read,
            "maintain" => Role::Maintain,
            "enroll" => Role::Enroll,
            other => {
                return Err(invalid(
                    "api.tokens.role",
                    format!("token {name}: role {other:?} is not one of: read, maintain, enroll"),
                ));
            }
        };
        if tokens.iter().any(|x: &ApiToken| x.name == name) {
            return Err(invalid(
                "api.tokens.name",
                format!("token {name} is listed twice"),
            ));
        }
        tokens.push(ApiToken { name, sha256, role });
    }
    if raw.protect_metrics && tokens.is_empty() {
        return Err(invalid(
            "api.protect_metrics",
            "needs at least one token in [[api.tokens]]".into(),
        ));
    }
    Ok(ApiConfig {
        protect_metrics: raw.protect_metrics,
        tokens,
    })
}
