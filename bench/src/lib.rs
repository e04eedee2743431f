//! Campanile's fleet simulator and the `make bench` harness, beside the
//! tools they are measured against.
//!
//! - [`fleet`]: thousands of simulated agents from one process against a
//!   real collector over real mTLS (`fleet-sim`);
//! - [`harness`]: the sections of `docs/benchmarks/make-bench.md`
//!   (`benchmarks`), and the record they are written into;
//! - [`bare_ingest`]: the yardstick of the ingest figure, a bare tonic
//!   server (`bare-ingest`);
//! - [`stats`]: the one median and percentile every figure uses.
//!
//! What a process costs (memory, CPU, size on disk) is read by
//! `campanile_tests::procs`, which the tests use too.

pub mod bare_ingest;
pub mod fleet;
pub mod harness;
pub mod stats;
