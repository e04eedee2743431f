//! The values of one registry key, as the mapping functions read them:
//! read from the live registry on Windows, from recorded `reg query`
//! output in the tests of every platform.

/// A registry value, as far as the agent reads registry values.
#[derive(Debug, Clone, PartialEq)]
pub enum RegValue {
    /// REG_SZ and REG_EXPAND_SZ (not expanded).
    Str(String),
    Dword(u32),
    Qword(u64),
    /// Binary and multi-string values: present, not read.
    Other,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Values(Vec<(String, RegValue)>);

impl Values {
    pub fn new(values: Vec<(String, RegValue)>) -> Self {
        Self(values)
    }

    /// Value names are case-insensitive, as in the registry.
    pub fn get(&self, name: &str) -> Option<&RegValue> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// A string value, trimmed; blank counts as absent.
    pub fn string(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            RegValue::Str(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
            _ => None,
        }
    }

    /// A DWORD, or a QWORD that fits one (installers write either).
    pub fn dword(&self, name: &str) -> Option<u32> {
        match self.get(name)? {
            RegValue::Dword(d) => Some(*d),
            RegValue::Qword(q) => u32::try_from(*q).ok(),
            _ => None,
        }
    }
}

/// Expands the `%NAME%` references of a REG_EXPAND_SZ with `var`; a
/// reference it cannot resolve is left as it is. `%SystemDrive%` falls
/// back to `C:`, which it is on every Windows the agent runs on.
pub fn expand_env(s: &str, var: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        let Some(len) = after.find('%') else {
            break;
        };
        let name = &after[..len];
        out.push_str(&rest[..start]);
        match var(name).or_else(|| {
            name.eq_ignore_ascii_case("SystemDrive")
                .then(|| "C:".into())
        }) {
            Some(v) => out.push_str(&v),
            None => {
                out.push('%');
                out.push_str(name);
                out.push('%');
            }
        }
        rest = &after[len + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod expand_tests {
    use super::expand_env;

    #[test]
    fn references_are_expanded_and_unknown_ones_kept() {
        let env = |n: &str| (n == "SystemDrive").then(|| "D:".to_owned());
        assert_eq!(
            expand_env(r"%SystemDrive%\ProgramData", env),
            r"D:\ProgramData"
        );
        assert_eq!(
            expand_env(r"%SystemDrive%\ProgramData", |_| None),
            r"C:\ProgramData"
        );
        assert_eq!(expand_env(r"%Nope%\x", |_| None), r"%Nope%\x");
        assert_eq!(expand_env("100% sure", |_| None), "100% sure");
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Recorded registry contents in the text `reg query KEY /s` prints on
    //! Windows: a key's path on a line of its own, then one line per value,
    //! `    Name    TYPE    Data`, four spaces apart.
    use super::*;

    /// Every key of `text` with its values.
    pub fn keys(text: &str) -> Vec<(String, Values)> {
        let mut out: Vec<(String, Values)> = Vec::new();
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.starts_with("HKEY_") {
                out.push((line.trim().to_owned(), Values::default()));
            } else if let Some(value) = line.strip_prefix("    ") {
                let mut parts = value.splitn(3, "    ");
                let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let data = parts.next().unwrap_or("").to_owned();
                let hex = |d: &str| u64::from_str_radix(d.trim_start_matches("0x"), 16).ok();
                let v = match kind.trim() {
                    "REG_SZ" | "REG_EXPAND_SZ" => RegValue::Str(data),
                    "REG_DWORD" => match hex(&data).and_then(|d| u32::try_from(d).ok()) {
                        Some(d) => RegValue::Dword(d),
                        None => panic!("bad REG_DWORD in fixture: {line}"),
                    },
                    "REG_QWORD" => RegValue::Qword(hex(&data).expect("REG_QWORD")),
                    _ => RegValue::Other,
                };
                let name = if name == "(Default)" { "" } else { name };
                let (_, values) = out.last_mut().expect("a value line before any key line");
                values.0.push((name.to_owned(), v));
            }
        }
        out
    }

    /// The values of the key whose path ends with `path`.
    pub fn key(text: &str, path: &str) -> Values {
        let suffix = path.to_ascii_lowercase();
        keys(text)
            .into_iter()
            .find(|(k, _)| k.to_ascii_lowercase().ends_with(&suffix))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no key {path} in the fixture"))
    }

    /// The direct subkeys of `parent` (by path suffix), by name.
    pub fn subkeys(text: &str, parent: &str) -> Vec<(String, Values)> {
        let prefix = format!("{}\\", parent.to_ascii_lowercase());
        keys(text)
            .into_iter()
            .filter_map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                let at = lower.find(&prefix)? + prefix.len();
                let name = &k[at..];
                (!name.contains('\\')).then(|| (name.to_owned(), v))
            })
            .collect()
    }

    #[test]
    fn reg_query_text_reads_back() {
        let text = "\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\A\r\n    Name    REG_SZ    Two  words\r\n    \
                    Empty    REG_SZ    \r\n    N    REG_DWORD    0x1f\r\n    Q    REG_QWORD    0x100000000\r\n\
                    \r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\A\\B\r\n    (Default)    REG_SZ    d\r\n";
        let a = key(text, r"SOFTWARE\A");
        assert_eq!(a.string("name").as_deref(), Some("Two  words"));
        assert_eq!(a.string("Empty"), None);
        assert_eq!(a.dword("N"), Some(31));
        assert_eq!(a.dword("Q"), None);
        assert_eq!(a.get("Q"), Some(&RegValue::Qword(1 << 32)));
        let subs = subkeys(text, r"SOFTWARE\A");
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].0, "B");
        assert_eq!(subs[0].1.string(""), Some("d".into()));
    }
}
