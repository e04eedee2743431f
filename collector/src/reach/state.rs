//! The reachability state in force: the probe plan and the WAN probes'
//! results, shared by ingest (the plan), the WAN prober and the HTTP side.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::reach::config::ProbesConfig;
use crate::reach::plan::Plan;
use crate::reach::wan::WanState;
use crate::read::snapshot::Snapshot;

/// The reachability state shared by ingest (plan), the WAN prober and the
/// HTTP side. Readers take an `Arc` snapshot and never hold the lock.
pub struct Reach {
    pub config: ProbesConfig,
    // Swapped whole, never locked: every report reads the plan, and a
    // reader must never wait behind the writer freeing the old one.
    plan: ArcSwap<Plan>,
    /// When (Unix ms) the snapshot the plan was computed from was taken;
    /// held while a plan is stored, so an older one never replaces it.
    planned_at_ms: Mutex<i64>,
    wan: ArcSwap<WanState>,
}

impl Reach {
    pub fn new(config: ProbesConfig) -> Self {
        Self {
            config,
            plan: ArcSwap::from_pointee(Plan::default()),
            planned_at_ms: Mutex::new(i64::MIN),
            wan: ArcSwap::from_pointee(WanState::default()),
        }
    }

    pub fn plan(&self) -> Arc<Plan> {
        self.plan.load_full()
    }

    pub fn set_plan(&self, plan: Plan) {
        self.plan.store(Arc::new(plan));
    }

    /// Whether the plan is older than half of `plan_refresh_secs` at
    /// `now_ms`. A scrape's snapshot then refreshes it, and the planner
    /// reads its own only when no scrape did: at 50,000 hosts a snapshot
    /// is most of a second of a core, and the planner's own, every 30 s,
    /// was a fifth of what the collector's readers spent.
    pub fn plan_due(&self, now_ms: i64) -> bool {
        let at = *self.planned_at_ms.lock().unwrap_or_else(|p| p.into_inner());
        now_ms.saturating_sub(at) >= self.config.plan_refresh.as_millis() as i64 / 2
    }

    /// Recomputes the plan from `snap` (blocking), unless a plan from a
    /// later snapshot was stored meanwhile (a scrape and the planner can
    /// compute at once).
    pub fn plan_from(&self, snap: &Snapshot) {
        let plan = Plan::compute(
            &snap.loaded.register,
            &snap.view,
            &snap.hosts,
            self.config.duty_agents_per_site,
        );
        let mut at = self.planned_at_ms.lock().unwrap_or_else(|p| p.into_inner());
        if snap.now_ms >= *at {
            *at = snap.now_ms;
            self.set_plan(plan);
        }
    }

    pub fn wan(&self) -> Arc<WanState> {
        self.wan.load_full()
    }

    pub fn set_wan(&self, wan: WanState) {
        self.wan.store(Arc::new(wan));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use campanile_territory::config::TerritoryConfig;
    use campanile_territory::eol::EolCatalog;
    use campanile_territory::host::HostState;
    use campanile_territory::register::Register;
    use campanile_territory::state::Loaded;

    const NOW: i64 = 1_790_000_000_000;

    /// A snapshot taken at `now_ms` of one host that reported at `site`.
    fn snapshot(now_ms: i64, site: &str) -> Snapshot {
        let register = Register::parse(
            "[[comune]]\nistat_code = \"999001\"\nname = \"Alfa\"\n\
             [[site]]\nid = \"a\"\ncomune = \"999001\"\nname = \"A\"\n\
             [[site]]\nid = \"b\"\ncomune = \"999001\"\nname = \"B\"\n",
            "test",
        )
        .unwrap();
        let catalog = EolCatalog::embedded();
        let hosts = vec![Arc::new(HostState::reported("pc-1", site, now_ms))];
        let view = campanile_territory::evaluate::evaluate(
            &register,
            &catalog,
            &TerritoryConfig::default(),
            &hosts,
            now_ms,
        );
        Snapshot {
            hosts,
            view,
            loaded: Arc::new(Loaded { register, catalog }),
            now_ms,
        }
    }

    #[test]
    fn a_plan_falls_due_after_half_its_refresh_and_an_older_snapshot_never_replaces_it() {
        let reach = Reach::new(ProbesConfig::default());
        let half = reach.config.plan_refresh.as_millis() as i64 / 2;
        assert!(reach.plan_due(NOW), "no plan yet");
        reach.plan_from(&snapshot(NOW, "a"));
        assert_eq!(reach.plan().site_of("pc-1"), Some("a"));
        assert!(!reach.plan_due(NOW + half - 1));
        assert!(reach.plan_due(NOW + half));
        // The planner's snapshot, taken before a scrape's but done after it.
        reach.plan_from(&snapshot(NOW + 2_000, "b"));
        reach.plan_from(&snapshot(NOW + 1_000, "a"));
        assert_eq!(reach.plan().site_of("pc-1"), Some("b"));
        assert!(!reach.plan_due(NOW + 2_000 + half - 1));
    }
}
