//! The register and the catalog in force, and their reloading (the
//! collector asks on SIGHUP and when either file changes on disk). A reload
//! that fails is logged and kept in [`ReloadStatus`] for `/metrics`; the
//! previous register stays in force.

use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::config::TerritoryConfig;
use crate::host::HostState;

use crate::eol::{CatalogError, EolCatalog};
use crate::evaluate::{self, Judgements, View};
use crate::register::{Register, RegisterError};

#[derive(Debug, thiserror::Error)]
pub enum TerritoryError {
    #[error(transparent)]
    Register(#[from] RegisterError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// At start, a register or catalog that does not load is configuration the
/// operator must fix, like the config that names it.
impl From<TerritoryError> for campanile_proto::config::ConfigError {
    fn from(e: TerritoryError) -> Self {
        Self::file(e)
    }
}

/// What is in force now.
#[derive(Debug)]
pub struct Loaded {
    pub register: Register,
    pub catalog: EolCatalog,
}

/// Outcome of the last reload, for `/metrics` and logs.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    pub last_successful: bool,
    pub last_success_ms: i64,
    pub last_error: Option<String>,
}

/// Modification time and length: enough to notice an edit or a replace.
type Stamp = Option<(SystemTime, u64)>;

pub struct Territory {
    cfg: TerritoryConfig,
    current: ArcSwap<Loaded>,
    status: Mutex<ReloadStatus>,
    stamps: Mutex<Vec<Stamp>>,
    /// The last evaluation's judgements and the register and catalog they
    /// were made with; a reload makes them useless.
    judged: Mutex<(Weak<Loaded>, Arc<Judgements>)>,
}

impl Territory {
    /// Loads the register and the catalog; an error here stops the start.
    pub fn load(cfg: TerritoryConfig, now_ms: i64) -> Result<Self, TerritoryError> {
        let stamps = stamps(&cfg);
        let loaded = load(&cfg)?;
        Ok(Self {
            cfg,
            current: ArcSwap::from_pointee(loaded),
            status: Mutex::new(ReloadStatus {
                last_successful: true,
                last_success_ms: now_ms,
                last_error: None,
            }),
            stamps: Mutex::new(stamps),
            judged: Mutex::new((Weak::new(), Arc::default())),
        })
    }

    /// The territory evaluated over `hosts` with what is in force now,
    /// reusing what the last evaluation judged of the hosts that have not
    /// reported since. Evaluations may run side by side: each reads the
    /// judgements that were last stored, the last to finish stores its own.
    pub fn evaluate(&self, hosts: &[Arc<HostState>], now_ms: i64) -> (Arc<Loaded>, View) {
        let loaded = self.current();
        let prior = {
            let judged = self.judged.lock().unwrap_or_else(|p| p.into_inner());
            (std::ptr::eq(judged.0.as_ptr(), Arc::as_ptr(&loaded))).then(|| judged.1.clone())
        };
        let (view, judged) = evaluate::evaluate_with(
            &loaded.register,
            &loaded.catalog,
            &self.cfg,
            hosts,
            now_ms,
            prior.as_deref().unwrap_or(&Judgements::default()),
        );
        // The old judgements go after the lock is released: at 50,000 hosts
        // freeing them takes a few milliseconds.
        let old = std::mem::replace(
            &mut *self.judged.lock().unwrap_or_else(|p| p.into_inner()),
            (Arc::downgrade(&loaded), Arc::new(judged)),
        );
        drop(old);
        (loaded, view)
    }

    pub fn config(&self) -> &TerritoryConfig {
        &self.cfg
    }

    pub fn current(&self) -> Arc<Loaded> {
        self.current.load_full()
    }

    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads both files again. On error the previous ones stay in force.
    pub fn reload(&self, now_ms: i64) -> Result<(), TerritoryError> {
        *self.stamps.lock().unwrap_or_else(|p| p.into_inner()) = stamps(&self.cfg);
        let result = load(&self.cfg);
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(loaded) => {
                tracing::info!(
                    comuni = loaded.register.comuni.len(),
                    sites = loaded.register.sites.len(),
                    assets = loaded.register.assets.len(),
                    releases = loaded.catalog.releases().len(),
                    "territory register loaded"
                );
                self.current.store(Arc::new(loaded));
                *status = ReloadStatus {
                    last_successful: true,
                    last_success_ms: now_ms,
                    last_error: None,
                };
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "territory reload refused; the previous register stays in force");
                status.last_successful = false;
                status.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Reloads when a file's modification time or length changed since the
    /// last attempt. Returns whether a reload was attempted.
    pub fn reload_if_changed(&self, now_ms: i64) -> bool {
        let now = stamps(&self.cfg);
        let changed = *self.stamps.lock().unwrap_or_else(|p| p.into_inner()) != now;
        if changed {
            let _ = self.reload(now_ms);
        }
        changed
    }
}

fn load(cfg: &TerritoryConfig) -> Result<Loaded, TerritoryError> {
    let register = match &cfg.register_path {
        Some(p) => Register::load(p)?,
        None => Register::default(),
    };
    let catalog = match &cfg.eol_catalog_path {
        Some(p) => EolCatalog::load(p)?,
        None => EolCatalog::embedded(),
    };
    Ok(Loaded { register, catalog })
}

fn stamps(cfg: &TerritoryConfig) -> Vec<Stamp> {
    [&cfg.register_path, &cfg.eol_catalog_path]
        .into_iter()
        .flatten()
        .map(|p| stamp(p))
        .collect()
}

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTER: &str = r#"
        [[comune]]
        istat_code = "000001"
        name = "Uno"
        [[site]]
        id = "uno"
        comune = "000001"
        name = "Municipio"
    "#;

    #[test]
    fn a_reloaded_register_judges_unchanged_hosts_anew() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("register.toml");
        std::fs::write(&path, REGISTER).unwrap();
        let now = 1_795_000_000_000;
        let t = Territory::load(
            TerritoryConfig {
                register_path: Some(path.clone()),
                ..TerritoryConfig::default()
            },
            now,
        )
        .unwrap();
        let hosts = vec![Arc::new(HostState::reported("pc1", "uno", now - 1_000))];
        let (_, before) = t.evaluate(&hosts, now);
        assert!(!before.hosts[0].planned);
        let (_, again) = t.evaluate(&hosts, now);
        assert!(!again.hosts[0].planned);

        std::fs::write(
            &path,
            format!("{REGISTER}\n[[asset]]\nsite = \"uno\"\nhostname = \"pc1\"\n"),
        )
        .unwrap();
        t.reload(now).unwrap();
        let (loaded, after) = t.evaluate(&hosts, now);
        assert_eq!(loaded.register.assets.len(), 1);
        assert!(after.hosts[0].planned, "{:?}", after.hosts[0].gaps);
    }
}
