//! NUL-terminated UTF-16 strings that Windows hands out inside the
//! buffers it fills (adapter names, service names).

/// The string at `p`, or empty for a null pointer.
///
/// # Safety
/// `p` is null or points to a NUL-terminated UTF-16 string that stays
/// alive and unchanged while this runs.
#[allow(unsafe_code)]
pub unsafe fn to_string(p: *const u16) -> String {
    if p.is_null() {
        return String::new();
    }
    let mut len = 0;
    // SAFETY: the caller vouches for the terminator; we read up to it.
    unsafe {
        while *p.add(len) != 0 {
            len += 1;
        }
        String::from_utf16_lossy(std::slice::from_raw_parts(p, len))
    }
}
