//! Revoked certificates as the running collector holds them: the serials
//! of [`crate::store::revocations`], checked by every handshake (a full
//! one in the verifier, a resumed one after it) and followed as the
//! command line adds to them, so a revocation takes effect without a
//! restart. A change wakes the gRPC server, which closes the revoked
//! certificates' open connections.

pub mod admin;
pub mod crl;
pub mod follow;

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

/// The serials revoked now (normalised as [`crate::pki::serial_hex`]
/// writes them).
pub struct Revoked {
    serials: RwLock<Arc<HashSet<String>>>,
    changed: watch::Sender<u64>,
}

impl Revoked {
    pub fn new(serials: HashSet<String>) -> Arc<Self> {
        Arc::new(Self {
            serials: RwLock::new(Arc::new(serials)),
            changed: watch::Sender::new(0),
        })
    }

    pub fn contains(&self, serial: &str) -> bool {
        let set = self.snapshot();
        !set.is_empty() && set.contains(serial)
    }

    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    /// The serials as they stand; cheap (one reference).
    pub fn snapshot(&self) -> Arc<HashSet<String>> {
        // Nothing panics while holding it; a poisoned set is still whole.
        self.serials
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts `serials` in force; tells the subscribers if that revoked a
    /// serial not revoked before, and returns how many were new.
    pub fn replace(&self, serials: HashSet<String>) -> usize {
        let added = {
            let mut held = self.serials.write().unwrap_or_else(|p| p.into_inner());
            let added = serials.difference(&held).count();
            *held = Arc::new(serials);
            added
        };
        if added > 0 {
            self.changed.send_modify(|generation| *generation += 1);
        }
        added
    }

    /// Changes whenever [`Self::replace`] revoked something new.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(serials: &[&str]) -> HashSet<String> {
        serials.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn subscribers_hear_of_new_revocations_only() {
        let revoked = Revoked::new(set(&["0a"]));
        let mut changes = revoked.subscribe();
        assert!(revoked.contains("0a") && !revoked.contains("0b"));
        // The same serials, or fewer (expired ones left out): nothing new.
        assert_eq!(revoked.replace(set(&["0a"])), 0);
        assert_eq!(revoked.replace(set(&[])), 0);
        assert!(!changes.has_changed().unwrap());
        assert!(!revoked.contains("0a"));
        assert_eq!(revoked.replace(set(&["0b", "0c"])), 2);
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        assert_eq!(revoked.len(), 2);
        assert!(revoked.contains("0c"));
    }
}
