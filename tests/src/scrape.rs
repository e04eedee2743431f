//! Fetching and reading a `/metrics` text.

use anyhow::{Context, Result, bail};

/// GET `url`; the body, or an error naming the status and the body.
pub async fn http_get(url: &str) -> Result<String> {
    let resp = reqwest::get(url)
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let body = resp.text().await?;
    if !status.is_success() {
        bail!("GET {url}: {status}: {body}");
    }
    Ok(body)
}

/// The value of the series whose text form (name and labels, as rendered)
/// equals `series`, e.g. `campanile_host_up{host="a",site="s"}`.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(s, _)| *s == series)
        .and_then(|(_, v)| v.parse().ok())
}

/// The sum over every series of the family `name`, whatever its labels
/// (0 when it has none).
pub fn family_sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(s, _)| *s == name || s.strip_prefix(name).is_some_and(|r| r.starts_with('{')))
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}
