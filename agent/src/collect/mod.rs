//! Collectors: each file reads one kind of host data into the wire types.
//! They know nothing of gRPC or queues; [`HostCollector`] holds the state
//! that must live between cycles (CPU counters, cached package list).

mod cpu;
mod filesystem;
mod inventory;
pub use inventory::hostname;
mod memory;
mod network;
pub mod probe;
mod system;

use campanile_proto::v1::{Health, Inventory};
use sysinfo::System;

use crate::config::CollectConfig;

pub use inventory::InventoryCache;

pub struct HostCollector {
    cfg: CollectConfig,
    /// `None` where sysinfo does not support this OS: everything it would
    /// give is then reported as not collected.
    sys: Option<System>,
    cpu: cpu::CpuUsage,
    inventory: InventoryCache,
}

impl HostCollector {
    pub fn new(cfg: CollectConfig) -> Self {
        let sys = System::new().ok();
        if sys.is_none() {
            tracing::warn!(
                "sysinfo does not support this platform: CPU and memory are not collected"
            );
        }
        Self {
            cfg,
            sys,
            cpu: cpu::CpuUsage::default(),
            inventory: InventoryCache::default(),
        }
    }

    /// Takes the first CPU sample, so the first real cycle has a rate.
    pub fn prime(&mut self) {
        self.cpu.prime(self.sys.as_mut());
    }

    pub fn health(&mut self) -> Health {
        let mut h = Health::default();
        self.cpu.usage(self.sys.as_mut(), &mut h);
        if let Some(sys) = &mut self.sys {
            memory::collect(sys, &mut h);
        }
        cpu::load(&mut h);
        system::collect(&self.cfg, &mut h);
        filesystem::collect(&self.cfg, &mut h);
        network::collect(&self.cfg, &mut h);
        h
    }

    pub fn inventory(&mut self) -> Inventory {
        self.inventory.collect(&self.cfg, self.sys.as_mut())
    }
}
