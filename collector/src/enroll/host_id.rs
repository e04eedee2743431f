//! The host id an enrolling machine gets when its CSR asks for none.
//!
//! Town halls reuse hostnames (`PC-01` is in every comune), so the
//! hostname alone would collide across the territory; the site is unique
//! in the register, so `<hostname>.<site>` is unique wherever hostnames
//! are unique within a site, and reads like a domain name: `pc-01.municipio-x`.

use campanile_proto::identity::{MAX_ID_LEN, validate_id};

/// Fewest characters of the hostname kept when the site id is long.
const MIN_HOST_PART: usize = 4;

/// `<hostname>.<site>`, the hostname normalised to the id rules: its first
/// label, lower case, any other character made `-`, leading and trailing
/// `-` dropped, shortened so the whole fits in 63 characters. `None` when
/// nothing usable is left: the agent must then ask for a host id.
pub fn default_host_id(hostname: &str, site: &str) -> Option<String> {
    let label = hostname.trim().split('.').next().unwrap_or_default();
    let mut host: String = label
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '-') => c,
            _ => '-',
        })
        .collect();
    let room = MAX_ID_LEN.checked_sub(site.len() + 1)?;
    if room < MIN_HOST_PART {
        return None;
    }
    host.truncate(room);
    let host = host.trim_matches(|c| c == '-' || c == '_');
    if host.is_empty() {
        return None;
    }
    let id = format!("{host}.{site}");
    validate_id("host", &id).ok().map(|()| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_hostname_in_two_comuni_gives_two_ids() {
        assert_eq!(
            default_host_id("PC-01", "municipio-a").as_deref(),
            Some("pc-01.municipio-a")
        );
        assert_eq!(
            default_host_id("PC-01", "municipio-b").as_deref(),
            Some("pc-01.municipio-b")
        );
    }

    #[test]
    fn a_hostname_is_normalised_to_the_id_rules() {
        assert_eq!(
            default_host_id(" Uff.Anagrafe.comune.local ", "m").as_deref(),
            Some("uff.m")
        );
        assert_eq!(
            default_host_id("-Ragioneria PC#2-", "m").as_deref(),
            Some("ragioneria-pc-2.m")
        );
        let long = default_host_id(&"x".repeat(100), &"s".repeat(40)).unwrap();
        assert_eq!(long.len(), 63);
        assert!(validate_id("host", &long).is_ok());
    }

    #[test]
    fn nothing_usable_gives_none() {
        assert_eq!(default_host_id("", "m"), None);
        assert_eq!(default_host_id("###", "m"), None);
        assert_eq!(default_host_id("pc", &"s".repeat(60)), None);
    }
}
