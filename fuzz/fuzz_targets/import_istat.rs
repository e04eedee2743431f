//! ISTAT's list of comuni, with and without a province filter.

#![no_main]

use campanile_territory::import;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let provinces = if mode & 1 == 1 {
        vec!["BO".to_owned(), "fc".to_owned()]
    } else {
        Vec::new()
    };
    if let Ok(file) = import::from_istat_bytes(bytes, "fuzz.csv", &provinces) {
        let _ = file.to_toml("# fuzz\n");
    }
});
