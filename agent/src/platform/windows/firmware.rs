//! How the machine boots and what Windows 11 asks of it: UEFI or legacy
//! boot (the registry's `PEFirmwareType`, which the boot loader sets; not
//! `GetFirmwareType`, which Windows 7 lacks and Wine only stubs), Secure
//! Boot (the registry's `SecureBoot\State`), and the TPM and its version (TPM Base Services,
//! which any user may ask, where WMI's `Win32_Tpm` needs an
//! administrator). What could not be read stays absent: a PC is never
//! judged unready on a guess.

use campanile_proto::v1::{Firmware, Tpm};

use super::values::Values;

pub const SECURE_BOOT_KEY: &str = r"SYSTEM\CurrentControlSet\Control\SecureBoot\State";
/// Holds `PEFirmwareType`.
pub const CONTROL_KEY: &str = r"SYSTEM\CurrentControlSet\Control";

/// `PEFirmwareType` (as FIRMWARE_TYPE).
const FIRMWARE_TYPE_BIOS: u32 = 1;
const FIRMWARE_TYPE_UEFI: u32 = 2;
/// `TPM_DEVICE_INFO.tpmVersion`.
const TPM_VERSION_12: u32 = 1;
const TPM_VERSION_20: u32 = 2;

/// What TPM Base Services said.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TpmAnswer {
    /// A TPM, with `TPM_DEVICE_INFO.tpmVersion`.
    Found(u32),
    /// TBS_E_TPM_NOT_FOUND: Windows knows of no TPM.
    NotFound,
    /// Any other failure (the service disabled, the call missing).
    Failed(u32),
}

pub fn firmware(
    firmware_type: Option<u32>,
    secure_boot: Option<&Values>,
    tpm: TpmAnswer,
    uefi_supported: Option<bool>,
) -> Firmware {
    let boot_mode = match firmware_type {
        Some(FIRMWARE_TYPE_UEFI) => Some("uefi"),
        Some(FIRMWARE_TYPE_BIOS) => Some("legacy"),
        _ => None,
    };
    let secure_boot = match (
        boot_mode,
        secure_boot.and_then(|v| v.dword("UEFISecureBootEnabled")),
    ) {
        (_, Some(on)) => Some(on == 1),
        // Legacy boot has no Secure Boot: that is read, not guessed.
        (Some("legacy"), None) => Some(false),
        _ => None,
    };
    let tpm = match tpm {
        TpmAnswer::Found(v) => Some(Tpm {
            present: true,
            version: match v {
                TPM_VERSION_20 => Some("2.0".into()),
                TPM_VERSION_12 => Some("1.2".into()),
                _ => None,
            },
        }),
        TpmAnswer::NotFound => Some(Tpm {
            present: false,
            version: None,
        }),
        TpmAnswer::Failed(_) => None,
    };
    Firmware {
        boot_mode: boot_mode.map(str::to_owned),
        secure_boot,
        tpm,
        // Booting UEFI says it all.
        uefi_supported: if boot_mode == Some("uefi") {
            Some(true)
        } else {
            uefi_supported
        },
    }
}

// Calls into Windows: each unsafe block says why it is sound.
#[cfg(windows)]
#[allow(unsafe_code)]
pub mod read {
    //! The three calls.
    use super::TpmAnswer;
    use windows_sys::Win32::Foundation::TBS_E_TPM_NOT_FOUND;
    use windows_sys::Win32::System::SystemInformation::{GetSystemFirmwareTable, RSMB};
    use windows_sys::Win32::System::TpmBaseServices::{
        TBS_SUCCESS, TPM_DEVICE_INFO, Tbsi_GetDeviceInfo,
    };

    pub fn tpm() -> TpmAnswer {
        let mut info = TPM_DEVICE_INFO::default();
        // SAFETY: `info` is a TPM_DEVICE_INFO of the size passed.
        let rc = unsafe {
            Tbsi_GetDeviceInfo(
                std::mem::size_of::<TPM_DEVICE_INFO>() as u32,
                (&mut info as *mut TPM_DEVICE_INFO).cast(),
            )
        };
        match rc {
            TBS_SUCCESS => TpmAnswer::Found(info.tpmVersion),
            rc if rc == TBS_E_TPM_NOT_FOUND as u32 => TpmAnswer::NotFound,
            rc => TpmAnswer::Failed(rc),
        }
    }

    /// The raw SMBIOS table (`RawSMBIOSData`), or `None`.
    pub fn smbios() -> Option<Vec<u8>> {
        // SAFETY: with no buffer, the call only returns the size needed.
        let size = unsafe { GetSystemFirmwareTable(RSMB, 0, std::ptr::null_mut(), 0) };
        if size == 0 {
            return None;
        }
        let mut buf = vec![0u8; size as usize];
        // SAFETY: `buf` holds `size` writable bytes.
        let got = unsafe { GetSystemFirmwareTable(RSMB, 0, buf.as_mut_ptr(), size) };
        if got == 0 || got > size {
            return None;
        }
        buf.truncate(got as usize);
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::windows::values::fixtures::key;

    fn state(text: &str) -> Values {
        key(text, SECURE_BOOT_KEY)
    }

    #[test]
    fn a_windows_11_pc_boots_uefi_with_secure_boot_and_tpm_2() {
        let sb = state(include_str!("fixtures/secure_boot_on.txt"));
        let f = firmware(Some(2), Some(&sb), TpmAnswer::Found(2), None);
        assert_eq!(f.boot_mode.as_deref(), Some("uefi"));
        assert_eq!(f.secure_boot, Some(true));
        assert_eq!(f.uefi_supported, Some(true));
        assert_eq!(
            f.tpm,
            Some(Tpm {
                present: true,
                version: Some("2.0".into())
            })
        );
    }

    #[test]
    fn an_older_pc_boots_legacy_with_a_tpm_1_2() {
        // Legacy boot: the SecureBoot\State key is not there at all.
        let f = firmware(Some(1), None, TpmAnswer::Found(1), Some(false));
        assert_eq!(f.boot_mode.as_deref(), Some("legacy"));
        assert_eq!(f.uefi_supported, Some(false));
        assert_eq!(f.secure_boot, Some(false));
        assert_eq!(f.tpm.unwrap().version.as_deref(), Some("1.2"));
    }

    #[test]
    fn what_could_not_be_read_stays_unknown() {
        let off = state(include_str!("fixtures/secure_boot_off.txt"));
        let f = firmware(Some(2), Some(&off), TpmAnswer::NotFound, None);
        assert_eq!(f.secure_boot, Some(false));
        assert_eq!(
            f.tpm,
            Some(Tpm {
                present: false,
                version: None
            })
        );
        // TBS_E_SERVICE_DISABLED, and no firmware type.
        let f = firmware(None, None, TpmAnswer::Failed(0x8028_4008), None);
        assert_eq!(f, Firmware::default());
    }
}
