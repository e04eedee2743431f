//! The territory: comuni, sites, planned assets, obsolescence and gap
//! scoring, with no async runtime and no database in this crate's tree.
//!
//! - [`register`]: what the centre planned, and [`import`] from ISTAT,
//!   GLPI and plain CSV;
//! - [`eol`]: the operating systems' end-of-life catalog;
//! - [`hardware`]: whether a machine is adequate;
//! - [`host`]: what the collector knows of a host, as the store keeps it
//!   and the evaluation reads it;
//! - [`evaluate`]: a pure function of the register, the catalog, the
//!   thresholds ([`config`]) and the hosts' state; `/metrics` and the API
//!   both render its [`evaluate::View`], so they never disagree;
//! - [`state`]: the register and catalog in force, reloaded when asked.

pub mod config;
pub mod eol;
pub mod evaluate;
pub mod gap;
pub mod hardware;
pub mod host;
pub mod import;
pub mod register;
pub mod state;
