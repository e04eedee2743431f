//! The write side: one request's reports applied in the committer's
//! transaction (dedup cursors, current state, inventory and its history,
//! probe counters), and the group commit of many requests.

use std::collections::HashMap;
use std::sync::Arc;

use campanile_proto::identity::HostIdentity;
use campanile_proto::v1::{Inventory, Report};
use campanile_territory::host::{Facts, PeerFacts};
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};

use crate::store::inventory_diff::{self, Change};
use crate::store::{
    Cursor, EPOCHS_KEPT, IngestJob, IngestOutcome, ProbeCounting, Store, StoreError,
};
use crate::store::{facts, plausible, probes};

impl Store {
    /// Commits one request (already-validated reports of one host) in its
    /// own transaction. See [`Store::ingest_group`].
    pub fn ingest(
        &self,
        identity: &HostIdentity,
        reports: &[Report],
        received_ms: i64,
        counting: &ProbeCounting<'_>,
    ) -> Result<IngestOutcome, StoreError> {
        let job = IngestJob {
            identity,
            reports,
            agent_stats: None,
            received_ms,
            counting: *counting,
            peer: PeerFacts::default(),
        };
        self.ingest_group(std::slice::from_ref(&job))?
            .pop()
            .expect("one result per job")
    }

    /// Group commit: several requests in one transaction, so one fsync
    /// covers them all. Each request runs in its own savepoint: one that
    /// fails (a damaged stored inventory, say) is rolled back alone and
    /// gets its error while the others commit. The outer error means the
    /// commit itself failed and nothing was stored.
    ///
    /// Per report: a (host, epoch, seq) already stored is a duplicate,
    /// counted and skipped. A report collected before the host's current
    /// state (an old epoch delivered late) is backfilled: it advances the
    /// dedup cursor, counts its probe figures and proves the host alive,
    /// but leaves the current health, inventory and probes as they are.
    pub fn ingest_group(
        &self,
        jobs: &[IngestJob<'_>],
    ) -> Result<Vec<Result<IngestOutcome, StoreError>>, StoreError> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut tx = conn.transaction().map_err(|e| self.err(e))?;
        let mut results = Vec::with_capacity(jobs.len());
        let mut committed = Vec::with_capacity(jobs.len());
        for job in jobs {
            let sp = tx.savepoint().map_err(|e| self.err(e))?;
            // Read back inside the savepoint: a row that cannot be read
            // fails its request alone, like any other of its writes.
            let applied = self.apply(&sp, job).and_then(|outcome| {
                let state = self.read_host(&sp, &job.identity.host_id, job.received_ms)?;
                Ok((outcome, state))
            });
            match applied {
                Ok((outcome, state)) => {
                    sp.commit().map_err(|e| self.err(e))?;
                    results.push(Ok(outcome));
                    committed.extend(state);
                }
                // Dropping the savepoint rolls this request back.
                Err(e) => results.push(Err(e)),
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        // Still holding the writer: the copy changes in commit order.
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        for state in committed {
            current.insert(state.host_id.clone(), Arc::new(state));
        }
        Ok(results)
    }

    fn apply(&self, conn: &Connection, job: &IngestJob<'_>) -> Result<IngestOutcome, StoreError> {
        let host = job.identity.host_id.as_str();
        let received_ms = job.received_ms;
        let mut out = IngestOutcome::default();
        let current: Option<(i64, Option<Vec<u8>>)> = conn
            .prepare_cached(
                "SELECT last_collected_ms, inventory_sha256 FROM hosts WHERE host_id = ?1",
            )
            .and_then(|mut st| {
                st.query_row([host], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(|e| self.err(e))?;
        let (mut last_collected, mut stored_hash) = match current {
            Some((t, h)) => (Some(t), h),
            None => (None, None),
        };
        if self.take_undecodable_inventory(conn, host, received_ms)? {
            stored_hash = None;
        }
        // epoch -> (stored cursor, cursor after this request): read once
        // per epoch, written once per epoch after the loop.
        let mut cursors: HashMap<u64, (Option<u64>, Option<u64>)> = HashMap::new();
        let mut stored_cursors: HashMap<u64, Option<Cursor>> = HashMap::new();
        let mut current_hash_sent: Option<&[u8]> = None;
        for report in job.reports {
            let cursor = match cursors.get(&report.epoch) {
                Some(&(_, now)) => now,
                None => {
                    let c = self.cursor(conn, host, report.epoch)?;
                    stored_cursors.insert(report.epoch, c);
                    let last = c.map(|c| c.last_seq);
                    cursors.insert(report.epoch, (last, last));
                    last
                }
            };
            // Against the stored cursor: the request's own reports count
            // within the same bound.
            let stored = stored_cursors.get(&report.epoch).copied().flatten();
            if let Err(reason) = plausible::seq(report, stored, received_ms) {
                return Err(StoreError::Implausible {
                    host: host.to_owned(),
                    seq: report.seq,
                    reason,
                });
            }
            if cursor.is_some_and(|last| report.seq <= last) {
                out.duplicates += 1;
                continue;
            }
            if let Some(c) = cursors.get_mut(&report.epoch) {
                c.1 = Some(report.seq);
            }
            let backfill = last_collected.is_some_and(|t| report.collected_at_ms < t);
            if backfill {
                conn.prepare_cached("UPDATE hosts SET last_report_ms = ?2 WHERE host_id = ?1")
                    .and_then(|mut st| st.execute(params![host, received_ms]))
                    .map_err(|e| self.err(e))?;
                out.backfilled += 1;
            } else {
                self.store_current(conn, job.identity, report, received_ms)?;
                if let Some(inv) = &report.inventory {
                    self.store_inventory(conn, host, inv, &report.inventory_sha256, received_ms)?;
                    stored_hash = Some(report.inventory_sha256.clone());
                }
                current_hash_sent = Some(&report.inventory_sha256);
                last_collected = Some(report.collected_at_ms);
            }
            if let Some(p) = &report.probes {
                out.ignored_probe_results +=
                    probes::count(conn, &job.counting, p).map_err(|e| self.err(e))?;
            }
            out.accepted += 1;
        }
        for (&epoch, &(stored, now)) in &cursors {
            if let Some(seq) = now.filter(|_| now != stored) {
                self.advance_cursor(conn, host, epoch, seq, received_ms, stored.is_none())?;
            }
        }
        if job.agent_stats.is_some() || job.peer != PeerFacts::default() {
            conn.prepare_cached(
                "UPDATE hosts SET agent_stats = COALESCE(?2, agent_stats),
                        clock_offset_ms = COALESCE(?3, clock_offset_ms),
                        cert_not_after_ms = COALESCE(?4, cert_not_after_ms)
                 WHERE host_id = ?1",
            )
            .and_then(|mut st| {
                st.execute(params![
                    host,
                    job.agent_stats.map(Message::encode_to_vec),
                    job.peer.clock_offset_ms,
                    job.peer.cert_not_after_ms
                ])
            })
            .map_err(|e| self.err(e))?;
        }
        if let Some(last) = job.reports.last() {
            out.committed_seq = cursors
                .get(&last.epoch)
                .and_then(|&(_, now)| now)
                .unwrap_or(0);
            out.need_full_inventory = match (current_hash_sent, &stored_hash) {
                (Some(sent), Some(have)) => sent != have.as_slice(),
                (Some(_), None) => true,
                // Only duplicates or backfill: ask only if we never had one.
                (None, have) => have.is_none(),
            };
        }
        Ok(out)
    }

    /// Records (epoch, seq) as committed. A new epoch also forgets all but
    /// the host's most recent epochs, so the table stays small.
    fn advance_cursor(
        &self,
        conn: &Connection,
        host: &str,
        epoch: u64,
        seq: u64,
        received_ms: i64,
        new_epoch: bool,
    ) -> Result<(), StoreError> {
        conn.prepare_cached(
            "INSERT INTO delivery_cursors (host_id, epoch, last_seq, updated_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(host_id, epoch) DO UPDATE SET
                last_seq = excluded.last_seq, updated_ms = excluded.updated_ms",
        )
        .and_then(|mut st| st.execute(params![host, epoch as i64, seq as i64, received_ms]))
        .map_err(|e| self.err(e))?;
        if new_epoch {
            conn.prepare_cached(
                "DELETE FROM delivery_cursors WHERE host_id = ?1 AND epoch NOT IN
                    (SELECT epoch FROM delivery_cursors WHERE host_id = ?1
                     ORDER BY updated_ms DESC LIMIT ?2)",
            )
            .and_then(|mut st| st.execute(params![host, EPOCHS_KEPT]))
            .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// The report becomes the host's current state.
    fn store_current(
        &self,
        conn: &Connection,
        identity: &HostIdentity,
        report: &Report,
        received_ms: i64,
    ) -> Result<(), StoreError> {
        let health = report.health.as_ref().map(Message::encode_to_vec);
        let stats = report.agent_stats.as_ref().map(Message::encode_to_vec);
        let probes = report.probes.as_ref().map(Message::encode_to_vec);
        conn.prepare_cached(
            "INSERT INTO hosts (host_id, site, first_seen_ms, last_report_ms, last_collected_ms,
                                interval_secs, epoch, last_seq, agent_version, health, agent_stats,
                                probes, probe_duty_sha256)
             VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT(host_id) DO UPDATE SET
                site = excluded.site, last_report_ms = excluded.last_report_ms,
                last_collected_ms = excluded.last_collected_ms,
                interval_secs = excluded.interval_secs, epoch = excluded.epoch,
                last_seq = excluded.last_seq, agent_version = excluded.agent_version,
                health = excluded.health, agent_stats = excluded.agent_stats,
                probes = excluded.probes, probe_duty_sha256 = excluded.probe_duty_sha256",
        )
        .and_then(|mut st| {
            st.execute(params![
                identity.host_id,
                identity.site,
                received_ms,
                report.collected_at_ms,
                report.interval_secs,
                report.epoch as i64,
                report.seq as i64,
                report.agent_version,
                health,
                stats,
                probes,
                report.probe_duty_sha256,
            ])
        })
        .map(|_| ())
        .map_err(|e| self.err(e))
    }

    /// Sets aside the host's stored inventory if a read found it
    /// undecodable; true if it did, and the host must send it in full.
    fn take_undecodable_inventory(
        &self,
        conn: &Connection,
        host: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let flagged = self
            .undecodable_inventories
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(host);
        if !flagged {
            return Ok(false);
        }
        let Some(bytes) = self.stored_inventory(conn, host)? else {
            return Ok(false);
        };
        let Err(error) = Inventory::decode(bytes.as_slice()) else {
            return Ok(false);
        };
        self.forget_inventory(conn, host, &bytes, now_ms, &error)?;
        Ok(true)
    }

    /// The host's stored inventory, as stored (it may not decode).
    fn stored_inventory(
        &self,
        conn: &Connection,
        host: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        conn.prepare_cached("SELECT inventory FROM host_inventories WHERE host_id = ?1")
            .and_then(|mut st| st.query_row([host], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))
    }

    /// Sets an undecodable inventory aside and forgets it and its hash, so
    /// the host's next report is asked for the full inventory.
    pub(super) fn forget_inventory(
        &self,
        conn: &Connection,
        host: &str,
        bytes: &[u8],
        now_ms: i64,
        error: &prost::DecodeError,
    ) -> Result<(), StoreError> {
        self.set_aside(conn, host, "inventory", bytes, now_ms, error)?;
        conn.execute("DELETE FROM host_inventories WHERE host_id = ?1", [host])
            .and_then(|_| {
                conn.execute(
                    "UPDATE hosts SET inventory_sha256 = NULL WHERE host_id = ?1",
                    [host],
                )
            })
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn store_inventory(
        &self,
        tx: &Connection,
        host_id: &str,
        inv: &Inventory,
        sha256: &[u8],
        received_ms: i64,
    ) -> Result<(), StoreError> {
        let old = self.stored_inventory(tx, host_id)?;
        let mut damaged = false;
        let old = match old {
            Some(bytes) => match Inventory::decode(bytes.as_slice()) {
                Ok(old) => Some(old),
                // Replaced by this one, the damaged one kept aside.
                Err(error) => {
                    self.set_aside(tx, host_id, "inventory", &bytes, received_ms, &error)?;
                    damaged = true;
                    None
                }
            },
            None => None,
        };
        let changes: Vec<Change> = match &old {
            Some(old) => inventory_diff::diff(old, inv),
            None => vec![Change {
                field: "inventory".into(),
                old: None,
                new: Some(
                    if damaged {
                        "inventory received; the stored one did not decode"
                    } else {
                        "first inventory received"
                    }
                    .into(),
                ),
            }],
        };
        let mut ins = tx
            .prepare_cached(
                "INSERT INTO inventory_changes (host_id, changed_ms, field, old_value, new_value)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(|e| self.err(e))?;
        for c in &changes {
            ins.execute(params![host_id, received_ms, c.field, c.old, c.new])
                .map_err(|e| self.err(e))?;
        }
        tx.prepare_cached(
            "INSERT INTO host_inventories (host_id, inventory) VALUES (?1, ?2)
             ON CONFLICT(host_id) DO UPDATE SET inventory = excluded.inventory",
        )
        .and_then(|mut st| st.execute(params![host_id, inv.encode_to_vec()]))
        .map_err(|e| self.err(e))?;
        tx.execute(
            "UPDATE hosts SET inventory_sha256 = ?2, inventory_updated_ms = ?3,
                hostname = ?4, os_name = ?5, os_version = ?6, kernel = ?7, arch = ?8
             WHERE host_id = ?1",
            params![
                host_id,
                sha256,
                received_ms,
                inv.hostname,
                inv.os_name,
                inv.os_version,
                inv.kernel_version,
                inv.arch,
            ],
        )
        .map_err(|e| self.err(e))?;
        facts::write(&Facts::from_inventory(inv), tx, host_id).map_err(|e| self.err(e))?;
        Ok(())
    }
}
