//! The territory: comuni, sites, planned assets, obsolescence and gap
//! scoring. Today: the operating-system end-of-life catalog.

pub mod eol;
pub mod register;
