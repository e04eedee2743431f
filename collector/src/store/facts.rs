//! The inventory facts of a host ([`Facts`]) in columns of `hosts`.

use campanile_territory::host::Facts;
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

/// Writes the facts columns of one host (the row must exist).
pub fn write(f: &Facts, conn: &Connection, host_id: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE hosts SET os_edition = ?2, serial = ?3, macs = ?4, vendor = ?5, model = ?6,
            cpu_model = ?7, cpu_cores = ?8, memory_total_bytes = ?9,
            system_disk_bytes = ?10, bios_date = ?11 WHERE host_id = ?1",
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
}
