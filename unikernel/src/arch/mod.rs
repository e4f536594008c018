//! The architecture facade.
//!
//! The rest of the runtime calls only `crate::arch::…`: the boot entry,
//! the hypercall transport, the debug port, the time-stamp counter. Windsor
//! runs on x86_64 only today; another architecture would add a sibling
//! module and a `cfg` here.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use self::x86_64::*;
