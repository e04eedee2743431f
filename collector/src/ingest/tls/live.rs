//! The server config in force, replaced whole when the certificates are
//! reloaded: a handshake takes the one in force when it begins and keeps
//! it to its end.

use std::sync::{Arc, RwLock};

pub struct LiveConfig(RwLock<Arc<rustls::ServerConfig>>);

impl LiveConfig {
    pub fn new(cfg: rustls::ServerConfig) -> Arc<Self> {
        Arc::new(Self(RwLock::new(Arc::new(cfg))))
    }

    pub fn get(&self) -> Arc<rustls::ServerConfig> {
        // Nothing panics while holding it; a poisoned config is still whole.
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `cfg` in force, with the session ticket keys of the config it
    /// replaces: agents resume their sessions across a reload.
    pub fn replace(&self, mut cfg: rustls::ServerConfig) {
        let mut held = self.0.write().unwrap_or_else(|p| p.into_inner());
        cfg.ticketer = held.ticketer.clone();
        *held = Arc::new(cfg);
    }
}
