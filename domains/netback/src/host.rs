//! Host mode: the netback domain as a thread on the simulated hypervisor,
//! with a TAP device (`xen_sim::tap`) as its uplink.
//!
//! ```ignore
//! hv.register_image(windsor_netback::IMAGE, move |dom| {
//!     host::entry(dom, xs.connect(domid), toolstack, Some(TapUplink(tap)))
//! });
//! ```

use core::time::Duration;

use windsor_xenstore_client::XenStore;
use xen::platform::Platform;
use xen::DomId;
use xen_sim::tap::Tap;
use xen_sim::SimDomain;

use crate::service::{Netback, Uplink};

/// How long the service sleeps at most between looks at xenstore and the
/// uplink when idle.
pub const IDLE: Duration = Duration::from_millis(1);

/// A TAP device as the switch's uplink.
#[derive(Debug)]
pub struct TapUplink(pub Tap);

impl Uplink for TapUplink {
    fn send(&mut self, frame: &[u8]) {
        if let Err(e) = self.0.send(frame) {
            tracing::debug!(%e, "tap: send failed");
        }
    }
    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.0.recv(buf).ok().flatten()
    }
}

/// Runs the netback service on `dom` until it is destroyed or asked to
/// restart; control requests are taken from `toolstack`.
pub fn entry<X: XenStore, U: Uplink>(dom: SimDomain, xs: X, toolstack: DomId, uplink: Option<U>) {
    let me = dom.domid();
    let mut nb = Netback::new(&dom, &xs, me, toolstack, uplink);
    nb.run(IDLE);
}
