//! Any bytes through the plan decoder dom0 runs; a plan that decodes must
//! encode back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use windsor_boot_config::BootPlan;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(plan) = BootPlan::from_postcard(bytes) {
        assert_eq!(BootPlan::from_postcard(&plan.to_postcard()), Ok(plan));
    }
});
