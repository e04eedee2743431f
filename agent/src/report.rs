//! Turns one collection cycle into a `Report`: the choice between the full
//! inventory and only its hash. The spool numbers reports (epoch, seq).

use campanile_proto::inventory_sha256;
use campanile_proto::v1::{AgentStats, Health, Inventory, Report};

/// Inventory-delta state of one agent.
pub struct ReportBuilder {
    host_id: String,
    /// Hash of the last full inventory put in a report that is still queued
    /// or was acknowledged: later reports with the same hash carry only it.
    sent_full: Option<[u8; 32]>,
}

impl ReportBuilder {
    /// The first report carries the full inventory: the collector may not
    /// hold it (a new install, or the inventory changed while stopped).
    pub fn new(host_id: String) -> Self {
        Self {
            host_id,
            sent_full: None,
        }
    }

    pub fn build(
        &mut self,
        collected_at_ms: i64,
        interval_secs: u32,
        health: Health,
        inventory: Inventory,
        stats: Option<AgentStats>,
    ) -> Report {
        let hash = inventory_sha256(&inventory);
        let send_full = self.sent_full != Some(hash);
        if send_full {
            self.sent_full = Some(hash);
        }
        Report {
            host_id: self.host_id.clone(),
            // Numbered when spooled.
            epoch: 0,
            seq: 0,
            collected_at_ms,
            interval_secs,
            agent_version: crate::clock::AGENT_VERSION.to_owned(),
            health: Some(health),
            inventory_sha256: hash.to_vec(),
            inventory: send_full.then_some(inventory),
            agent_stats: stats,
            probes: None,
            probe_duty_sha256: Vec::new(),
        }
    }

    /// The collector lacks our inventory, or the report that carried it was
    /// dropped: the next report carries it in full again.
    pub fn resend_full_inventory(&mut self) {
        self.sent_full = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_full_inventory_only_when_it_changed_or_was_requested() {
        let mut b = ReportBuilder::new("pc-1".into());
        let inv = Inventory {
            hostname: Some("pc-1".into()),
            ..Default::default()
        };
        let r1 = b.build(1, 60, Health::default(), inv.clone(), None);
        let r2 = b.build(2, 60, Health::default(), inv.clone(), None);
        assert!(r1.inventory.is_some());
        assert!(r2.inventory.is_none());
        assert_eq!(r1.inventory_sha256, r2.inventory_sha256);
        let changed = Inventory {
            hostname: Some("pc-2".into()),
            ..Default::default()
        };
        assert!(
            b.build(3, 60, Health::default(), changed.clone(), None)
                .inventory
                .is_some()
        );
        b.resend_full_inventory();
        assert!(
            b.build(4, 60, Health::default(), changed, None)
                .inventory
                .is_some()
        );
    }
}
