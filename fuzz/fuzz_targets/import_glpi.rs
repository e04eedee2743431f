//! GLPI's computer export, matched against a small register of comuni.

#![no_main]

use std::sync::OnceLock;

use campanile_territory::import;
use campanile_territory::register::Register;
use libfuzzer_sys::fuzz_target;

fn comuni() -> &'static Register {
    static COMUNI: OnceLock<Register> = OnceLock::new();
    COMUNI.get_or_init(|| {
        Register::parse(
            r#"
[[comune]]
istat_code = "037006"
name = "Borgo Tossignano"
province = "BO"

[[comune]]
istat_code = "037031"
name = "Fontanelice"
province = "BO"
"#,
            "comuni.toml",
        )
        .expect("the fuzz target's register parses")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = import::from_glpi_bytes(data, "fuzz.csv", comuni()) {
        let _ = file.to_toml("# fuzz\n");
    }
});
