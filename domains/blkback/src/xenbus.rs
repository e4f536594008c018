//! The xenbus handshake of a blkif backend (`io/blkif.h`, `io/xenbus.h`,
//! Xen 4.17), as a state machine over a [`XenStore`] client.
//!
//! The toolstack creates both directories ([`plumb`] writes the layout
//! libxl uses):
//!
//! ```text
//! /local/domain/<back>/backend/vbd/<front>/<devid>/   frontend, frontend-id, online, state=1,
//!                                                     params, mode, type, device-type
//! /local/domain/<front>/device/vbd/<devid>/           backend, backend-id, state=1,
//!                                                     virtual-device, device-type
//! ```
//!
//! Then, watching the frontend's `state`:
//!
//! ```text
//! back: probe    publish feature-*, max-ring-page-order   -> InitWait (2)
//! front:         ring-ref[N], event-channel, protocol     -> Initialised (3)
//! back: Connect  map the ring, bind the port;
//!       connected: sectors, info, sector-size, ...        -> Connected (4)
//! front: Closing (5) -> back Closing; Closed (6) -> back Closed;
//! front: Initialising (1) again after Closed               -> back InitWait (reconnect)
//! ```
//!
//! Everything read from the frontend's directory is guest-controlled and
//! parsed with bounds ([`FrontendError`]); a frontend that writes nonsense
//! gets an `error` node and the backend goes to Closing, other VBDs are
//! not affected.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use windsor_xenstore_client::{Access, ClientError, Perm, TxId, XenStore};
use xen::abi::xenbus::XenbusState;
use xen::{DomId, EvtchnPort, GrantRef};

const T: TxId = TxId::NONE;

/// The only ring ABI Windsor serves (`XEN_IO_PROTO_ABI_X86_64`).
pub const PROTOCOL_X86_64: &str = "x86_64-abi";

/// Largest `max-ring-page-order` Windsor offers (Linux's blkback allows 4).
pub const MAX_RING_PAGE_ORDER: u32 = 4;

/// What the backend offers for one VBD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// Disk size in 512-byte sectors (`sectors`; `sector-size` is 512).
    pub sectors: u64,
    /// `physical-sector-size` in bytes (a multiple of 512).
    pub physical_sector_size: u32,
    /// `info` bits (`VDISK_READONLY`, ...).
    pub info: u32,
    /// `feature-flush-cache`.
    pub flush: bool,
    /// `feature-barrier`.
    pub barrier: bool,
    /// `feature-discard` (with `discard-granularity` = `physical-sector-size`,
    /// `discard-alignment` = 0, `discard-secure` = 0).
    pub discard: bool,
    /// `feature-persistent`.
    pub persistent: bool,
    /// `feature-max-indirect-segments` (0: not offered, node absent).
    pub max_indirect_segments: u16,
    /// `max-ring-page-order`.
    pub max_ring_page_order: u32,
}

impl Offer {
    /// The request limits that follow from the offer.
    pub fn limits(&self) -> crate::wire::Limits {
        crate::wire::Limits {
            max_indirect_segments: self.max_indirect_segments,
            discard: self.discard,
            barrier: self.barrier,
            flush: self.flush,
        }
    }
}

/// What the frontend set up for a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontendRing {
    /// The grants of the ring pages, in order (`ring-ref` or `ring-ref%u`).
    pub refs: Vec<GrantRef>,
    /// The frontend's port (`event-channel`).
    pub port: EvtchnPort,
    /// `feature-persistent` of the frontend.
    pub persistent: bool,
}

/// A frontend node that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrontendError {
    /// A node the connection needs is missing.
    #[error("frontend node {0} missing")]
    Missing(String),
    /// A node holds something other than the number expected.
    #[error("frontend node {0} malformed")]
    Malformed(String),
    /// `ring-page-order` above what the backend offered.
    #[error("ring-page-order {0} above the maximum offered")]
    RingOrder(u32),
    /// A `protocol` other than `x86_64-abi`.
    #[error("unsupported ring protocol")]
    Protocol,
    /// More than one queue asked (`multi-queue-num-queues`), which is not
    /// offered.
    #[error("multiple queues not offered")]
    Queues,
}

/// Why the handshake failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The xenstore call failed.
    #[error(transparent)]
    Store(#[from] ClientError),
    /// The frontend published unusable parameters.
    #[error(transparent)]
    Frontend(#[from] FrontendError),
    /// The backend directory lacks `frontend`/`frontend-id`, or names a
    /// frontend in another domain.
    #[error("backend directory incomplete")]
    BadBackendDir,
}

/// What the service must do after a frontend state change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// Map the ring and bind the port, then call
    /// [`Backend::connected`] (or [`Backend::fail`]).
    Connect(FrontendRing),
    /// Stop serving the ring (unmap, unbind); the backend state is now
    /// Closing or Closed.
    Disconnect,
    /// The device is gone (frontend vanished, or closed while `online` is
    /// 0): disconnect and forget it.
    Remove,
}

/// The backend end of one VBD's handshake.
#[derive(Clone, Debug)]
pub struct Backend {
    dir: String,
    front_dir: String,
    front_id: DomId,
    offer: Offer,
    state: XenbusState,
}

fn read_str<X: XenStore + ?Sized>(xs: &X, path: &str) -> Result<Option<String>, ClientError> {
    match xs.read(T, path) {
        Ok(v) => Ok(Some(String::from_utf8_lossy(&v).into_owned())),
        Err(ClientError::Store(xen::Errno::ENOENT)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Parses a decimal xenstore number (trailing NULs and newlines allowed).
pub fn parse_num(v: &str) -> Option<u64> {
    let v = v.trim_end_matches(['\0', '\n']);
    if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

impl Backend {
    /// Takes the device at `dir` (a backend directory the toolstack made),
    /// publishes the offer and switches to InitWait.
    pub fn probe<X: XenStore + ?Sized>(xs: &X, dir: &str, offer: Offer) -> Result<Backend, Error> {
        let front_dir = read_str(xs, &format!("{dir}/frontend"))?.ok_or(Error::BadBackendDir)?;
        let front_id = read_str(xs, &format!("{dir}/frontend-id"))?
            .and_then(|v| parse_num(&v))
            .and_then(|v| u16::try_from(v).ok())
            .map(DomId)
            .filter(|d| d.is_ordinary())
            .ok_or(Error::BadBackendDir)?;
        let mut b = Backend {
            dir: dir.to_string(),
            front_dir,
            front_id,
            offer,
            state: XenbusState::Initialising,
        };
        b.publish_features(xs)?;
        b.switch(xs, XenbusState::InitWait)?;
        Ok(b)
    }

    fn publish_features<X: XenStore + ?Sized>(&self, xs: &X) -> Result<(), ClientError> {
        let o = &self.offer;
        let b = |v: bool| if v { "1" } else { "0" };
        let mut nodes: Vec<(&str, String)> = alloc::vec![
            ("feature-flush-cache", b(o.flush).into()),
            ("feature-barrier", b(o.barrier).into()),
            ("feature-discard", b(o.discard).into()),
            ("feature-persistent", b(o.persistent).into()),
            ("max-ring-page-order", o.max_ring_page_order.to_string()),
        ];
        if o.discard {
            nodes.push(("discard-granularity", o.physical_sector_size.to_string()));
            nodes.push(("discard-alignment", "0".into()));
            nodes.push(("discard-secure", "0".into()));
        }
        if o.max_indirect_segments > 0 {
            nodes.push((
                "feature-max-indirect-segments",
                o.max_indirect_segments.to_string(),
            ));
        }
        windsor_xenstore_client::in_transaction(xs, |tx| {
            for (k, v) in &nodes {
                xs.write(tx, &format!("{}/{k}", self.dir), v.as_bytes())?;
            }
            Ok(())
        })
    }

    fn switch<X: XenStore + ?Sized>(&mut self, xs: &X, s: XenbusState) -> Result<(), ClientError> {
        xs.write(T, &format!("{}/state", self.dir), s.as_text().as_bytes())?;
        self.state = s;
        Ok(())
    }

    /// The backend directory.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The frontend directory (watch `<it>/state`).
    pub fn frontend_dir(&self) -> &str {
        &self.front_dir
    }

    /// The frontend's domain.
    pub fn frontend_id(&self) -> DomId {
        self.front_id
    }

    /// Our xenbus state.
    pub fn state(&self) -> XenbusState {
        self.state
    }

    /// The offer made.
    pub fn offer(&self) -> &Offer {
        &self.offer
    }

    /// Reads the frontend's state and says what to do.
    pub fn frontend_changed<X: XenStore + ?Sized>(&mut self, xs: &X) -> Result<Action, Error> {
        // The toolstack unplugged the device: its backend directory is gone.
        match xs.read(T, &format!("{}/frontend", self.dir)) {
            Ok(_) => {}
            Err(ClientError::Store(xen::Errno::ENOENT | xen::Errno::EACCES)) => {
                return Ok(Action::Remove)
            }
            Err(e) => return Err(e.into()),
        }
        let fs = match xs.read(T, &format!("{}/state", self.front_dir)) {
            Ok(v) => XenbusState::parse(&v).unwrap_or(XenbusState::Unknown),
            Err(ClientError::Store(xen::Errno::ENOENT | xen::Errno::EACCES)) => {
                XenbusState::Unknown
            }
            Err(e) => return Err(e.into()),
        };
        use XenbusState::*;
        Ok(match fs {
            Initialising => {
                // A frontend starting over after a close (it may have gone
                // through Closed faster than we looked): reconnect.
                if matches!(self.state, Closing | Closed) {
                    self.switch(xs, InitWait)?;
                }
                Action::None
            }
            Initialised | Connected => match self.state {
                InitWait | Initialised => match self.read_frontend(xs) {
                    Ok(ring) => Action::Connect(ring),
                    Err(Error::Frontend(e)) => {
                        self.fail(xs, &e.to_string())?;
                        Action::Disconnect
                    }
                    Err(e) => return Err(e),
                },
                _ => Action::None,
            },
            Closing => {
                if self.state != Closing && self.state != Closed {
                    self.switch(xs, Closing)?;
                    Action::Disconnect
                } else {
                    Action::None
                }
            }
            Closed => {
                let was = self.state;
                if was != Closed {
                    self.switch(xs, Closed)?;
                }
                if !self.online(xs)? {
                    Action::Remove
                } else if was != Closed && was != Closing {
                    Action::Disconnect
                } else {
                    Action::None
                }
            }
            Unknown | InitWait | Reconfiguring | Reconfigured => {
                // Gone, or no longer readable to us: the toolstack removed it.
                match xs.read(T, &self.front_dir) {
                    Ok(_) => Action::None,
                    Err(ClientError::Store(xen::Errno::ENOENT | xen::Errno::EACCES)) => {
                        Action::Remove
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        })
    }

    fn online<X: XenStore + ?Sized>(&self, xs: &X) -> Result<bool, ClientError> {
        Ok(read_str(xs, &format!("{}/online", self.dir))?
            .and_then(|v| parse_num(&v))
            .is_some_and(|v| v != 0))
    }

    fn read_frontend<X: XenStore + ?Sized>(&self, xs: &X) -> Result<FrontendRing, Error> {
        let node = |k: &str| read_str(xs, &format!("{}/{k}", self.front_dir));
        let num = |k: &str| -> Result<Option<u64>, Error> {
            match node(k)? {
                None => Ok(None),
                Some(v) => parse_num(&v)
                    .map(Some)
                    .ok_or_else(|| FrontendError::Malformed(k.into()).into()),
            }
        };
        let u32_of = |k: &str, v: u64| -> Result<u32, Error> {
            u32::try_from(v).map_err(|_| FrontendError::Malformed(k.into()).into())
        };
        if let Some(p) = node("protocol")? {
            if p.trim_end_matches('\0') != PROTOCOL_X86_64 {
                return Err(FrontendError::Protocol.into());
            }
        }
        if num("multi-queue-num-queues")?.unwrap_or(1) > 1 {
            return Err(FrontendError::Queues.into());
        }
        let order = match num("ring-page-order")? {
            None => 0,
            Some(v) => u32_of("ring-page-order", v)?,
        };
        if order > self.offer.max_ring_page_order {
            return Err(FrontendError::RingOrder(order).into());
        }
        let refs = if order == 0 && node("ring-ref")?.is_some() {
            let v = num("ring-ref")?.unwrap_or(0);
            alloc::vec![GrantRef(u32_of("ring-ref", v)?)]
        } else {
            let mut refs = Vec::with_capacity(1 << order);
            for i in 0..(1u32 << order) {
                let k = format!("ring-ref{i}");
                let v = num(&k)?.ok_or_else(|| FrontendError::Missing(k.clone()))?;
                refs.push(GrantRef(u32_of(&k, v)?));
            }
            refs
        };
        let port =
            num("event-channel")?.ok_or_else(|| FrontendError::Missing("event-channel".into()))?;
        let port = EvtchnPort(u32_of("event-channel", port)?);
        let persistent =
            self.offer.persistent && num("feature-persistent").ok().flatten() == Some(1);
        Ok(FrontendRing {
            refs,
            port,
            persistent,
        })
    }

    /// The ring is mapped and the port bound: publishes the disk's
    /// properties and switches to Connected.
    pub fn connected<X: XenStore + ?Sized>(&mut self, xs: &X) -> Result<(), ClientError> {
        let o = self.offer.clone();
        windsor_xenstore_client::in_transaction(xs, |tx| {
            for (k, v) in [
                ("sectors", o.sectors.to_string()),
                ("info", o.info.to_string()),
                ("sector-size", "512".to_string()),
                ("physical-sector-size", o.physical_sector_size.to_string()),
            ] {
                xs.write(tx, &format!("{}/{k}", self.dir), v.as_bytes())?;
            }
            xs.write(
                tx,
                &format!("{}/state", self.dir),
                XenbusState::Connected.as_text().as_bytes(),
            )
        })?;
        self.state = XenbusState::Connected;
        Ok(())
    }

    /// Gives up on the connection: writes `error` and switches to Closing
    /// (a hostile or broken frontend; other VBDs go on).
    pub fn fail<X: XenStore + ?Sized>(&mut self, xs: &X, why: &str) -> Result<(), ClientError> {
        xs.write(T, &format!("{}/error", self.dir), why.as_bytes())?;
        self.switch(xs, XenbusState::Closing)
    }
}

/// A VBD as the toolstack describes it to [`plumb`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plumbing<'a> {
    /// The driver domain.
    pub backend: DomId,
    /// The guest.
    pub frontend: DomId,
    /// The device id (`virtual-device`, e.g. 51712 for xvda).
    pub devid: u32,
    /// `params`: what the backend opens (an image path).
    pub params: &'a str,
    /// Writable (`mode` = `w`) or not (`r`).
    pub writable: bool,
}

/// Writes the two device directories as a toolstack does (libxl's layout),
/// with permissions: each end owns its directory and the other end may read
/// it. Returns (backend dir, frontend dir).
pub fn plumb<X: XenStore + ?Sized>(
    xs: &X,
    p: &Plumbing<'_>,
) -> Result<(String, String), ClientError> {
    let back = format!(
        "/local/domain/{}/backend/vbd/{}/{}",
        p.backend.0, p.frontend.0, p.devid
    );
    let front = format!("/local/domain/{}/device/vbd/{}", p.frontend.0, p.devid);
    let init = XenbusState::Initialising.as_text();
    let back_nodes = [
        ("frontend", front.clone()),
        ("frontend-id", p.frontend.0.to_string()),
        ("online", "1".into()),
        ("state", init.into()),
        ("params", p.params.into()),
        ("mode", if p.writable { "w" } else { "r" }.into()),
        ("type", "file".into()),
        ("device-type", "disk".into()),
        ("removable", "0".into()),
    ];
    let front_nodes = [
        ("backend", back.clone()),
        ("backend-id", p.backend.0.to_string()),
        ("state", init.into()),
        ("virtual-device", p.devid.to_string()),
        ("device-type", "disk".into()),
    ];
    let perms = |owner: DomId, reader: DomId| {
        [
            Perm {
                dom: owner,
                access: Access::None,
            },
            Perm {
                dom: reader,
                access: Access::Read,
            },
        ]
    };
    let parents = [
        (format!("/local/domain/{}/backend", p.backend.0), p.backend),
        (
            format!("/local/domain/{}/backend/vbd", p.backend.0),
            p.backend,
        ),
        (
            format!("/local/domain/{}/backend/vbd/{}", p.backend.0, p.frontend.0),
            p.backend,
        ),
        (format!("/local/domain/{}/device", p.frontend.0), p.frontend),
        (
            format!("/local/domain/{}/device/vbd", p.frontend.0),
            p.frontend,
        ),
    ];
    windsor_xenstore_client::in_transaction(xs, |tx| {
        for (dir, owner) in &parents {
            if xs.read(tx, dir).is_err() {
                xs.write(tx, dir, b"")?;
            }
            xs.set_perms(
                tx,
                dir,
                &[Perm {
                    dom: *owner,
                    access: Access::None,
                }],
            )?;
        }
        for (dir, nodes, owner, reader) in [
            (&back, &back_nodes[..], p.backend, p.frontend),
            (&front, &front_nodes[..], p.frontend, p.backend),
        ] {
            xs.write(tx, dir, b"")?;
            xs.set_perms(tx, dir, &perms(owner, reader))?;
            for (k, v) in nodes.iter() {
                let path = format!("{dir}/{k}");
                xs.write(tx, &path, v.as_bytes())?;
                xs.set_perms(tx, &path, &perms(owner, reader))?;
            }
        }
        Ok(())
    })?;
    Ok((back, front))
}

#[cfg(test)]
mod tests {
    use super::*;
    use windsor_xenstore::client::MemStore;

    fn offer() -> Offer {
        Offer {
            sectors: 2048,
            physical_sector_size: 4096,
            info: 0,
            flush: true,
            barrier: true,
            discard: true,
            persistent: true,
            max_indirect_segments: 256,
            max_ring_page_order: 2,
        }
    }

    fn setup() -> (MemStore, MemStore, MemStore, String, String) {
        let dom0 = MemStore::new();
        let (b, f) = plumb(
            &dom0,
            &Plumbing {
                backend: DomId(1),
                frontend: DomId(2),
                devid: 51712,
                params: "/img",
                writable: true,
            },
        )
        .unwrap();
        (
            dom0.clone(),
            dom0.connect(DomId(1)),
            dom0.connect(DomId(2)),
            b,
            f,
        )
    }

    fn read(xs: &MemStore, p: &str) -> String {
        String::from_utf8(xs.read(T, p).unwrap()).unwrap()
    }

    #[test]
    fn full_handshake_and_reconnect() {
        let (_d0, bx, fx, b, f) = setup();
        let mut be = Backend::probe(&bx, &b, offer()).unwrap();
        assert_eq!(read(&fx, &format!("{b}/state")), "2");
        assert_eq!(
            read(&fx, &format!("{b}/feature-max-indirect-segments")),
            "256"
        );
        assert_eq!(read(&fx, &format!("{b}/max-ring-page-order")), "2");
        assert_eq!(be.frontend_changed(&bx).unwrap(), Action::None);
        // The frontend publishes a 2-page ring.
        for (k, v) in [
            ("ring-page-order", "1"),
            ("ring-ref0", "8"),
            ("ring-ref1", "9"),
            ("event-channel", "5"),
            ("protocol", "x86_64-abi"),
            ("feature-persistent", "1"),
            ("state", "3"),
        ] {
            fx.write(T, &format!("{f}/{k}"), v.as_bytes()).unwrap();
        }
        let Action::Connect(ring) = be.frontend_changed(&bx).unwrap() else {
            panic!()
        };
        assert_eq!(ring.refs, [GrantRef(8), GrantRef(9)]);
        assert_eq!(ring.port, EvtchnPort(5));
        assert!(ring.persistent);
        be.connected(&bx).unwrap();
        assert_eq!(read(&fx, &format!("{b}/sectors")), "2048");
        assert_eq!(read(&fx, &format!("{b}/sector-size")), "512");
        assert_eq!(read(&fx, &format!("{b}/state")), "4");
        fx.write(T, &format!("{f}/state"), b"4").unwrap();
        assert_eq!(be.frontend_changed(&bx).unwrap(), Action::None);
        // Close, then reconnect.
        fx.write(T, &format!("{f}/state"), b"5").unwrap();
        assert_eq!(be.frontend_changed(&bx).unwrap(), Action::Disconnect);
        fx.write(T, &format!("{f}/state"), b"6").unwrap();
        assert_eq!(be.frontend_changed(&bx).unwrap(), Action::None);
        assert_eq!(be.state(), XenbusState::Closed);
        fx.write(T, &format!("{f}/state"), b"1").unwrap();
        be.frontend_changed(&bx).unwrap();
        assert_eq!(be.state(), XenbusState::InitWait);
        fx.write(T, &format!("{f}/state"), b"3").unwrap();
        assert!(matches!(
            be.frontend_changed(&bx).unwrap(),
            Action::Connect(_)
        ));
    }

    #[test]
    fn hostile_frontend_nodes_close_the_device() {
        for (k, v) in [
            ("ring-page-order", "9"),
            ("ring-page-order", "-1"),
            ("event-channel", "99999999999999999999999"),
            ("protocol", "x86_32-abi"),
            ("multi-queue-num-queues", "4"),
        ] {
            let (_d0, bx, fx, b, f) = setup();
            let mut be = Backend::probe(&bx, &b, offer()).unwrap();
            fx.write(T, &format!("{f}/ring-ref"), b"8").unwrap();
            fx.write(T, &format!("{f}/event-channel"), b"5").unwrap();
            fx.write(T, &format!("{f}/{k}"), v.as_bytes()).unwrap();
            fx.write(T, &format!("{f}/state"), b"3").unwrap();
            assert_eq!(
                be.frontend_changed(&bx).unwrap(),
                Action::Disconnect,
                "{k}={v}"
            );
            assert_eq!(be.state(), XenbusState::Closing);
            assert!(!read(&fx, &format!("{b}/error")).is_empty());
        }
    }

    #[test]
    fn vanished_or_offline_frontend_is_removed() {
        let (d0, bx, _fx, b, f) = setup();
        let mut be = Backend::probe(&bx, &b, offer()).unwrap();
        d0.rm(T, &f).unwrap();
        assert_eq!(be.frontend_changed(&bx).unwrap(), Action::Remove);
        let (d0, bx, fx, b, f) = setup();
        let mut be = Backend::probe(&bx, &b, offer()).unwrap();
        d0.write(T, &format!("{b}/online"), b"0").unwrap();
        fx.write(T, &format!("{f}/state"), b"6").unwrap();
        assert_eq!(be.frontend_changed(&bx).unwrap(), Action::Remove);
    }

    #[test]
    fn unplugged_device_is_removed() {
        let (d0, bx, _fx, b, _f) = setup();
        let mut be = Backend::probe(&bx, &b, offer()).unwrap();
        assert_eq!(be.frontend_changed(&bx).unwrap(), Action::None);
        bx.watch(&format!("{b}/online"), "t").unwrap();
        bx.next_event(Some(core::time::Duration::ZERO)).unwrap();
        d0.rm(T, &b).unwrap();
        // Removing the directory fires the watch on its `online` node.
        bx.next_event(Some(core::time::Duration::from_secs(1)))
            .unwrap();
        assert_eq!(be.frontend_changed(&bx).unwrap(), Action::Remove);
    }

    #[test]
    fn numbers_are_bounded() {
        assert_eq!(parse_num("42\0"), Some(42));
        assert_eq!(parse_num(""), None);
        assert_eq!(parse_num("+1"), None);
        assert_eq!(parse_num("99999999999999999999999"), None);
    }
}
