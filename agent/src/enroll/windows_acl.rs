//! Windows: the enrolled key, certificate and CA bundle are readable by
//! SYSTEM (the service's account) and the Administrators group only, the
//! equivalent of mode 0600. The DACL is protected, so the entries a folder
//! would pass down (on `C:\ProgramData`, read for every user) do not apply.

use std::ffi::OsStr;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::path::Path;

use windows_sys::Win32::Foundation::LocalFree;
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW,
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    DACL_SECURITY_INFORMATION, GetFileSecurityW, PSECURITY_DESCRIPTOR, SetFileSecurityW,
};

/// The DACL in SDDL: protected (`P`), full file access (`FA`) allowed to
/// LocalSystem (`SY`) and to BUILTIN\Administrators (`BA`), nothing else.
pub const PRIVATE_DACL: &str = "D:P(A;;FA;;;SY)(A;;FA;;;BA)";

fn wide(s: &OsStr) -> Vec<u16> {
    s.encode_wide().chain(Some(0)).collect()
}

/// Frees a buffer the security functions allocated with `LocalAlloc`.
struct Local(*mut core::ffi::c_void);

impl Drop for Local {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from a successful call that hands
            // its result to the caller to free with LocalFree, and it is
            // freed once, here.
            #[allow(unsafe_code)]
            unsafe {
                LocalFree(self.0);
            }
        }
    }
}

/// Replaces the DACL of `path` with [`PRIVATE_DACL`].
pub fn restrict_to_system_and_administrators(path: &Path) -> io::Result<()> {
    let sddl = wide(OsStr::new(PRIVATE_DACL));
    let file = wide(path.as_os_str());
    let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: `sddl` is a NUL-terminated UTF-16 string that outlives the
    // call; `sd` is a valid out-pointer, the size out-pointer may be null.
    #[allow(unsafe_code)]
    let converted = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl.as_ptr(),
            SDDL_REVISION_1,
            &mut sd,
            std::ptr::null_mut(),
        )
    };
    if converted == 0 {
        return Err(io::Error::last_os_error());
    }
    let sd = Local(sd);
    // SetFileSecurityW stores the descriptor as given, its protected flag
    // included, without merging the parent's inheritable entries.
    // SAFETY: `file` is NUL-terminated UTF-16; `sd.0` is the valid
    // self-relative descriptor made above, alive until `sd` drops.
    #[allow(unsafe_code)]
    let set = unsafe { SetFileSecurityW(file.as_ptr(), DACL_SECURITY_INFORMATION, sd.0) };
    if set == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The DACL of `path` in SDDL, as Windows reports it.
pub fn dacl_sddl(path: &Path) -> io::Result<String> {
    let file = wide(path.as_os_str());
    let mut needed = 0u32;
    // SAFETY: a null buffer of length 0 asks only for the size needed.
    #[allow(unsafe_code)]
    unsafe {
        GetFileSecurityW(
            file.as_ptr(),
            DACL_SECURITY_INFORMATION,
            std::ptr::null_mut(),
            0,
            &mut needed,
        );
    }
    if needed == 0 {
        return Err(io::Error::last_os_error());
    }
    // u64 words keep the descriptor aligned.
    let mut buf = vec![0u64; (needed as usize).div_ceil(8)];
    // SAFETY: `buf` holds at least `needed` bytes and outlives the call.
    #[allow(unsafe_code)]
    let got = unsafe {
        GetFileSecurityW(
            file.as_ptr(),
            DACL_SECURITY_INFORMATION,
            buf.as_mut_ptr().cast(),
            needed,
            &mut needed,
        )
    };
    if got == 0 {
        return Err(io::Error::last_os_error());
    }
    let mut text: *mut u16 = std::ptr::null_mut();
    let mut len = 0u32;
    // SAFETY: `buf` holds the descriptor just read; `text` and `len` are
    // valid out-pointers.
    #[allow(unsafe_code)]
    let converted = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            buf.as_mut_ptr().cast(),
            SDDL_REVISION_1,
            DACL_SECURITY_INFORMATION,
            &mut text,
            &mut len,
        )
    };
    if converted == 0 {
        return Err(io::Error::last_os_error());
    }
    let text = Local(text.cast());
    // SAFETY: on success `text` points to `len` UTF-16 units (the last
    // may be the NUL), allocated by the call and freed by `Local`.
    #[allow(unsafe_code)]
    let units = unsafe { std::slice::from_raw_parts(text.0.cast::<u16>(), len as usize) };
    Ok(String::from_utf16_lossy(units)
        .trim_end_matches('\0')
        .to_owned())
}
