//! Config loading: any text either loads or gives errors; a config that
//! loads also compiles into a runtime (routers, pools, templates).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = sluice::config::parse(text, std::path::Path::new("fuzz.yaml")) {
        // A validated config must compile; a failure here is a bug.
        sluice::runtime::compile(&config).expect("a validated config compiles");
    }
});
