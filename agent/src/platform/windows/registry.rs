//! Reading the live registry into [`Values`], through winreg. Always the
//! view asked for: a 32-bit agent on 64-bit Windows would otherwise be
//! redirected to `WOW6432Node` without a word.

use winreg::RegKey;
use winreg::enums::{
    HKEY_LOCAL_MACHINE, KEY_READ, KEY_WOW64_32KEY, KEY_WOW64_64KEY, REG_DWORD, REG_EXPAND_SZ,
    REG_QWORD, REG_SZ,
};

use super::uninstall::View;
use super::values::{RegValue, Values};

fn flags(view: View) -> u32 {
    KEY_READ
        | match view {
            View::Native64 => KEY_WOW64_64KEY,
            View::Wow32 => KEY_WOW64_32KEY,
        }
}

/// `HKLM\path` in `view`, or `None` if it does not exist or may not be
/// read.
pub fn open(path: &str, view: View) -> Option<RegKey> {
    RegKey::predef(HKEY_LOCAL_MACHINE)
        .open_subkey_with_flags(path, flags(view))
        .ok()
}

/// Every value of a key. Values that do not decode as their type says
/// are skipped, not fatal: installers write odd things.
pub fn values(key: &RegKey) -> Values {
    let mut out = Vec::new();
    for (name, v) in key.enum_values().filter_map(Result::ok) {
        let value = match v.vtype {
            REG_SZ | REG_EXPAND_SZ => winreg::types::FromRegValue::from_reg_value(&v)
                .ok()
                .map(RegValue::Str),
            REG_DWORD => winreg::types::FromRegValue::from_reg_value(&v)
                .ok()
                .map(RegValue::Dword),
            REG_QWORD => winreg::types::FromRegValue::from_reg_value(&v)
                .ok()
                .map(RegValue::Qword),
            _ => Some(RegValue::Other),
        };
        if let Some(value) = value {
            out.push((name, value));
        }
    }
    Values::new(out)
}

/// The values of `HKLM\path` in the native view.
pub fn key_values(path: &str) -> Option<Values> {
    open(path, View::Native64).map(|k| values(&k))
}

/// The values of every direct subkey of `HKLM\path` in `view`.
pub fn subkey_values(path: &str, view: View) -> Vec<Values> {
    let Some(parent) = open(path, view) else {
        return Vec::new();
    };
    parent
        .enum_keys()
        .filter_map(Result::ok)
        .filter_map(|name| parent.open_subkey_with_flags(&name, flags(view)).ok())
        .map(|k| values(&k))
        .collect()
}

/// A stamp that changes when a subkey of `HKLM\path` is added, removed or
/// written: the newest last-write time among the key and its subkeys, and
/// their count. Reading it costs one call per subkey and no values.
pub fn tree_stamp(path: &str, view: View) -> Option<(u64, u64)> {
    let parent = open(path, view)?;
    let written = |k: &RegKey| {
        k.query_info().ok().map(|i| {
            (u64::from(i.last_write_time.dwHighDateTime) << 32)
                | u64::from(i.last_write_time.dwLowDateTime)
        })
    };
    let mut newest = written(&parent)?;
    let mut count = 0u64;
    for name in parent.enum_keys().filter_map(Result::ok) {
        count += 1;
        if let Some(t) = parent
            .open_subkey_with_flags(&name, flags(view))
            .ok()
            .as_ref()
            .and_then(written)
        {
            newest = newest.max(t);
        }
    }
    Some((newest, count))
}
