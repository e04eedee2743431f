//! Both config parsers, collector and agent: any text parses and
//! validates, or gives an error.

#![no_main]

use std::path::Path;

use campanile_agent::AgentConfig;
use campanile_collector::CollectorConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if mode & 1 == 0 {
        let _ = CollectorConfig::parse(text, Path::new("/fuzz/collector.toml"));
    } else {
        let _ = AgentConfig::parse(text, Path::new("/fuzz/agent.toml"));
    }
});
