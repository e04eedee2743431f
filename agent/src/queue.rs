//! Reports waiting for an acknowledgement, oldest first, bounded: when full
//! the oldest is dropped and counted. In memory for now; the durable spool
//! takes its place behind the same operations.

use std::collections::VecDeque;

use campanile_proto::v1::Report;

pub struct ReportQueue {
    items: VecDeque<Report>,
    max: usize,
    dropped_total: u64,
}

/// What a push had to drop to make room.
pub struct Dropped {
    pub had_full_inventory: bool,
}

impl ReportQueue {
    pub fn new(max: usize) -> Self {
        Self {
            items: VecDeque::new(),
            max: max.max(1),
            dropped_total: 0,
        }
    }

    pub fn push(&mut self, report: Report) -> Option<Dropped> {
        let mut dropped = None;
        if self.items.len() >= self.max {
            if let Some(old) = self.items.pop_front() {
                self.dropped_total += 1;
                dropped = Some(Dropped {
                    had_full_inventory: old.inventory.is_some(),
                });
            }
        }
        self.items.push_back(report);
        dropped
    }

    /// Up to `max` oldest reports, cloned for sending.
    pub fn batch(&self, max: usize) -> Vec<Report> {
        self.items.iter().take(max).cloned().collect()
    }

    /// Forgets every report of `epoch` with seq <= `seq`.
    pub fn ack(&mut self, epoch: u64, seq: u64) {
        self.items.retain(|r| !(r.epoch == epoch && r.seq <= seq));
    }

    /// Removes one report (refused as invalid); true if it carried the
    /// full inventory.
    pub fn remove(&mut self, epoch: u64, seq: u64) -> Option<Report> {
        let pos = self
            .items
            .iter()
            .position(|r| r.epoch == epoch && r.seq == seq)?;
        self.items.remove(pos)
    }

    /// The oldest queued report.
    pub fn front(&self) -> Option<&Report> {
        self.items.front()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    pub fn oldest_collected_ms(&self) -> Option<i64> {
        self.front().map(|r| r.collected_at_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(seq: u64) -> Report {
        Report {
            epoch: 1,
            seq,
            ..Default::default()
        }
    }

    #[test]
    fn drops_exactly_the_oldest_when_full_and_counts_them() {
        let mut q = ReportQueue::new(3);
        for s in 1..=5 {
            q.push(r(s));
        }
        assert_eq!(q.dropped_total(), 2);
        let seqs: Vec<u64> = q.batch(10).iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        q.ack(1, 4);
        assert_eq!(q.batch(10)[0].seq, 5);
    }
}
