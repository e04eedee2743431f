//! The plain CSV importer: any bytes import or give an error, and what
//! imports is written as register TOML without a panic.

#![no_main]

use campanile_territory::import;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = import::from_csv_bytes(data, "fuzz.csv") {
        let _ = file.to_toml("# fuzz\n");
    }
});
