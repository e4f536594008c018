//! Any bytes through the bundle reader dom0 runs: parse, every entry, the
//! plan.
#![no_main]

use libfuzzer_sys::fuzz_target;
use windsor_boot_config::Bundle;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(bundle) = Bundle::parse(bytes) {
        for i in 0..=bundle.len() {
            let _ = bundle.entry(i);
        }
        let _ = bundle.plan();
    }
});
