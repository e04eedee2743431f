//! `bare-ingest`: the yardstick server of the ingest benchmark (see
//! `campanile_bench::bare_ingest`). Prints its address, then serves until
//! killed.
//!
//! Usage: `bare-ingest <pki dir> [listen address, default 127.0.0.1:0]`.

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let pki = std::path::PathBuf::from(args.next().context("usage: bare-ingest <pki dir> [addr]")?);
    let addr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()?;
    tokio::runtime::Runtime::new()?.block_on(async move {
        let (listener, local) = campanile_bench::bare_ingest::bind(addr).await?;
        println!("{local}");
        campanile_bench::bare_ingest::serve(listener, &pki).await
    })
}
