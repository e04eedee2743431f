//! Windows: the registry, SMBIOS and the IP helper, read without WMI.
//!
//! WMI would answer the same questions, but each query starts a COM
//! apartment and costs tens of milliseconds, and the classes that say
//! most (`Win32_Tpm`, `MSFT_PhysicalDisk`) need rights or services a
//! cut-down PC may lack. What WMI reads underneath is reachable directly:
//! SMBIOS through `GetSystemFirmwareTable`, the OS and the installed
//! software in the registry, addresses, gateways and resolvers through
//! `GetAdaptersAddresses`.
//!
//! Each file maps what Windows returns into the wire types; the mapping
//! is pure and tested everywhere on recorded output, the reading is in
//! `api` and its helpers, on Windows only.
#![cfg_attr(not(windows), allow(dead_code))]

pub mod adapters;
#[cfg(windows)]
pub mod api;
pub mod disks;
pub mod firmware;
pub mod os_release;
#[cfg(windows)]
mod registry;
pub mod services;
pub mod uninstall;
pub mod values;
#[cfg(windows)]
mod wide;
