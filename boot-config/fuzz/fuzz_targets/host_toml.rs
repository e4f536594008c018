//! Any text through the TOML parser and the validator; a host that
//! validates must plan, encode and decode back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use windsor_boot_config::{BootPlan, HostConfig};

fuzz_target!(|text: &str| {
    if let Ok(host) = HostConfig::parse(text, "fuzz.toml") {
        let plan = host.plan();
        assert_eq!(BootPlan::from_postcard(&plan.to_postcard()), Ok(plan));
    }
});
