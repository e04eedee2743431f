//! Grouping as Alertmanager does it: per receiver, alerts with the same
//! values of `group_by` form a group; a new group waits `group_wait`, then
//! is looked at every `group_interval` and notified when its firing or
//! resolved alerts changed, or when `repeat_interval` has passed. A
//! notification log per group (stored with the outbox) remembers what each
//! receiver was told, so a restart neither repeats nor forgets.
//!
//! OS end of life is not paged: those alerts go out once a day, one digest
//! per receiver and alert name.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::config::{AlertsConfig, Receiver};
use super::engine::{Alert, State};
use super::webhook;

/// What a receiver was last told about a group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogEntry {
    pub firing: BTreeSet<u64>,
    pub resolved: BTreeSet<u64>,
    pub at_ms: i64,
}

/// (receiver, group key)
pub type LogKey = (String, String);

/// The notification log's key for a receiver's last digest.
pub const DIGEST_KEY: &str = "daily-digest";

/// A group due now: what to enqueue and what to log, in one transaction.
#[derive(Debug, Clone)]
pub struct Flush {
    pub receiver: String,
    pub group_key: String,
    /// `None`: the log changes but nothing is sent (only resolved alerts
    /// and a receiver that does not want them).
    pub payload: Option<String>,
    pub entry: LogEntry,
    /// Resolved alerts this flush covered: they leave the group once it is
    /// stored.
    pub(super) resolved_sent: Vec<u64>,
}

struct Group {
    receiver: usize,
    labels: BTreeMap<String, String>,
    members: BTreeSet<u64>,
    next_flush_ms: i64,
}

pub struct Dispatcher {
    receivers: Vec<Receiver>,
    group_by: Vec<String>,
    group_wait_ms: i64,
    group_interval_ms: i64,
    repeat_interval_ms: i64,
    digest_minute: i64,
    external_url: String,
    groups: BTreeMap<(usize, String), Group>,
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub fn matches(r: &Receiver, a: &Alert) -> bool {
    let label = |k: &str| a.labels.get(k).map_or("", String::as_str);
    (r.severities.is_empty() || r.severities.iter().any(|s| s.as_str() == label("severity")))
        && (r.istat_codes.is_empty() || r.istat_codes.contains(label("istat_code")))
        && (r.sites.is_empty() || r.sites.contains(label("site")))
}

/// Alertmanager's form: `{}/<route>:{name="value", ...}`.
fn group_key(receiver: &str, labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{}}/{{receiver={receiver:?}}}:{{{}}}", inner.join(", "))
}

/// Alertmanager's DedupStage: whether a group must be notified.
fn needs_update(
    entry: Option<&LogEntry>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
    send_resolved: bool,
    repeat_ms: i64,
    now_ms: i64,
) -> bool {
    let Some(entry) = entry else {
        // Never notified: only when something fires.
        return !firing.is_empty();
    };
    if !firing.is_subset(&entry.firing) {
        return true;
    }
    if firing.is_empty() {
        // Everything resolved: tell the receiver if it was told something
        // fired; otherwise it never knew.
        return !entry.firing.is_empty();
    }
    if send_resolved && !resolved.is_subset(&entry.resolved) {
        return true;
    }
    entry.at_ms <= now_ms - repeat_ms
}

impl Dispatcher {
    pub fn new(cfg: &AlertsConfig) -> Self {
        Self {
            receivers: cfg.receivers.clone(),
            group_by: cfg.group_by.clone(),
            group_wait_ms: ms(cfg.group_wait),
            group_interval_ms: ms(cfg.group_interval),
            repeat_interval_ms: ms(cfg.repeat_interval),
            digest_minute: i64::from(cfg.daily_digest_minute),
            external_url: cfg.external_url.clone(),
            groups: BTreeMap::new(),
        }
    }

    /// Groups alerts and returns the groups due now.
    pub fn step(
        &mut self,
        alerts: &BTreeMap<u64, Arc<Alert>>,
        log: &HashMap<LogKey, LogEntry>,
        now_ms: i64,
    ) -> Vec<Flush> {
        self.regroup(alerts, now_ms);
        self.due(alerts, log, now_ms)
    }

    /// Puts alerts in their groups and drops those gone from the engine:
    /// after each evaluation, the only time alerts change.
    pub fn regroup(&mut self, alerts: &BTreeMap<u64, Arc<Alert>>, now_ms: i64) {
        for a in alerts.values() {
            if a.state() == State::Pending || a.digest {
                continue;
            }
            for (ri, r) in self.receivers.iter().enumerate() {
                if !matches(r, a) {
                    continue;
                }
                let labels: BTreeMap<String, String> = self
                    .group_by
                    .iter()
                    .filter_map(|k| a.labels.get(k).map(|v| (k.clone(), v.clone())))
                    .collect();
                let key = group_key(&r.name, &labels);
                let wait = self.group_wait_ms;
                self.groups
                    .entry((ri, key))
                    .or_insert_with(|| Group {
                        receiver: ri,
                        labels,
                        members: BTreeSet::new(),
                        next_flush_ms: now_ms + wait,
                    })
                    .members
                    .insert(a.fingerprint);
            }
        }
        self.groups.retain(|_, g| {
            g.members.retain(|fp| alerts.contains_key(fp));
            !g.members.is_empty()
        });
    }

    /// The groups due now, as grouped by the last [`Dispatcher::regroup`].
    pub fn due(
        &mut self,
        alerts: &BTreeMap<u64, Arc<Alert>>,
        log: &HashMap<LogKey, LogEntry>,
        now_ms: i64,
    ) -> Vec<Flush> {
        let mut flushes = Vec::new();
        for ((_, key), g) in &mut self.groups {
            if now_ms < g.next_flush_ms {
                continue;
            }
            g.next_flush_ms = now_ms + self.group_interval_ms;
            let r = &self.receivers[g.receiver];
            let members: Vec<&Alert> = g
                .members
                .iter()
                .filter_map(|fp| alerts.get(fp).map(|a| &**a))
                .collect();
            let firing: Vec<&Alert> = members
                .iter()
                .copied()
                .filter(|a| a.state() == State::Firing && !a.muted())
                .collect();
            let resolved: Vec<&Alert> = members
                .iter()
                .copied()
                .filter(|a| a.state() == State::Resolved)
                .collect();
            if firing.is_empty() && resolved.is_empty() {
                // Everything muted: like Alertmanager, say nothing.
                continue;
            }
            let firing_set: BTreeSet<u64> = firing.iter().map(|a| a.fingerprint).collect();
            let resolved_set: BTreeSet<u64> = resolved.iter().map(|a| a.fingerprint).collect();
            let entry = log.get(&(r.name.clone(), key.clone()));
            if !needs_update(
                entry,
                &firing_set,
                &resolved_set,
                r.send_resolved,
                self.repeat_interval_ms,
                now_ms,
            ) {
                continue;
            }
            let mut sent = firing.clone();
            if r.send_resolved {
                sent.extend(resolved.iter().copied());
            }
            let payload = (!sent.is_empty()).then(|| {
                let p = webhook::build(
                    &r.name,
                    key,
                    g.labels.clone(),
                    &sent,
                    r.max_alerts,
                    &self.external_url,
                );
                serde_json::to_string(&p).expect("a payload always serializes")
            });
            flushes.push(Flush {
                receiver: r.name.clone(),
                group_key: key.clone(),
                payload,
                entry: LogEntry {
                    firing: firing_set,
                    resolved: resolved_set.clone(),
                    at_ms: now_ms,
                },
                resolved_sent: resolved_set.into_iter().collect(),
            });
        }
        flushes
    }

    /// The flush is stored: its resolved alerts leave their group.
    pub fn flushed(&mut self, f: &Flush) {
        if let Some(ri) = self.receivers.iter().position(|r| r.name == f.receiver)
            && let Some(g) = self.groups.get_mut(&(ri, f.group_key.clone()))
        {
            for fp in &f.resolved_sent {
                g.members.remove(fp);
            }
            if g.members.is_empty() {
                self.groups.remove(&(ri, f.group_key.clone()));
            }
        }
    }

    /// Once a day from `daily_digest_at_utc`: for each receiver, one
    /// notification per alert name of the firing digest alerts. The log
    /// remembers the day, so a restart sends no second digest; a receiver
    /// never logged starts with the next digest time.
    pub fn digest(
        &self,
        alerts: &BTreeMap<u64, Arc<Alert>>,
        log: &HashMap<LogKey, LogEntry>,
        now_ms: i64,
    ) -> Vec<Flush> {
        const DAY: i64 = 86_400_000;
        let today = now_ms.div_euclid(DAY);
        let due_today = now_ms.rem_euclid(DAY) >= self.digest_minute * 60_000;
        let mut out = Vec::new();
        for r in &self.receivers {
            let last_day = log
                .get(&(r.name.clone(), DIGEST_KEY.to_owned()))
                .map(|e| e.at_ms.div_euclid(DAY));
            let send = match last_day {
                Some(d) => d < today && due_today,
                None => false,
            };
            let marker = |payload| Flush {
                receiver: r.name.clone(),
                group_key: DIGEST_KEY.to_owned(),
                payload,
                entry: LogEntry {
                    at_ms: now_ms,
                    ..LogEntry::default()
                },
                resolved_sent: Vec::new(),
            };
            if last_day.is_none() {
                // First start: today's digest counts as sent if its time
                // has passed, so the first one goes at the next digest time.
                let at = if due_today { now_ms } else { now_ms - DAY };
                out.push(Flush {
                    entry: LogEntry {
                        at_ms: at,
                        ..LogEntry::default()
                    },
                    ..marker(None)
                });
                continue;
            }
            if !send {
                continue;
            }
            let mut by_name: BTreeMap<&str, Vec<&Alert>> = BTreeMap::new();
            for a in alerts.values() {
                if a.digest && a.state() == State::Firing && !a.muted() && matches(r, a) {
                    by_name.entry(a.name()).or_default().push(a);
                }
            }
            for (name, list) in by_name {
                let labels: BTreeMap<String, String> =
                    [("alertname".to_owned(), name.to_owned())].into();
                let key = format!("{}/digest", group_key(&r.name, &labels));
                let p = webhook::build(
                    &r.name,
                    &key,
                    labels,
                    &list,
                    r.max_alerts,
                    &self.external_url,
                );
                out.push(Flush {
                    receiver: r.name.clone(),
                    group_key: key,
                    payload: Some(serde_json::to_string(&p).expect("a payload always serializes")),
                    entry: LogEntry {
                        firing: list.iter().map(|a| a.fingerprint).collect(),
                        resolved: BTreeSet::new(),
                        at_ms: now_ms,
                    },
                    resolved_sent: Vec::new(),
                });
            }
            out.push(marker(None));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::engine::sample_alert;
    use std::time::Duration;

    fn cfg() -> AlertsConfig {
        let mut c = AlertsConfig::defaults(
            std::path::Path::new("/tmp/c.db"),
            "127.0.0.1:1".parse().unwrap(),
        );
        c.group_wait = Duration::from_secs(30);
        c.group_interval = Duration::from_secs(300);
        c.repeat_interval = Duration::from_secs(3600);
        c.receivers.push(Receiver {
            name: "noc".into(),
            url: "http://127.0.0.1:1/hook".into(),
            signing_secret: None,
            ca_cert_path: None,
            timeout: Duration::from_secs(1),
            send_resolved: true,
            max_alerts: 0,
            severities: BTreeSet::new(),
            istat_codes: BTreeSet::new(),
            sites: BTreeSet::new(),
        });
        c
    }

    fn alert(name: &str, comune: &str, host: &str, fired: Option<i64>) -> Alert {
        let mut a = sample_alert(name, comune, host, fired.unwrap_or(0), None);
        a.fired_ms = fired;
        a
    }

    struct Run {
        d: Dispatcher,
        log: HashMap<LogKey, LogEntry>,
        alerts: BTreeMap<u64, Arc<Alert>>,
        sent: Vec<webhook::Payload>,
    }

    impl Run {
        fn new() -> Self {
            Self {
                d: Dispatcher::new(&cfg()),
                log: HashMap::new(),
                alerts: BTreeMap::new(),
                sent: Vec::new(),
            }
        }
        fn set(&mut self, a: Alert) {
            self.alerts.insert(a.fingerprint, Arc::new(a));
        }
        fn at(&mut self, now: i64) -> usize {
            let flushes = self.d.step(&self.alerts, &self.log, now);
            let before = self.sent.len();
            for f in flushes {
                if let Some(p) = &f.payload {
                    self.sent.push(serde_json::from_str(p).unwrap());
                }
                self.log
                    .insert((f.receiver.clone(), f.group_key.clone()), f.entry.clone());
                self.d.flushed(&f);
            }
            self.sent.len() - before
        }
    }

    #[test]
    fn one_notification_per_group_after_group_wait_then_changes_at_group_intervals() {
        let mut r = Run::new();
        for h in ["pc-1", "pc-2", "pc-3"] {
            r.set(alert("HostDown", "Borgo", h, Some(0)));
        }
        r.set(alert("HostDown", "Valle", "pc-9", Some(0)));
        assert_eq!(r.at(0), 0, "group_wait");
        assert_eq!(r.at(29_999), 0);
        assert_eq!(r.at(30_000), 2, "one per comune");
        let borgo = r
            .sent
            .iter()
            .find(|p| p.common_labels["comune"] == "Borgo")
            .unwrap();
        assert_eq!(borgo.alerts.len(), 3);
        assert_eq!(borgo.group_labels.len(), 2);
        // A new alert joins the group; it goes out at the next interval.
        r.set(alert("HostDown", "Borgo", "pc-4", Some(40_000)));
        assert_eq!(r.at(40_000), 0);
        assert_eq!(r.at(330_000), 1);
        assert_eq!(r.sent.last().unwrap().alerts.len(), 4);
        // Nothing new: silence until repeat_interval.
        assert_eq!(r.at(630_000), 0);
        assert_eq!(
            r.at(3_630_000),
            1,
            "Valle repeats an hour after its notification"
        );
        assert_eq!(r.at(3_930_000), 1, "and Borgo an hour after its last");
    }

    #[test]
    fn resolving_sends_exactly_one_resolved_notification() {
        let mut r = Run::new();
        let mut a = alert("SiteDark", "Borgo", "", Some(0));
        r.set(a.clone());
        assert_eq!(r.at(0), 0);
        assert_eq!(r.at(30_000), 1);
        a.resolved_ms = Some(100_000);
        r.set(a.clone());
        assert_eq!(r.at(330_000), 1);
        let last = r.sent.last().unwrap();
        assert_eq!(last.status, "resolved");
        assert_eq!(last.alerts[0].status, "resolved");
        assert_eq!(r.at(630_000), 0);
        assert_eq!(r.at(10_000_000), 0);
    }

    #[test]
    fn muted_alerts_are_not_sent_and_never_resolve_a_group_they_did_not_open() {
        let mut r = Run::new();
        let mut a = alert("HostDown", "Borgo", "pc-1", Some(0));
        a.inhibited = true;
        r.set(a.clone());
        assert_eq!(r.at(30_000), 0);
        a.resolved_ms = Some(60_000);
        r.set(a);
        assert_eq!(r.at(330_000), 0, "never told it fired: no resolve");
    }

    #[test]
    fn a_restart_with_the_log_does_not_repeat_a_notification() {
        let mut r = Run::new();
        r.set(alert("HostDown", "Borgo", "pc-1", Some(0)));
        assert_eq!(r.at(0), 0);
        assert_eq!(r.at(30_000), 1);
        // New dispatcher, same log and alerts: as after a restart.
        r.d = Dispatcher::new(&cfg());
        assert_eq!(r.at(60_000), 0);
        assert_eq!(r.at(90_000), 0);
    }

    #[test]
    fn os_end_of_life_goes_in_a_daily_digest() {
        let mut r = Run::new();
        let mut a = alert("CampanileHostOsPastEndOfLife", "Borgo", "pc-1", Some(0));
        a.digest = true;
        r.set(a);
        assert_eq!(r.at(30_000), 0, "never paged");
        const DAY: i64 = 86_400_000;
        let digest_at = 7 * 3_600_000;
        let run_digest = |r: &mut Run, now| {
            let flushes = r.d.digest(&r.alerts, &r.log, now);
            let mut n = 0;
            for f in flushes {
                n += usize::from(f.payload.is_some());
                r.log
                    .insert((f.receiver.clone(), f.group_key.clone()), f.entry);
            }
            n
        };
        // First start at 10:00: today's digest time has passed; none today.
        assert_eq!(run_digest(&mut r, 10 * 3_600_000), 0);
        assert_eq!(run_digest(&mut r, DAY + digest_at - 1), 0);
        assert_eq!(run_digest(&mut r, DAY + digest_at), 1);
        assert_eq!(
            run_digest(&mut r, DAY + digest_at + 60_000),
            0,
            "once a day"
        );
        assert_eq!(run_digest(&mut r, 2 * DAY + digest_at), 1);
    }
}
