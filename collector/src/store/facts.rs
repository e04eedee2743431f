//! The inventory facts of a host ([`Facts`]) in columns of `hosts`.

use campanile_territory::host::{Facts, FirmwareFacts};
use rusqlite::{Connection, params};

/// MACs as stored: space-separated.
pub fn macs_column(f: &Facts) -> Option<String> {
    (!f.macs.is_empty()).then(|| f.macs.join(" "))
}

pub fn macs_from_column(column: Option<String>) -> Vec<String> {
    column
        .map(|c| c.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The firmware facts from their columns: `firmware_read` says whether
/// the agent read them at all.
pub fn firmware_from_columns(
    read: Option<bool>,
    tpm_present: Option<bool>,
    tpm_version: Option<String>,
    uefi_supported: Option<bool>,
    secure_boot: Option<bool>,
) -> Option<FirmwareFacts> {
    read.unwrap_or(false).then_some(FirmwareFacts {
        tpm_present,
        tpm_version,
        uefi_supported,
        secure_boot,
    })
}

/// Writes the facts columns of one host (the row must exist).
pub fn write(f: &Facts, conn: &Connection, host_id: &str) -> rusqlite::Result<()> {
    let fw = f.firmware.as_ref();
    conn.execute(
        "UPDATE hosts SET os_edition = ?2, serial = ?3, macs = ?4, vendor = ?5, model = ?6,
            cpu_model = ?7, cpu_cores = ?8, memory_total_bytes = ?9,
            system_disk_bytes = ?10, bios_date = ?11, firmware_read = ?12,
            tpm_present = ?13, tpm_version = ?14, uefi_supported = ?15, secure_boot = ?16
            WHERE host_id = ?1",
        params![
            host_id,
            f.os_edition,
            f.serial,
            macs_column(f),
            f.vendor,
            f.model,
            f.cpu_model,
            f.cpu_cores,
            f.memory_total_bytes.map(|b| b as i64),
            f.system_disk_bytes.map(|b| b as i64),
            f.bios_date,
            fw.is_some(),
            fw.and_then(|w| w.tpm_present),
            fw.and_then(|w| w.tpm_version.as_deref()),
            fw.and_then(|w| w.uefi_supported),
            fw.and_then(|w| w.secure_boot),
        ],
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_macs_column_round_trips() {
        let f = Facts {
            macs: vec!["aa:00:00:00:00:01".into(), "bb:00:00:00:00:01".into()],
            ..Facts::default()
        };
        assert_eq!(macs_from_column(macs_column(&f)), f.macs);
        assert_eq!(macs_column(&Facts::default()), None);
    }

    #[test]
    fn firmware_facts_round_trip_and_stay_unknown_when_unread() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::schema::migrations()
            .to_latest(&mut conn)
            .unwrap();
        conn.execute(
            "INSERT INTO hosts (host_id, site, first_seen_ms, last_report_ms, last_collected_ms,
                interval_secs, epoch, last_seq, agent_version)
             VALUES ('pc', 's', 0, 0, 0, 60, 1, 0, 'x')",
            [],
        )
        .unwrap();
        let read_back = |conn: &Connection| {
            conn.query_row(
                "SELECT firmware_read, tpm_present, tpm_version, uefi_supported, secure_boot
                 FROM hosts WHERE host_id = 'pc'",
                [],
                |r| {
                    Ok(firmware_from_columns(
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                    ))
                },
            )
            .unwrap()
        };
        let fw = FirmwareFacts {
            tpm_present: Some(true),
            tpm_version: Some("2.0".into()),
            uefi_supported: Some(true),
            secure_boot: None,
        };
        let f = Facts {
            firmware: Some(fw.clone()),
            ..Facts::default()
        };
        write(&f, &conn, "pc").unwrap();
        assert_eq!(read_back(&conn), Some(fw));
        write(&Facts::default(), &conn, "pc").unwrap();
        assert_eq!(read_back(&conn), None);
    }
}
