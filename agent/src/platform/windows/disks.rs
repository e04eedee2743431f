//! Physical disks: `\\.\PhysicalDriveN` asked for its identity, whether
//! it incurs a seek penalty (spins) and its size. Opening a drive with no
//! access rights is enough for these three, so no administrator is
//! needed.

use campanile_proto::v1::Disk;

/// A disk's identity from `STORAGE_DEVICE_DESCRIPTOR`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DeviceIds {
    pub model: Option<String>,
    pub serial: Option<String>,
    pub removable: bool,
}

/// Decodes `STORAGE_DEVICE_DESCRIPTOR`: RemovableMedia at byte 10, then
/// the offsets (u32, from the start of the buffer, 0 for none) of the
/// vendor at 12, the product at 16 and the serial at 24, each a
/// NUL-terminated ASCII string further in the buffer. The model is vendor
/// and product as Device Manager shows them (ATA disks have no vendor).
pub fn device_ids(buf: &[u8]) -> Option<DeviceIds> {
    let offset = |at: usize| -> Option<usize> {
        let b: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(b) as usize)
    };
    let string = |at: usize| -> Option<String> {
        let start = offset(at)?;
        if start == 0 {
            return None;
        }
        let rest = buf.get(start..)?;
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        let s = String::from_utf8_lossy(&rest[..end]);
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_owned())
    };
    let removable = *buf.get(10)? != 0;
    let model = match (string(12), string(16)) {
        (Some(v), Some(p)) => Some(format!("{v} {p}")),
        (v, p) => p.or(v),
    };
    Some(DeviceIds {
        model,
        serial: string(24),
        removable,
    })
}

/// `DEVICE_SEEK_PENALTY_DESCRIPTOR`: IncursSeekPenalty at byte 8.
pub fn seek_penalty(buf: &[u8]) -> Option<bool> {
    buf.get(8).map(|b| *b != 0)
}

/// `DISK_GEOMETRY_EX`: DiskSize (i64) after the 24-byte DISK_GEOMETRY.
pub fn disk_size(buf: &[u8]) -> Option<u64> {
    let b: [u8; 8] = buf.get(24..32)?.try_into().ok()?;
    u64::try_from(i64::from_le_bytes(b)).ok().filter(|s| *s > 0)
}

pub fn disk(index: u32, ids: DeviceIds, rotational: Option<bool>, size: Option<u64>) -> Disk {
    Disk {
        name: format!("PhysicalDrive{index}"),
        model: ids.model,
        serial: ids.serial,
        size_bytes: size,
        rotational,
    }
}

// Calls into Windows: each unsafe block says why it is sound.
#[cfg(windows)]
#[allow(unsafe_code)]
pub mod read {
    use super::*;
    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, INVALID_HANDLE_VALUE};
    use windows_sys::Win32::Storage::FileSystem::{
        CreateFileW, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
    };
    use windows_sys::Win32::System::IO::DeviceIoControl;
    use windows_sys::Win32::System::Ioctl::{
        IOCTL_DISK_GET_DRIVE_GEOMETRY_EX, IOCTL_STORAGE_QUERY_PROPERTY,
    };

    /// Drive numbers may have gaps (a disk removed); Windows numbers
    /// few enough that trying each is cheap.
    const MAX_DRIVES: u32 = 32;
    const STORAGE_DEVICE_PROPERTY: u32 = 0;
    const STORAGE_DEVICE_SEEK_PENALTY_PROPERTY: u32 = 7;

    /// The fixed disks, or `None` if not one drive could be opened.
    pub fn disks() -> Option<Vec<Disk>> {
        let mut out = Vec::new();
        let mut opened = false;
        for n in 0..MAX_DRIVES {
            let Some(h) = open(n) else { continue };
            opened = true;
            let ids = property(h, STORAGE_DEVICE_PROPERTY, 1024).and_then(|b| device_ids(&b));
            let rotational = property(h, STORAGE_DEVICE_SEEK_PENALTY_PROPERTY, 12)
                .and_then(|b| seek_penalty(&b));
            let size =
                ioctl(h, IOCTL_DISK_GET_DRIVE_GEOMETRY_EX, &[], 256).and_then(|b| disk_size(&b));
            // SAFETY: the handle opened above, closed once.
            unsafe { CloseHandle(h) };
            let ids = ids.unwrap_or_default();
            if !ids.removable {
                out.push(disk(n, ids, rotational, size));
            }
        }
        opened.then_some(out)
    }

    fn open(n: u32) -> Option<HANDLE> {
        let path: Vec<u16> = format!(r"\\.\PhysicalDrive{n}")
            .encode_utf16()
            .chain([0])
            .collect();
        // SAFETY: a NUL-terminated path; access 0 asks for no rights,
        // which the three queries need none of.
        let h = unsafe {
            CreateFileW(
                path.as_ptr(),
                0,
                FILE_SHARE_READ | FILE_SHARE_WRITE,
                std::ptr::null(),
                OPEN_EXISTING,
                0,
                std::ptr::null_mut(),
            )
        };
        (h != INVALID_HANDLE_VALUE && !h.is_null()).then_some(h)
    }

    /// IOCTL_STORAGE_QUERY_PROPERTY, standard query, for `property`.
    fn property(h: HANDLE, property: u32, out: usize) -> Option<Vec<u8>> {
        // STORAGE_PROPERTY_QUERY: PropertyId, QueryType (standard = 0),
        // one byte of AdditionalParameters, padded to 12.
        let mut query = [0u8; 12];
        query[..4].copy_from_slice(&property.to_le_bytes());
        ioctl(h, IOCTL_STORAGE_QUERY_PROPERTY, &query, out)
    }

    fn ioctl(h: HANDLE, code: u32, input: &[u8], out: usize) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; out];
        let mut returned = 0u32;
        // SAFETY: input and output buffers are valid for the sizes given;
        // the call is synchronous (no OVERLAPPED).
        let ok = unsafe {
            DeviceIoControl(
                h,
                code,
                input.as_ptr().cast(),
                input.len() as u32,
                buf.as_mut_ptr().cast(),
                out as u32,
                &mut returned,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return None;
        }
        buf.truncate(returned as usize);
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A STORAGE_DEVICE_DESCRIPTOR as Windows fills it for an NVMe SSD:
    /// the header, then the strings it points at.
    fn descriptor(vendor: Option<&str>, product: &str, serial: &str, removable: bool) -> Vec<u8> {
        let mut buf = vec![0u8; 40];
        buf[0..4].copy_from_slice(&1u32.to_le_bytes());
        buf[10] = removable as u8;
        let put = |at: usize, s: &str, buf: &mut Vec<u8>| {
            let start = buf.len() as u32;
            buf[at..at + 4].copy_from_slice(&start.to_le_bytes());
            buf.extend_from_slice(s.as_bytes());
            buf.push(0);
        };
        if let Some(v) = vendor {
            put(12, v, &mut buf);
        }
        put(16, product, &mut buf);
        put(20, "1B2QEXP7", &mut buf);
        put(24, serial, &mut buf);
        buf[28..32].copy_from_slice(&17u32.to_le_bytes()); // BusTypeNvme
        let len = buf.len() as u32;
        buf[4..8].copy_from_slice(&len.to_le_bytes());
        buf
    }

    #[test]
    fn model_and_serial_come_from_the_descriptor() {
        let nvme = descriptor(
            None,
            "Samsung SSD 980 500GB",
            "0025_3852_1190_E6D1_0000_0000_0000_0000.",
            false,
        );
        let ids = device_ids(&nvme).unwrap();
        assert_eq!(ids.model.as_deref(), Some("Samsung SSD 980 500GB"));
        assert_eq!(
            ids.serial.as_deref(),
            Some("0025_3852_1190_E6D1_0000_0000_0000_0000.")
        );
        assert!(!ids.removable);
        let usb = descriptor(Some("SanDisk"), "Cruzer Blade    ", "  4C530001", true);
        let ids = device_ids(&usb).unwrap();
        assert_eq!(ids.model.as_deref(), Some("SanDisk Cruzer Blade"));
        assert_eq!(ids.serial.as_deref(), Some("4C530001"));
        assert!(ids.removable);
        assert_eq!(device_ids(&[0; 8]), None);
    }

    #[test]
    fn seek_penalty_and_size() {
        let hdd = [1, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0];
        assert_eq!(seek_penalty(&hdd), Some(true));
        assert_eq!(seek_penalty(&hdd[..8]), None);
        // DISK_GEOMETRY_EX of a 500 GB disk (500,107,862,016 bytes).
        let mut geo = vec![0u8; 32];
        geo[24..32].copy_from_slice(&500_107_862_016i64.to_le_bytes());
        assert_eq!(disk_size(&geo), Some(500_107_862_016));
        assert_eq!(disk_size(&geo[..24]), None);
        let d = disk(0, DeviceIds::default(), Some(false), Some(1));
        assert_eq!(d.name, "PhysicalDrive0");
    }
}
