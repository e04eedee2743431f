//! The operator's side of enrollment: making a token for a site of the
//! register, listing tokens, ending one. The command line runs these on
//! an [`AdminStore`], beside a running collector or without one.

use std::path::{Path, PathBuf};

use campanile_proto::enrollment::EnrollmentToken;
use campanile_territory::register::Register;

use super::token::{self, MAX_TOKEN_LIFETIME, MAX_TOKEN_USES, RandomFailed, TokenSpec};
use crate::alerts::timefmt::rfc3339;
use crate::store::StoreError;
use crate::store::certificates::{AdminStore, NewTokenRow, TokenRow};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("enrollment is off: add an [enrollment] section to the collector's config")]
    Disabled,
    #[error(
        "no register is configured (territory.register_path): a token is bound to a site of \
         the register"
    )]
    NoRegister,
    #[error("site {site:?} is not in the register {}", register.display())]
    UnknownSite { site: String, register: PathBuf },
    #[error("--uses must be from 1 to {MAX_TOKEN_USES}, not {0}")]
    Uses(u32),
    #[error("--expires-in {0:?}: a number and a unit (s, m, h, d), at most 90 days")]
    Lifetime(String),
    #[error("--name may hold at most 200 characters")]
    Name,
    #[error("no enrollment token {0:?} is in force")]
    NoSuchToken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Random(#[from] RandomFailed),
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
}

/// What a token made by the running collector (the API) carries beside
/// its terms: the fingerprint of the CA of the server certificate, and
/// where agents dial.
#[derive(Debug, Clone)]
pub struct Issuing {
    pub bundle_path: std::path::PathBuf,
    pub cert_path: std::path::PathBuf,
    pub endpoint: String,
}

impl Issuing {
    /// The CA a token pins: the one that signed the server certificate in
    /// force (in a CA rollover, the old CA until `pki retire-ca`), read
    /// from the files each time.
    pub fn pin(&self) -> Result<[u8; 32], crate::pki::PkiError> {
        crate::rollover::server_ca_sha256(&self.bundle_path, &self.cert_path)
    }
}

/// Where a token is stored: the running collector's store, or the
/// command line's.
pub trait TokenStore {
    fn create_enrollment_token(&self, t: &NewTokenRow) -> Result<(), StoreError>;
}

impl TokenStore for AdminStore {
    fn create_enrollment_token(&self, t: &NewTokenRow) -> Result<(), StoreError> {
        AdminStore::create_enrollment_token(self, t)
    }
}

impl TokenStore for crate::store::Store {
    fn create_enrollment_token(&self, t: &NewTokenRow) -> Result<(), StoreError> {
        crate::store::Store::create_enrollment_token(self, t)
    }
}

/// What `enroll new` asks for, as typed.
pub struct NewTokenArgs<'a> {
    pub site: &'a str,
    pub uses: u32,
    pub expires_in: &'a str,
    pub name: &'a str,
    pub may_replace: bool,
}

impl NewTokenArgs<'_> {
    /// The token's terms, checked against the register.
    pub fn validated(&self, register: Option<(&Register, &Path)>) -> Result<TokenSpec, AdminError> {
        let (register, path) = register.ok_or(AdminError::NoRegister)?;
        if !register.sites.iter().any(|s| s.id == self.site) {
            return Err(AdminError::UnknownSite {
                site: self.site.to_owned(),
                register: path.to_owned(),
            });
        }
        if !(1..=MAX_TOKEN_USES).contains(&self.uses) {
            return Err(AdminError::Uses(self.uses));
        }
        // MAX_TOKEN_LIFETIME is the 90 days the error names.
        let lifetime = token::parse_lifetime(self.expires_in)
            .filter(|l| *l <= MAX_TOKEN_LIFETIME)
            .ok_or_else(|| AdminError::Lifetime(self.expires_in.to_owned()))?;
        if self.name.chars().count() > 200 {
            return Err(AdminError::Name);
        }
        Ok(TokenSpec {
            site: self.site.to_owned(),
            name: self.name.to_owned(),
            uses: self.uses,
            lifetime,
            may_replace: self.may_replace,
        })
    }
}

/// Makes a token and stores its hash; the token itself is in the result
/// only, to be shown once.
pub fn create_token(
    store: &impl TokenStore,
    spec: &TokenSpec,
    ca_sha256: [u8; 32],
    now_ms: i64,
) -> Result<(EnrollmentToken, TokenRow), AdminError> {
    let (token, row) = token::generate(spec, ca_sha256, now_ms)?;
    store.create_enrollment_token(&row)?;
    Ok((token, row.row))
}

pub fn revoke_token(store: &AdminStore, id: &str, now_ms: i64) -> Result<(), AdminError> {
    if store.revoke_enrollment_token(id, now_ms)? {
        Ok(())
    } else {
        Err(AdminError::NoSuchToken(id.to_owned()))
    }
}

/// The commands that install an agent with `token`, one per platform.
pub fn install_commands(endpoint: &str, token: &EnrollmentToken) -> [(&'static str, String); 2] {
    [
        (
            "Linux",
            format!("campanile-agent enroll --collector {endpoint} --token {token}"),
        ),
        (
            "Windows (an administrator's prompt)",
            format!("campanile-agent.exe enroll --collector {endpoint} --token {token}"),
        ),
    ]
}

/// A token's state at `now_ms`, as `enroll list` shows it.
pub fn state(t: &TokenRow, now_ms: i64) -> &'static str {
    if t.revoked_ms.is_some() {
        "revoked"
    } else if t.expires_ms <= now_ms {
        "expired"
    } else if t.uses_left == 0 {
        "used up"
    } else {
        "in force"
    }
}

/// `enroll list`'s table.
pub fn list_table(tokens: &[TokenRow], now_ms: i64) -> String {
    let mut out = format!(
        "{:<8}  {:<24}  {:>9}  {:<20}  {:<8}  {}\n",
        "ID", "SITE", "USES LEFT", "EXPIRES (UTC)", "STATE", "NAME"
    );
    for t in tokens {
        out.push_str(&format!(
            "{:<8}  {:<24}  {:>9}  {:<20}  {:<8}  {}{}\n",
            t.id,
            t.site,
            format!("{}/{}", t.uses_left, t.uses_total),
            utc_minutes(t.expires_ms),
            state(t, now_ms),
            t.name,
            if t.may_replace { " (may replace)" } else { "" }
        ));
    }
    out
}

/// `2026-12-10 17:00 UTC`.
pub fn utc_minutes(ms: i64) -> String {
    let t = rfc3339(ms);
    format!("{} UTC", t.get(..16).unwrap_or(&t).replace('T', " "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn register() -> Register {
        Register::parse(
            r#"
            [[comune]]
            istat_code = "001001"
            name = "Agliè"
            [[site]]
            id = "municipio-a"
            comune = "001001"
            name = "Municipio"
            kind = "town_hall"
            "#,
            "test",
        )
        .unwrap()
    }

    #[test]
    fn a_token_is_for_a_site_of_the_register_with_sane_terms() {
        let r = register();
        let reg = Some((&r, Path::new("register.toml")));
        let args = |site, uses, expires_in| NewTokenArgs {
            site,
            uses,
            expires_in,
            name: "",
            may_replace: false,
        };
        let spec = args("municipio-a", 30, "2d").validated(reg).unwrap();
        assert_eq!(spec.lifetime, Duration::from_secs(2 * 86_400));
        for (a, what) in [
            (args("nowhere", 1, "7d"), "not in the register"),
            (args("municipio-a", 0, "7d"), "--uses"),
            (args("municipio-a", 1, "365d"), "--expires-in"),
            (args("municipio-a", 1, "soon"), "--expires-in"),
        ] {
            let e = a.validated(reg).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        }
        let e = args("municipio-a", 1, "7d").validated(None).unwrap_err();
        assert!(matches!(e, AdminError::NoRegister));
    }
}
