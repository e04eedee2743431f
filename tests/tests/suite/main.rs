//! Campanile's end-to-end tests, one module per area, linked into a single
//! test binary: each binary links the whole workspace, so one binary instead
//! of a dozen keeps CI's disk use and link time down.

mod alerts;
mod allocator;
mod compression;
mod delivery;
mod deploy_configs;
mod docs;
mod end_to_end;
mod enrollment;
mod exit_codes;
mod exposition;
mod full_disk;
mod hostile_load;
mod netns;
mod probes;
mod reconnect;
mod refusals;
mod sighup;
mod territory;
mod windows;
