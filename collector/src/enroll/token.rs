//! Making enrollment tokens: the random parts, the row the store keeps
//! (a hash, never the secret), and the lifetimes operators write.

use std::time::Duration;

use campanile_proto::enrollment::{EnrollmentToken, credential_sha256};

use crate::store::certificates::{NewTokenRow, TokenRow};

#[derive(Debug, thiserror::Error)]
#[error("the system random generator failed")]
pub struct RandomFailed;

/// What a new token is for.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub site: String,
    pub name: String,
    pub uses: u32,
    pub lifetime: Duration,
    pub may_replace: bool,
}

/// Longest a token may live: it is a password for a site.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(90 * 86_400);
/// Most uses of one token: a comune's PCs, a few hundred at most.
pub const MAX_TOKEN_USES: u32 = 10_000;

/// A new token (shown once) and its row for the store.
pub fn generate(
    spec: &TokenSpec,
    ca_sha256: [u8; 32],
    now_ms: i64,
) -> Result<(EnrollmentToken, NewTokenRow), RandomFailed> {
    let rng = ring::rand::SystemRandom::new();
    let mut id = [0u8; 4];
    let mut secret = [0u8; 16];
    ring::rand::SecureRandom::fill(&rng, &mut id).map_err(|_| RandomFailed)?;
    ring::rand::SecureRandom::fill(&rng, &mut secret).map_err(|_| RandomFailed)?;
    let token = EnrollmentToken::new(id, secret, ca_sha256);
    let lifetime_ms = i64::try_from(spec.lifetime.as_millis()).unwrap_or(i64::MAX);
    let row = NewTokenRow {
        row: TokenRow {
            id: token.id.clone(),
            site: spec.site.clone(),
            name: spec.name.clone(),
            uses_total: spec.uses,
            uses_left: spec.uses,
            may_replace: spec.may_replace,
            created_ms: now_ms,
            expires_ms: now_ms.saturating_add(lifetime_ms),
            revoked_ms: None,
        },
        secret_sha256: credential_sha256(&token.credential()),
    };
    Ok((token, row))
}

/// `90s`, `30m`, `12h`, `7d`: a number and one unit.
pub fn parse_lifetime(text: &str) -> Option<Duration> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let secs_per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return None,
    };
    let n: u64 = text[..text.len() - 1].parse().ok()?;
    n.checked_mul(secs_per)
        .filter(|&s| s > 0)
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use campanile_proto::enrollment::parse_credential;

    #[test]
    fn a_new_token_is_stored_as_the_hash_its_credential_is_looked_up_by() {
        let spec = TokenSpec {
            site: "municipio-a".into(),
            name: "first morning".into(),
            uses: 20,
            lifetime: Duration::from_secs(7 * 86_400),
            may_replace: false,
        };
        let (token, row) = generate(&spec, [9; 32], 1_000).unwrap();
        let (id, sha) = parse_credential(&token.credential()).unwrap();
        assert_eq!((id, sha), (row.row.id.clone(), row.secret_sha256));
        assert_eq!(row.row.expires_ms, 1_000 + 7 * 86_400_000);
        assert_eq!(row.row.uses_left, 20);
        let (other, _) = generate(&spec, [9; 32], 1_000).unwrap();
        assert_ne!(other.credential(), token.credential());
    }

    #[test]
    fn lifetimes_are_a_number_and_a_unit() {
        assert_eq!(parse_lifetime("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse_lifetime("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_lifetime(" 12h "), Some(Duration::from_secs(43_200)));
        for bad in ["", "7", "d", "0d", "7w", "-1d", "1.5h"] {
            assert_eq!(parse_lifetime(bad), None, "{bad}");
        }
    }
}
