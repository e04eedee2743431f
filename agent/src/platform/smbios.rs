//! The SMBIOS table as Windows hands it out (`GetSystemFirmwareTable` with
//! the `RSMB` provider): the machine's maker, model and serial, its BIOS,
//! and the memory modules installed. Linux reads the same fields from
//! sysfs, already decoded by the kernel.
//!
//! Layouts from DMTF DSP0134 (SMBIOS 3.x): every structure is a header
//! (type, length, handle), `length` bytes of fields in all, then its
//! strings, each NUL-terminated, the set ended by one more NUL. A field
//! that names a string holds its 1-based index, 0 for none.

use campanile_proto::v1::Dmi;

/// What the agent takes from the table.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SmbiosFacts {
    pub dmi: Dmi,
    /// The sum of the memory devices' sizes: what is installed, not what
    /// the OS may use (less by the firmware's and graphics' share).
    pub memory_installed_bytes: Option<u64>,
    /// The BIOS characteristics say UEFI is supported (SMBIOS 2.7+);
    /// `None` when the table is older or has no such byte.
    pub uefi_supported: Option<bool>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SmbiosError {
    #[error("SMBIOS data of {0} bytes is shorter than its 8-byte header")]
    NoHeader(usize),
    #[error("SMBIOS header says {said} bytes of table, {have} follow it")]
    Truncated { said: usize, have: usize },
}

const BIOS_INFORMATION: u8 = 0;
const SYSTEM_INFORMATION: u8 = 1;
const MEMORY_DEVICE: u8 = 17;
const END_OF_TABLE: u8 = 127;

/// Decodes `RawSMBIOSData`: a 4-byte version header, the table's length
/// (u32, little-endian), then the table.
pub fn parse_raw(raw: &[u8]) -> Result<SmbiosFacts, SmbiosError> {
    let header: [u8; 8] = raw
        .get(..8)
        .and_then(|h| h.try_into().ok())
        .ok_or(SmbiosError::NoHeader(raw.len()))?;
    let said = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let table = raw.get(8..8 + said).ok_or(SmbiosError::Truncated {
        said,
        have: raw.len() - 8,
    })?;
    Ok(parse_table(table))
}

/// Decodes the structures of a table. A structure cut short ends the walk
/// with what was read before it: firmware tables are sometimes sloppy at
/// the end, and the first structures are the ones that matter.
pub fn parse_table(table: &[u8]) -> SmbiosFacts {
    let mut out = SmbiosFacts::default();
    let mut memory: Option<u64> = None;
    let mut seen_bios = false;
    let mut seen_system = false;
    for s in Structures(table) {
        match s.kind {
            // Only the first of each: a table has one of either.
            BIOS_INFORMATION if !seen_bios => {
                seen_bios = true;
                out.dmi.bios_vendor = s.string_at(0x04);
                out.dmi.bios_version = s.string_at(0x05);
                out.dmi.bios_date = s.string_at(0x08);
                // Characteristics extension byte 2, bit 3. The byte sits
                // at 0x13 when the extension bytes are there (length
                // 0x14 or more).
                out.uefi_supported = s.byte(0x13).map(|b| b & 0x08 != 0);
            }
            SYSTEM_INFORMATION if !seen_system => {
                seen_system = true;
                out.dmi.system_vendor = s.string_at(0x04);
                out.dmi.product_name = s.string_at(0x05);
                out.dmi.product_serial = s.string_at(0x07);
            }
            MEMORY_DEVICE => {
                if let Some(bytes) = s.memory_device_bytes() {
                    *memory.get_or_insert(0) += bytes;
                }
            }
            END_OF_TABLE => break,
            _ => {}
        }
    }
    out.memory_installed_bytes = memory.filter(|b| *b > 0);
    out
}

struct Structure<'a> {
    kind: u8,
    /// The formatted area, header included (offsets as in the spec).
    fields: &'a [u8],
    strings: &'a [u8],
}

impl Structure<'_> {
    fn byte(&self, offset: usize) -> Option<u8> {
        self.fields.get(offset).copied()
    }

    fn word(&self, offset: usize) -> Option<u16> {
        let b = self.fields.get(offset..offset + 2)?;
        Some(u16::from_le_bytes([b[0], b[1]]))
    }

    fn dword(&self, offset: usize) -> Option<u32> {
        let b = self.fields.get(offset..offset + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The string a field names, trimmed; `None` for index 0, an index
    /// past the set, or a blank string.
    fn string_at(&self, offset: usize) -> Option<String> {
        let index = usize::from(self.byte(offset)?);
        if index == 0 {
            return None;
        }
        let raw = self
            .strings
            .split(|b| *b == 0)
            .take_while(|s| !s.is_empty())
            .nth(index - 1)?;
        // Firmware strings are meant to be ASCII; anything else is shown,
        // not refused.
        let s = String::from_utf8_lossy(raw);
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_owned())
    }

    /// Type 17's size: 0 is an empty slot, 0xFFFF unknown, bit 15 set
    /// counts KiB instead of MiB, and 0x7FFF says the size is in the
    /// extended field (MiB, 31 bits) of SMBIOS 2.7 and later.
    fn memory_device_bytes(&self) -> Option<u64> {
        const MIB: u64 = 1024 * 1024;
        match self.word(0x0C)? {
            0 | 0xFFFF => None,
            0x7FFF => Some(u64::from(self.dword(0x1C)? & 0x7FFF_FFFF) * MIB),
            w if w & 0x8000 != 0 => Some(u64::from(w & 0x7FFF) * 1024),
            w => Some(u64::from(w) * MIB),
        }
    }
}

/// Walks the structures of a table.
struct Structures<'a>(&'a [u8]);

impl<'a> Iterator for Structures<'a> {
    type Item = Structure<'a>;

    fn next(&mut self) -> Option<Structure<'a>> {
        let rest = self.0;
        let kind = *rest.first()?;
        let length = usize::from(*rest.get(1)?);
        // A header is 4 bytes; less means the table is damaged here.
        if length < 4 || rest.len() < length {
            self.0 = &[];
            return None;
        }
        let fields = &rest[..length];
        let after = &rest[length..];
        // The string set ends at the first double NUL; a structure with
        // no strings has just the two NULs.
        let end = after.windows(2).position(|w| w == [0, 0]);
        let Some(end) = end else {
            self.0 = &[];
            return None;
        };
        self.0 = &after[end + 2..];
        Some(Structure {
            kind,
            fields,
            strings: &after[..end + 1],
        })
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Tables assembled field by field after DSP0134's layouts, with the
    //! strings and sizes such machines show in `dmidecode` and in
    //! `Get-CimInstance Win32_BIOS, Win32_ComputerSystemProduct,
    //! Win32_PhysicalMemory` on Windows 10 and 11. No firmware was dumped
    //! here: this VM has no SMBIOS at all.

    /// One structure: its type, the fields after the 4-byte header, and
    /// its strings.
    pub fn structure(kind: u8, handle: u16, fields: &[u8], strings: &[&str]) -> Vec<u8> {
        let mut out = vec![kind, (4 + fields.len()) as u8];
        out.extend_from_slice(&handle.to_le_bytes());
        out.extend_from_slice(fields);
        for s in strings {
            // An empty string would end the set: firmware names none by
            // index 0 instead.
            assert!(!s.is_empty(), "SMBIOS strings are never empty");
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
        if strings.is_empty() {
            out.push(0);
        }
        out.push(0);
        out
    }

    /// Type 0, SMBIOS 3.x length (0x1A): vendor 1, version 2, date 3.
    pub fn bios(vendor: &str, version: &str, date: &str) -> Vec<u8> {
        let mut f = [0u8; 0x1A];
        f[0x04] = 1;
        f[0x05] = 2;
        f[0x06..0x08].copy_from_slice(&0xF000u16.to_le_bytes());
        f[0x08] = 3;
        f[0x09] = 0xFF; // ROM size: see the extended field
        // Characteristics extension byte 2, bit 3: UEFI is supported.
        f[0x13] = 0x0C;
        structure(0, 0x0000, &f[4..], &[vendor, version, date])
    }

    /// Type 1, SMBIOS 2.4+ length (0x1B).
    pub fn system(maker: &str, product: &str, version: &str, serial: &str) -> Vec<u8> {
        let mut f = [0u8; 0x1B];
        f[0x04] = 1;
        f[0x05] = 2;
        f[0x06] = 3;
        f[0x07] = 4;
        f[0x08..0x18].copy_from_slice(&[
            0x4c, 0x4c, 0x45, 0x44, 0x00, 0x32, 0x4a, 0x10, 0x80, 0x4e, 0xb3, 0xc0, 0x4f, 0x4b,
            0x38, 0x32,
        ]);
        f[0x18] = 6; // woken by the power switch
        f[0x19] = 5;
        f[0x1A] = 6;
        structure(
            1,
            0x0100,
            &f[4..],
            &[
                maker,
                product,
                version,
                serial,
                "SKU=NotProvided",
                "OptiPlex",
            ],
        )
    }

    /// Type 17 of SMBIOS 3.2 (0x54 bytes), `size_word` as the spec
    /// encodes it and `extended_mib` in the 2.7 field.
    pub fn memory_device(handle: u16, size_word: u16, extended_mib: u32, locator: &str) -> Vec<u8> {
        let mut f = [0u8; 0x54];
        f[0x08..0x0A].copy_from_slice(&64u16.to_le_bytes());
        f[0x0A..0x0C].copy_from_slice(&64u16.to_le_bytes());
        f[0x0C..0x0E].copy_from_slice(&size_word.to_le_bytes());
        f[0x0E] = 0x0D; // SODIMM
        f[0x10] = 1;
        f[0x11] = 2;
        f[0x12] = 0x1A; // DDR4
        f[0x1C..0x20].copy_from_slice(&extended_mib.to_le_bytes());
        structure(17, handle, &f[4..], &[locator, "BANK 0"])
    }

    pub fn end() -> Vec<u8> {
        structure(127, 0xFEFF, &[], &[])
    }

    /// The table as `GetSystemFirmwareTable('RSMB')` returns it.
    pub fn raw(structures: &[Vec<u8>]) -> Vec<u8> {
        let table: Vec<u8> = structures.concat();
        let mut out = vec![0, 3, 2, 0];
        out.extend_from_slice(&(table.len() as u32).to_le_bytes());
        out.extend_from_slice(&table);
        out
    }

    /// A Windows 10 desktop: a Dell OptiPlex 7070, two 8 GiB modules.
    pub fn optiplex_7070() -> Vec<u8> {
        raw(&[
            bios("Dell Inc.", "1.21.0", "07/11/2023"),
            system("Dell Inc.", "OptiPlex 7070", "Not Specified", "8QX2JK3"),
            memory_device(0x1100, 8192, 0, "DIMM1"),
            memory_device(0x1101, 8192, 0, "DIMM2"),
            end(),
        ])
    }

    /// A Windows 11 laptop: a Lenovo ThinkPad T14 Gen 3 with 32 GiB
    /// soldered as one device and an empty slot.
    pub fn thinkpad_t14() -> Vec<u8> {
        raw(&[
            bios("LENOVO", "R23ET70W (1.46 )", "05/21/2024"),
            system("LENOVO", "21AHCTO1WW", "ThinkPad T14 Gen 3", "PF3ABCDE"),
            memory_device(0x0040, 0x7FFF, 32768, "ChannelA-DIMM0"),
            memory_device(0x0041, 0, 0, "ChannelB-DIMM0"),
            end(),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn a_desktop_gives_maker_model_serial_bios_and_its_memory() {
        let f = parse_raw(&optiplex_7070()).unwrap();
        assert_eq!(f.dmi.system_vendor.as_deref(), Some("Dell Inc."));
        assert_eq!(f.dmi.product_name.as_deref(), Some("OptiPlex 7070"));
        assert_eq!(f.dmi.product_serial.as_deref(), Some("8QX2JK3"));
        assert_eq!(f.dmi.bios_vendor.as_deref(), Some("Dell Inc."));
        assert_eq!(f.dmi.bios_version.as_deref(), Some("1.21.0"));
        assert_eq!(f.dmi.bios_date.as_deref(), Some("07/11/2023"));
        assert_eq!(f.memory_installed_bytes, Some(16 << 30));
        assert_eq!(f.uefi_supported, Some(true));
    }

    #[test]
    fn extended_sizes_count_and_empty_slots_do_not() {
        let f = parse_raw(&thinkpad_t14()).unwrap();
        assert_eq!(f.dmi.product_name.as_deref(), Some("21AHCTO1WW"));
        // Trailing blanks of the firmware's string are trimmed.
        assert_eq!(f.dmi.bios_version.as_deref(), Some("R23ET70W (1.46 )"));
        assert_eq!(f.memory_installed_bytes, Some(32 << 30));
    }

    #[test]
    fn sizes_in_kib_unknown_sizes_and_no_modules() {
        let kib = parse_table(&[memory_device(1, 0x8000 | 512, 0, "A"), end()].concat());
        assert_eq!(kib.memory_installed_bytes, Some(512 * 1024));
        let unknown = parse_table(&[memory_device(1, 0xFFFF, 0, "A"), end()].concat());
        assert_eq!(unknown.memory_installed_bytes, None);
        let none = parse_table(&end());
        assert_eq!(none, SmbiosFacts::default());
    }

    #[test]
    fn absent_or_blank_strings_are_not_reported() {
        // A virtual machine's firmware: no serial string, a blank model.
        let mut sys = system("QEMU", " ", "pc-q35-8.2", "x");
        // Point the serial at string 0 (none).
        sys[0x07] = 0;
        let f = parse_table(&[sys, end()].concat());
        assert_eq!(f.dmi.system_vendor.as_deref(), Some("QEMU"));
        assert_eq!(f.dmi.product_name, None);
        assert_eq!(f.dmi.product_serial, None);
    }

    #[test]
    fn a_damaged_table_keeps_what_came_before_the_damage() {
        let mut table = [
            bios("Dell Inc.", "1.21.0", "07/11/2023"),
            system("Dell Inc.", "OptiPlex 7070", "Not Specified", "8QX2JK3"),
        ]
        .concat();
        // A structure that says it is longer than what is left.
        table.extend_from_slice(&[17, 0x54, 0, 0, 1, 2]);
        let f = parse_table(&table);
        assert_eq!(f.dmi.product_serial.as_deref(), Some("8QX2JK3"));
        assert_eq!(f.memory_installed_bytes, None);
        // Unterminated strings, and a length below the header's.
        assert_eq!(parse_table(&[1, 0x1B, 0, 0, 1]), SmbiosFacts::default());
        assert_eq!(parse_table(&[1, 2, 0, 0, 0, 0]), SmbiosFacts::default());
        let mut open = system("Dell Inc.", "OptiPlex", "Not Specified", "S");
        open.truncate(open.len() - 2);
        assert_eq!(parse_table(&open), SmbiosFacts::default());
    }

    #[test]
    fn the_raw_header_is_checked() {
        assert_eq!(parse_raw(&[0, 3]), Err(SmbiosError::NoHeader(2)));
        let mut raw = optiplex_7070();
        raw.truncate(40);
        assert!(matches!(
            parse_raw(&raw),
            Err(SmbiosError::Truncated { have: 32, .. })
        ));
    }
}
