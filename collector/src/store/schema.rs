//! Schema migrations, applied in order at open (tracked in `user_version`).
//! Never edit a migration that has shipped: add a new one.

use campanile_proto::v1::Inventory;
use prost::Message;
use rusqlite_migration::{HookError, M, Migrations};

use campanile_territory::host::Facts;

use super::facts;

pub fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(
            "CREATE TABLE hosts (
            host_id              TEXT PRIMARY KEY NOT NULL,
            site                 TEXT NOT NULL,
            first_seen_ms        INTEGER NOT NULL,
            -- collector clock at the last committed report: decides up/down
            last_report_ms       INTEGER NOT NULL,
            -- agent clock at collection of that report
            last_collected_ms    INTEGER NOT NULL,
            interval_secs        INTEGER NOT NULL,
            -- dedup cursor: (epoch, last_seq), u64 stored as their i64 bits
            epoch                INTEGER NOT NULL,
            last_seq             INTEGER NOT NULL,
            agent_version        TEXT NOT NULL,
            health               BLOB,   -- campanile.v1.Health
            agent_stats          BLOB,   -- campanile.v1.AgentStats
            inventory            BLOB,   -- campanile.v1.Inventory
            inventory_sha256     BLOB,
            inventory_updated_ms INTEGER,
            -- copied out of the inventory so /metrics needs no decoding of it
            hostname             TEXT,
            os_name              TEXT,
            os_version           TEXT,
            kernel               TEXT,
            arch                 TEXT
        ) STRICT;
        CREATE TABLE inventory_changes (
            id          INTEGER PRIMARY KEY,
            host_id     TEXT NOT NULL REFERENCES hosts(host_id) ON DELETE CASCADE,
            changed_ms  INTEGER NOT NULL,
            field       TEXT NOT NULL,
            old_value   TEXT,
            new_value   TEXT
        ) STRICT;
        CREATE INDEX inventory_changes_by_host ON inventory_changes(host_id, id);",
        ),
        // 2: the inventory facts the territory view needs, copied into
        // columns so evaluating 10,000 hosts never decodes their package lists.
        M::up_with_hook(
            "ALTER TABLE hosts ADD COLUMN os_edition TEXT;
             ALTER TABLE hosts ADD COLUMN serial TEXT;
             ALTER TABLE hosts ADD COLUMN macs TEXT;
             ALTER TABLE hosts ADD COLUMN vendor TEXT;
             ALTER TABLE hosts ADD COLUMN model TEXT;
             ALTER TABLE hosts ADD COLUMN cpu_model TEXT;
             ALTER TABLE hosts ADD COLUMN cpu_cores INTEGER;
             ALTER TABLE hosts ADD COLUMN memory_total_bytes INTEGER;
             ALTER TABLE hosts ADD COLUMN system_disk_bytes INTEGER;
             ALTER TABLE hosts ADD COLUMN bios_date TEXT;",
            backfill_facts,
        ),
        // 3: network probes. The latest results of each host, the probe
        // duty it holds, and per-site counters that only grow.
        M::up(
            "ALTER TABLE hosts ADD COLUMN probes BLOB;   -- campanile.v1.Probes
             ALTER TABLE hosts ADD COLUMN probe_duty_sha256 BLOB;
             CREATE TABLE probe_counters (
                site            TEXT NOT NULL,
                target          TEXT NOT NULL,
                packets_sent    INTEGER NOT NULL,
                packets_lost    INTEGER NOT NULL,
                checks          INTEGER NOT NULL,
                check_failures  INTEGER NOT NULL,
                PRIMARY KEY (site, target)
             ) STRICT, WITHOUT ROWID;",
        ),
        // 4: dedup by (host, epoch, seq) for every recent epoch of a host,
        // not only the latest: an old epoch's reports (a restored disk, a
        // spool set aside and found again) must not pass as new, nor reset
        // the dedup of the current epoch.
        M::up(
            "CREATE TABLE delivery_cursors (
                host_id     TEXT NOT NULL,
                epoch       INTEGER NOT NULL,  -- u64 stored as its i64 bits
                last_seq    INTEGER NOT NULL,
                updated_ms  INTEGER NOT NULL,
                PRIMARY KEY (host_id, epoch)
             ) STRICT, WITHOUT ROWID;
             INSERT INTO delivery_cursors (host_id, epoch, last_seq, updated_ms)
                SELECT host_id, epoch, last_seq, last_report_ms FROM hosts;",
        ),
        // 5: what the latest request said about the agent itself, for the
        // clock and certificate alerts.
        M::up(
            "ALTER TABLE hosts ADD COLUMN clock_offset_ms INTEGER;
             ALTER TABLE hosts ADD COLUMN cert_not_after_ms INTEGER;",
        ),
        // 6: the full inventory in a table of its own. In the hosts row it
        // was rewritten with every report (SQLite rewrites a whole row on
        // update, overflow pages and all): a few KiB to a few tens of KiB
        // read and written per report for a row whose changing part is a
        // few hundred bytes, and every column after it behind its overflow
        // chain. It changes only when the inventory does.
        M::up(
            "CREATE TABLE host_inventories (
                host_id    TEXT PRIMARY KEY NOT NULL REFERENCES hosts(host_id) ON DELETE CASCADE,
                inventory  BLOB NOT NULL   -- campanile.v1.Inventory
             ) STRICT;
             INSERT INTO host_inventories (host_id, inventory)
                SELECT host_id, inventory FROM hosts WHERE inventory IS NOT NULL;
             ALTER TABLE hosts DROP COLUMN inventory;",
        ),
        // Stored values that no longer decode, set aside when found so the
        // host's next report can replace them, and kept for inspection.
        M::up(
            "CREATE TABLE damaged_rows (
                host_id   TEXT NOT NULL,
                what      TEXT NOT NULL,
                found_ms  INTEGER NOT NULL,
                bytes     BLOB
             ) STRICT;",
        ),
        // 8: enrollment tokens (only a hash of each credential) and every
        // certificate the collector signed, with its revocation.
        M::up(
            "CREATE TABLE enrollment_tokens (
                id             TEXT PRIMARY KEY NOT NULL,
                secret_sha256  BLOB NOT NULL,
                site           TEXT NOT NULL,
                name           TEXT NOT NULL,
                uses_total     INTEGER NOT NULL,
                uses_left      INTEGER NOT NULL,
                may_replace    INTEGER NOT NULL,
                created_ms     INTEGER NOT NULL,
                expires_ms     INTEGER NOT NULL,
                revoked_ms     INTEGER
             ) STRICT;
             CREATE TABLE certificates (
                serial          TEXT PRIMARY KEY NOT NULL,  -- lower-case hex
                host_id         TEXT NOT NULL,
                site            TEXT NOT NULL,
                ca_sha256       TEXT NOT NULL,
                not_before_ms   INTEGER NOT NULL,
                not_after_ms    INTEGER NOT NULL,
                issued_ms       INTEGER NOT NULL,
                how             TEXT NOT NULL,              -- enrolled
                token_id        TEXT,
                revoked_ms      INTEGER,
                revoked_reason  TEXT
             ) STRICT;
             CREATE INDEX certificates_by_host ON certificates(host_id, not_after_ms);",
        ),
        // 9: every revoked certificate by serial, the collector's own and
        // those issued by hand (not in the ledger: no expiry known).
        M::up(
            "CREATE TABLE revocations (
                serial        TEXT PRIMARY KEY NOT NULL,  -- lower-case hex
                host_id       TEXT,
                revoked_ms    INTEGER NOT NULL,
                reason        TEXT NOT NULL,
                not_after_ms  INTEGER
             ) STRICT;
             CREATE INDEX revocations_by_host ON revocations(host_id, revoked_ms);
             INSERT INTO revocations (serial, host_id, revoked_ms, reason, not_after_ms)
                SELECT serial, host_id, revoked_ms, coalesce(revoked_reason, ''), not_after_ms
                  FROM certificates WHERE revoked_ms IS NOT NULL;",
        ),
        // 10: the firmware's part of Windows 11 readiness, from agents
        // that read it (firmware_read = 1); NULL elsewhere, unknown.
        M::up(
            "ALTER TABLE hosts ADD COLUMN firmware_read INTEGER;
             ALTER TABLE hosts ADD COLUMN tpm_present INTEGER;
             ALTER TABLE hosts ADD COLUMN tpm_version TEXT;
             ALTER TABLE hosts ADD COLUMN uefi_supported INTEGER;
             ALTER TABLE hosts ADD COLUMN secure_boot INTEGER;",
        ),
    ])
}

/// Fills the facts columns of hosts stored before migration 2.
fn backfill_facts(tx: &rusqlite::Transaction<'_>) -> Result<(), HookError> {
    let rows: Vec<(String, Vec<u8>)> = tx
        .prepare("SELECT host_id, inventory FROM hosts WHERE inventory IS NOT NULL")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (host, bytes) in rows {
        let inv = Inventory::decode(bytes.as_slice())
            .map_err(|e| HookError::Hook(format!("inventory of host {host}: {e}")))?;
        facts::write(&Facts::from_inventory(&inv), tx, &host)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        super::migrations().validate().unwrap();
    }
}
