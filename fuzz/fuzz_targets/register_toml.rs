//! The register's own format: any text parses or gives an error, and a
//! register that parses converts to the importers' form and back.

#![no_main]

use campanile_territory::import::RegisterFile;
use campanile_territory::register::Register;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(register) = Register::parse(text, "fuzz.toml") {
        let _ = register.summary();
        let _ = register.places();
        if let Ok(toml) = RegisterFile::from_register(&register).to_toml("# fuzz\n") {
            // What we write, we must read back.
            Register::parse(&toml, "round-trip.toml")
                .expect("a register written from a parsed one parses again");
        }
    }
});
