//! The API token format, in one place: 32 random bytes written as 64 hex
//! digits; the config keeps only the SHA-256 of that text.

use campanile_proto::hex;

/// A token just made, shown once.
pub struct NewToken {
    pub token: String,
    pub sha256: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
#[error("the system random generator failed")]
pub struct RandomFailed;

impl NewToken {
    pub fn generate() -> Result<Self, RandomFailed> {
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .map_err(|_| RandomFailed)?;
        let token = hex(&secret);
        let sha256 = digest(&token);
        Ok(Self { token, sha256 })
    }

    /// The `[[api.tokens]]` entry for the collector's config.
    pub fn config_entry(&self, name: &str, role: &str) -> String {
        format!(
            "[[api.tokens]]\nname = {name:?}\nsha256 = \"{}\"\nrole = {role:?}\n",
            hex(&self.sha256)
        )
    }
}

/// SHA-256 of a token as presented.
pub fn digest(token: &str) -> [u8; 32] {
    campanile_proto::sha256(token.as_bytes())
}

/// The configured digest: 64 hex digits.
pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    campanile_proto::unhex(hex.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_matches_its_config_entry() {
        let t = NewToken::generate().unwrap();
        assert_eq!(t.token.len(), 64);
        let entry = t.config_entry("noc", "read");
        let sha = entry
            .lines()
            .find_map(|l| l.strip_prefix("sha256 = "))
            .unwrap()
            .trim_matches('"');
        assert_eq!(parse_sha256(sha), Some(digest(&t.token)));
        assert_eq!(parse_sha256("00"), None);
        assert_eq!(parse_sha256(&"g".repeat(64)), None);
    }
}
