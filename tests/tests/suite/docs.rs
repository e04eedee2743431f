//! The guides stay true to the code: every relative link resolves, the
//! metrics reference names exactly the families the collector writes, and
//! the configuration reference describes every field of the examples.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the workspace root")
}

/// The README and every Markdown file under docs/.
fn guides() -> Result<Vec<PathBuf>> {
    let mut out = vec![root().join("README.md"), root().join("CHANGELOG.md")];
    let mut dirs = vec![root().join("docs")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).with_context(|| d.display().to_string())? {
            let p = e?.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Targets of the inline links `[text](target)` outside code blocks.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].trim().to_owned());
            rest = &after[end..];
        }
    }
    out
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces
/// to hyphens.
fn anchor_of(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| anchor_of(l.trim_start_matches('#')))
        .collect()
}

#[test]
fn every_relative_link_in_the_readme_and_the_guides_resolves() -> Result<()> {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in guides()? {
        let text = std::fs::read_to_string(&file)?;
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            checked += 1;
            let name = format!("{}: {target}", file.strip_prefix(root())?.display());
            if !resolved.exists() {
                broken.push(format!("{name} (no such file)"));
                continue;
            }
            // Links stay inside the repository.
            if !resolved.canonicalize()?.starts_with(root()) {
                broken.push(format!("{name} (outside the repository)"));
                continue;
            }
            if let Some(a) = anchor
                && resolved.extension().is_some_and(|x| x == "md")
                && !anchors(&std::fs::read_to_string(&resolved)?).contains(a)
            {
                broken.push(format!("{name} (no heading #{a})"));
            }
        }
    }
    assert!(
        checked > 30,
        "only {checked} links found: is the parser right?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    Ok(())
}

#[test]
fn the_link_checker_finds_what_it_should() {
    let md = "see [a](docs/a.md#x) and [b](../b.md)\n```\n[not](c.md)\n```\n[web](https://x.y)";
    assert_eq!(link_targets(md), ["docs/a.md#x", "../b.md", "https://x.y"]);
    assert_eq!(anchor_of(" The API: `/gaps` & more"), "the-api-gaps--more");
}

/// Family names in a metrics reference: the first cell of a table row.
fn documented_families(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter_map(|l| l.strip_prefix("| `campanile_"))
        .filter_map(|l| l.split_once('`'))
        .map(|(name, _)| format!("campanile_{name}"))
        .collect()
}

/// The metric family names written in the collector's code, outside its
/// unit tests: every family starts as such a literal.
fn families_in_code() -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut dirs = vec![root().join("collector/src")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            // Test data (DER fixtures) sits beside the code.
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p)?;
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
            let mut rest = code;
            while let Some(i) = rest.find("\"campanile_") {
                let after = &rest[i + 1..];
                let end = after.find('"').context("an unterminated literal")?;
                let name = &after[..end];
                if name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    out.insert(name.to_owned());
                }
                rest = &after[end..];
            }
        }
    }
    Ok(out)
}

fn metrics_reference() -> Result<BTreeSet<String>> {
    Ok(documented_families(&std::fs::read_to_string(
        root().join("docs/metrics.md"),
    )?))
}

#[test]
fn the_metrics_reference_names_every_family_in_the_code_and_no_other() -> Result<()> {
    let code = families_in_code()?;
    let docs = metrics_reference()?;
    assert!(code.len() > 80, "{code:?}");
    let undocumented: Vec<_> = code.difference(&docs).collect();
    let gone: Vec<_> = docs.difference(&code).collect();
    assert!(
        undocumented.is_empty() && gone.is_empty(),
        "missing from docs/metrics.md: {undocumented:?}; named there but not in the code: {gone:?}"
    );
    Ok(())
}

/// Families a scrape shows: the `# TYPE` lines.
pub fn families_on(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Fails when a scrape shows a family the metrics reference does not name.
pub fn assert_documented(exposition: &str) -> Result<()> {
    let docs = metrics_reference()?;
    let served = families_on(exposition);
    let undocumented: Vec<_> = served.difference(&docs).collect();
    anyhow::ensure!(
        undocumented.is_empty(),
        "served but missing from docs/metrics.md: {undocumented:?}"
    );
    Ok(())
}

/// `section.field` of every value a TOML example sets; the fields of an
/// array of tables are named without an index (`api.tokens.name`).
fn fields(prefix: &str, v: &toml::Value, out: &mut BTreeSet<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    toml::Value::Table(_) => fields(&name, v, out),
                    toml::Value::Array(a)
                        if a.iter().all(toml::Value::is_table) && !a.is_empty() =>
                    {
                        a.iter().for_each(|x| fields(&name, x, out))
                    }
                    _ => {
                        out.insert(name);
                    }
                }
            }
        }
        _ => unreachable!("fields of a table"),
    }
}

#[test]
fn the_configuration_reference_describes_every_field_of_the_examples() -> Result<()> {
    let reference = std::fs::read_to_string(root().join("docs/configuration.md"))?;
    let mut missing = Vec::new();
    for example in ["deploy/collector.toml", "deploy/agent.toml"] {
        let value: toml::Value = toml::from_str(&std::fs::read_to_string(root().join(example))?)?;
        let mut names = BTreeSet::new();
        fields("", &value, &mut names);
        assert!(names.len() > 20, "{example}: {names:?}");
        for n in names {
            // Rules are described once for all (`alerts.rules.<rule>.for_secs`)
            // unless a threshold is a rule's own.
            let generic = n
                .strip_prefix("alerts.rules.")
                .and_then(|r| r.split_once('.'))
                .map(|(_, field)| format!("`alerts.rules.<rule>.{field}`"));
            let named = reference.contains(&format!("`{n}`"))
                || generic.is_some_and(|g| reference.contains(&g));
            if !named {
                missing.push(format!("{example}: {n}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in docs/configuration.md:\n{}",
        missing.join("\n")
    );
    Ok(())
}

#[test]
fn the_readme_stays_an_entry_point() -> Result<()> {
    let readme = std::fs::read_to_string(root().join("README.md"))?;
    let lines = readme.lines().count();
    assert!(
        lines <= 220,
        "README.md has {lines} lines: move guides to docs/"
    );
    Ok(())
}
