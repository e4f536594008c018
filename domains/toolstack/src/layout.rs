//! Where things live in xenstore: the pool records, a domain's runtime
//! nodes, and devices in Xen's standard layout.
//!
//! ```text
//! /pool/<Class>/<uuid>                      the record, as JSON (the pool database)
//! /local/domain/<id>/{domid,name,vm}        written by the toolstack at start
//! /local/domain/<id>/control/shutdown       requests to the guest (guest-writable, for the ack)
//! /local/domain/<id>/control/misbehave      fuzz-target instructions (toolstack-owned)
//! /local/domain/<id>/data/                  guest-owned reports
//! /local/domain/<id>/device/<type>/<n>      frontend: backend, backend-id, state, ...
//! /local/domain/<be>/backend/<type>/<id>/<n> backend: frontend, frontend-id, online, state, ...
//! ```
//!
//! `vm` points at the pool record (`/pool/VM/<uuid>`) rather than at xl's
//! `/vm/<uuid>` tree, which Windsor does not keep. Device `state` nodes
//! carry the XenbusState numbers of `io/xenbus.h` ([`XenbusState`]); the
//! toolstack writes both ends as `Initialising` and the driver domains take
//! the handshake from there.

use alloc::format;
use alloc::string::String;

use xen::abi::xenbus::XenbusState;
use xen::DomId;

use crate::action::Class;

/// Root of the pool database.
pub const POOL: &str = "/pool";

/// Directory of one class's records.
pub fn class_dir(class: Class) -> String {
    format!("{POOL}/{}", class.name())
}

/// The node holding one record.
pub fn record(class: Class, uuid: &str) -> String {
    format!("{POOL}/{}/{uuid}", class.name())
}

/// `/local/domain/<id>`.
pub fn domain(d: DomId) -> String {
    format!("/local/domain/{}", d.0)
}

/// A device class in xenstore (`vif`, `vbd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// Network interface (`io/netif.h`).
    Vif,
    /// Block device (`io/blkif.h`).
    Vbd,
}

impl DeviceKind {
    /// The directory name.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Vif => "vif",
            DeviceKind::Vbd => "vbd",
        }
    }
}

/// Frontend directory: `/local/domain/<guest>/device/<type>/<n>`.
pub fn frontend(guest: DomId, kind: DeviceKind, n: u32) -> String {
    format!("/local/domain/{}/device/{}/{n}", guest.0, kind.name())
}

/// Backend directory: `/local/domain/<backend>/backend/<type>/<guest>/<n>`.
pub fn backend(backend: DomId, kind: DeviceKind, guest: DomId, n: u32) -> String {
    format!(
        "/local/domain/{}/backend/{}/{}/{n}",
        backend.0,
        kind.name(),
        guest.0
    )
}

/// All backends of one guest of one kind: `/local/domain/<be>/backend/<type>/<guest>`.
pub fn backend_guest_dir(backend: DomId, kind: DeviceKind, guest: DomId) -> String {
    format!(
        "/local/domain/{}/backend/{}/{}",
        backend.0,
        kind.name(),
        guest.0
    )
}

/// The state value both ends start with.
pub fn initial_state() -> &'static str {
    XenbusState::Initialising.as_text()
}

/// The Linux `virtual-device` number of `xvd<letter>` for position `n`
/// (major 202, 16 minors per disk), as `blkif.h`'s vdev encoding.
pub fn xvd_number(n: u32) -> u32 {
    (202 << 8) | (n << 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_paths() {
        assert_eq!(
            frontend(DomId(5), DeviceKind::Vif, 0),
            "/local/domain/5/device/vif/0"
        );
        assert_eq!(
            backend(DomId(0), DeviceKind::Vbd, DomId(5), 51712),
            "/local/domain/0/backend/vbd/5/51712"
        );
        assert_eq!(xvd_number(0), 51712);
        assert_eq!(record(Class::Vm, "u"), "/pool/VM/u");
        assert_eq!(initial_state(), "1");
    }
}
