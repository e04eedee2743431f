//! Whether a report's sequence number could come from a real agent, given
//! the host's cursor: an agent numbers one report per interval, so its seq
//! cannot run far ahead of what time allows.
//!
//! A seq of 2^64-1 was accepted before, and from then on that epoch
//! acknowledged every report as a duplicate of one already stored. The
//! check needs the cursor, so it runs in the committer, inside the
//! request's savepoint.

use campanile_proto::v1::Report;

use crate::store::Cursor;

/// How far a seq may run ahead of what its interval explains: a week of
/// reports, for agents that report more often than their interval says
/// (a restart, a forced report) and for clocks that drift.
const SLACK_SECS: u64 = 7 * 86_400;

/// For an epoch the collector has no cursor for (a new agent, or a store
/// rebuilt): ten years of reports. Spools far older do not exist; the
/// absurd values (2^64-1, 2^63) are far beyond.
const NEW_EPOCH_SECS: u64 = 10 * 365 * 86_400;

/// Refuses a seq more than a week of reports (at the report's interval)
/// ahead of what the time since the cursor last advanced explains.
pub(super) fn seq(report: &Report, cursor: Option<Cursor>, now_ms: i64) -> Result<(), String> {
    let interval = u64::from(report.interval_secs.max(1));
    let (from, span_secs) = match cursor {
        Some(c) => {
            let elapsed_secs =
                u64::try_from(now_ms.saturating_sub(c.updated_ms) / 1000).unwrap_or(0);
            (c.last_seq, elapsed_secs.saturating_add(SLACK_SECS))
        }
        None => (0, NEW_EPOCH_SECS),
    };
    let allowed = span_secs / interval;
    let ahead = report.seq.saturating_sub(from);
    if ahead > allowed {
        return Err(format!(
            "seq is {ahead} ahead of the last committed ({from}); at one report per {interval} s \
             at most {allowed} could have been made since"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: i64 = 86_400_000;

    fn report(seq: u64, interval_secs: u32) -> Report {
        Report {
            seq,
            interval_secs,
            ..Default::default()
        }
    }

    #[test]
    fn a_seq_may_run_a_week_of_reports_ahead_of_the_cursor_and_no_more() {
        let cursor = Some(Cursor {
            last_seq: 1000,
            updated_ms: 50 * DAY_MS,
        });
        let now = 50 * DAY_MS;
        assert!(seq(&report(1001, 60), cursor, now).is_ok());
        assert!(
            seq(&report(1000 + 10_080, 60), cursor, now).is_ok(),
            "a week at 60 s"
        );
        let refused = seq(&report(1000 + 10_081, 60), cursor, now).unwrap_err();
        assert!(refused.contains("at most 10080"), "{refused}");
        assert!(seq(&report(u64::MAX, 60), cursor, now).is_err());
        // Behind the cursor: a duplicate, for the store to count.
        assert!(seq(&report(3, 60), cursor, now).is_ok());
    }

    #[test]
    fn an_agent_away_for_a_month_may_come_back_a_month_ahead() {
        let cursor = Some(Cursor {
            last_seq: 1000,
            updated_ms: 10 * DAY_MS,
        });
        let month_later = 40 * DAY_MS;
        assert!(seq(&report(1000 + 30 * 1440, 60), cursor, month_later).is_ok());
        assert!(seq(&report(1000 + 38 * 1440, 60), cursor, month_later).is_err());
    }

    #[test]
    fn a_new_epoch_may_start_anywhere_a_real_spool_could_be() {
        assert!(seq(&report(1, 60), None, DAY_MS).is_ok());
        assert!(
            seq(&report(5_000_000, 60), None, DAY_MS).is_ok(),
            "9.5 years at 60 s"
        );
        assert!(seq(&report(1 << 40, 1), None, DAY_MS).is_err());
        assert!(seq(&report(u64::MAX, 86_400), None, DAY_MS).is_err());
    }
}
