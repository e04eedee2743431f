//! Schema migrations, applied in order at open (tracked in `user_version`).
//! Never edit a migration that has shipped: add a new one.

use rusqlite_migration::{M, Migrations};

pub fn migrations() -> Migrations<'static> {
    Migrations::new(vec![M::up(
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
    )])
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        super::migrations().validate().unwrap();
    }
}
