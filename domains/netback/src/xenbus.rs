//! The xenbus handshake of a VIF, backend side, as Linux's xen-netfront
//! expects it (`io/netif.h` "Feature and Parameter Negotiation").
//!
//! ```text
//! toolstack:  backend/vif/<fe>/<devid>/{frontend,frontend-id,online,state=1,mac,handle,mtu}
//!             /local/domain/<fe>/device/vif/<devid>/{backend,backend-id,state=1,handle,mac}
//! backend:    feature-rx-copy=1 feature-rx-flip=0 feature-sg=1 feature-gso-tcpv4=1
//!             feature-split-event-channels=1          then state=InitWait(2)
//! frontend:   tx-ring-ref rx-ring-ref (event-channel | event-channel-tx + event-channel-rx)
//!             request-rx-copy=1 feature-rx-notify=1 [feature-sg feature-gso-tcpv4
//!             feature-no-csum-offload]                then state=Connected(4)
//! backend:    maps the rings, binds the ports         then state=Connected(4)
//! ```
//!
//! `request-rx-copy` must be 1 (we never flip pages). Multi-queue is not
//! offered, so a frontend uses one queue and writes its keys at the top of
//! its directory. A frontend going `Closing`/`Closed` is followed to
//! `Closed`; one coming back to `Initialising` is offered `InitWait` again,
//! so frontends reconnect by walking the states (also after a backend
//! restart).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use windsor_xenstore_client::{Access, ClientError, Perm, TxId, XenStore};
use xen::abi::xenbus::XenbusState;
use xen::{DomId, EvtchnPort, GrantRef};

const T: TxId = TxId::NONE;

/// `backend/vif/<fe>/<devid>` of backend domain `be`.
pub fn backend_path(be: DomId, fe: DomId, devid: u32) -> String {
    format!("/local/domain/{}/backend/vif/{}/{}", be.0, fe.0, devid)
}

/// `device/vif/<devid>` of frontend domain `fe`.
pub fn frontend_path(fe: DomId, devid: u32) -> String {
    format!("/local/domain/{}/device/vif/{}", fe.0, devid)
}

/// The event channels a frontend offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrontendPorts {
    /// One port for both rings (`event-channel`).
    Single(EvtchnPort),
    /// `event-channel-tx` and `event-channel-rx`.
    Split {
        /// The tx ring's port.
        tx: EvtchnPort,
        /// The rx ring's port.
        rx: EvtchnPort,
    },
}

/// What a frontend wrote for us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontendConfig {
    /// `tx-ring-ref`.
    pub tx_ring_ref: GrantRef,
    /// `rx-ring-ref`.
    pub rx_ring_ref: GrantRef,
    /// Its ports.
    pub ports: FrontendPorts,
    /// `feature-sg`: it takes multi-slot rx packets.
    pub sg: bool,
    /// `feature-gso-tcpv4`: it takes TCPv4 GSO packets.
    pub gso_tcpv4: bool,
    /// `feature-no-csum-offload=1`: it takes only packets with full
    /// checksums (we complete partial ones for it).
    pub no_csum_offload: bool,
}

/// Why a frontend's configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// A key is missing or not a number.
    #[error("frontend key {0} missing or malformed")]
    Key(&'static str),
    /// `request-rx-copy` is not 1: page flipping is not supported.
    #[error("frontend does not request rx-copy")]
    NoRxCopy,
    /// The frontend asks for more than one queue.
    #[error("frontend asks for {0} queues; one is offered")]
    Queues(u32),
    /// xenstore failed.
    #[error(transparent)]
    Store(#[from] ClientError),
}

/// The features we offer (written before `InitWait`).
pub const FEATURES: &[(&str, &str)] = &[
    ("feature-rx-copy", "1"),
    ("feature-rx-flip", "0"),
    ("feature-sg", "1"),
    ("feature-gso-tcpv4", "1"),
    ("feature-split-event-channels", "1"),
];

/// Reads a node; `None` if missing.
pub fn read_opt<X: XenStore + ?Sized>(xs: &X, path: &str) -> Result<Option<Vec<u8>>, ClientError> {
    match xs.read(T, path) {
        Ok(v) => Ok(Some(v)),
        Err(ClientError::Store(xen::Errno::ENOENT)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn num<X: XenStore + ?Sized>(
    xs: &X,
    dir: &str,
    key: &'static str,
) -> Result<Option<u32>, HandshakeError> {
    match read_opt(xs, &format!("{dir}/{key}"))? {
        None => Ok(None),
        Some(v) => core::str::from_utf8(&v)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or(HandshakeError::Key(key)),
    }
}

/// The state at `<dir>/state` (`Unknown` if missing or garbage).
pub fn state<X: XenStore + ?Sized>(xs: &X, dir: &str) -> Result<XenbusState, ClientError> {
    Ok(read_opt(xs, &format!("{dir}/state"))?
        .and_then(|v| XenbusState::parse(&v))
        .unwrap_or(XenbusState::Unknown))
}

/// Writes our state.
pub fn set_state<X: XenStore + ?Sized>(
    xs: &X,
    be_path: &str,
    s: XenbusState,
) -> Result<(), ClientError> {
    xs.write(T, &format!("{be_path}/state"), s.as_text().as_bytes())
}

/// Writes the features, then `InitWait`.
pub fn offer<X: XenStore + ?Sized>(xs: &X, be_path: &str) -> Result<(), ClientError> {
    for (k, v) in FEATURES {
        xs.write(T, &format!("{be_path}/{k}"), v.as_bytes())?;
    }
    set_state(xs, be_path, XenbusState::InitWait)
}

/// Reads the frontend's rings, ports and features.
pub fn read_frontend<X: XenStore + ?Sized>(
    xs: &X,
    fe_path: &str,
) -> Result<FrontendConfig, HandshakeError> {
    let q = num(xs, fe_path, "multi-queue-num-queues")?.unwrap_or(1);
    if q != 1 {
        return Err(HandshakeError::Queues(q));
    }
    let req = |k| num(xs, fe_path, k)?.ok_or(HandshakeError::Key(k));
    let tx_ring_ref = GrantRef(req("tx-ring-ref")?);
    let rx_ring_ref = GrantRef(req("rx-ring-ref")?);
    let ports = match num(xs, fe_path, "event-channel")? {
        Some(p) => FrontendPorts::Single(EvtchnPort(p)),
        None => FrontendPorts::Split {
            tx: EvtchnPort(req("event-channel-tx")?),
            rx: EvtchnPort(req("event-channel-rx")?),
        },
    };
    if num(xs, fe_path, "request-rx-copy")? != Some(1) {
        return Err(HandshakeError::NoRxCopy);
    }
    let flag = |k| num(xs, fe_path, k).map(|v| v == Some(1));
    Ok(FrontendConfig {
        tx_ring_ref,
        rx_ring_ref,
        ports,
        sg: flag("feature-sg")?,
        gso_tcpv4: flag("feature-gso-tcpv4")?,
        no_csum_offload: flag("feature-no-csum-offload")?,
    })
}

/// What the toolstack writes to create a VIF (as libxl does): the backend
/// directory, owned by the backend domain and readable by the frontend,
/// and the frontend directory, owned by the frontend and readable by the
/// backend. For tests now, and for the toolstack.
pub fn announce<X: XenStore + ?Sized>(
    xs: &X,
    be: DomId,
    fe: DomId,
    devid: u32,
    mac: [u8; 6],
    mtu: u16,
) -> Result<(), ClientError> {
    let bp = backend_path(be, fe, devid);
    let fp = frontend_path(fe, devid);
    let mac = format_mac(mac);
    let be_nodes: [(&str, String); 7] = [
        ("frontend", fp.clone()),
        ("frontend-id", format!("{}", fe.0)),
        ("online", "1".into()),
        ("state", "1".into()),
        ("mac", mac.clone()),
        ("handle", format!("{devid}")),
        ("mtu", format!("{mtu}")),
    ];
    let fe_nodes: [(&str, String); 5] = [
        ("backend", bp.clone()),
        ("backend-id", format!("{}", be.0)),
        ("state", "1".into()),
        ("handle", format!("{devid}")),
        ("mac", mac),
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
    // Start from clean directories: nodes left by an earlier connection
    // (another backend) carry that connection's permissions.
    for p in [&bp, &fp] {
        match xs.rm(T, p) {
            Ok(()) | Err(ClientError::Store(xen::Errno::ENOENT)) => {}
            Err(e) => return Err(e),
        }
    }
    xs.write(T, &bp, b"")?;
    xs.set_perms(T, &bp, &perms(be, fe))?;
    for (k, v) in be_nodes {
        let p = format!("{bp}/{k}");
        xs.write(T, &p, v.as_bytes())?;
        xs.set_perms(T, &p, &perms(be, fe))?;
    }
    xs.write(T, &fp, b"")?;
    xs.set_perms(T, &fp, &perms(fe, be))?;
    for (k, v) in fe_nodes {
        let p = format!("{fp}/{k}");
        xs.write(T, &p, v.as_bytes())?;
        xs.set_perms(T, &p, &perms(fe, be))?;
    }
    Ok(())
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &[u8]) -> Option<[u8; 6]> {
    let s = core::str::from_utf8(s).ok()?;
    let mut out = [0u8; 6];
    let mut it = s.trim().split(':');
    for b in &mut out {
        *b = u8::from_str_radix(it.next()?, 16).ok()?;
    }
    it.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use windsor_xenstore::client::MemStore;

    fn front(xs: &MemStore, keys: &[(&str, &str)]) -> String {
        let p = frontend_path(DomId(7), 0);
        let _ = xs.rm(T, &p);
        for (k, v) in keys {
            xs.write(T, &format!("{p}/{k}"), v.as_bytes()).unwrap();
        }
        p
    }

    const BASE: [(&str, &str); 4] = [
        ("tx-ring-ref", "8"),
        ("rx-ring-ref", "9"),
        ("event-channel", "5"),
        ("request-rx-copy", "1"),
    ];

    #[test]
    fn reads_what_netfront_writes_and_refuses_the_rest() {
        let xs = MemStore::new();
        let p = front(&xs, &BASE);
        let c = read_frontend(&xs, &p).unwrap();
        assert_eq!(c.tx_ring_ref, GrantRef(8));
        assert_eq!(c.rx_ring_ref, GrantRef(9));
        assert_eq!(c.ports, FrontendPorts::Single(EvtchnPort(5)));
        assert!(!c.sg && !c.gso_tcpv4);
        // Split channels and features.
        let p = front(
            &xs,
            &[
                ("tx-ring-ref", "8"),
                ("rx-ring-ref", "9"),
                ("event-channel-tx", "5"),
                ("event-channel-rx", "6"),
                ("request-rx-copy", "1"),
                ("feature-sg", "1"),
                ("feature-gso-tcpv4", "1"),
            ],
        );
        let c = read_frontend(&xs, &p).unwrap();
        assert_eq!(
            c.ports,
            FrontendPorts::Split {
                tx: EvtchnPort(5),
                rx: EvtchnPort(6)
            }
        );
        assert!(c.sg && c.gso_tcpv4);
        // Refusals.
        let p = front(&xs, &BASE[..3]);
        assert_eq!(read_frontend(&xs, &p), Err(HandshakeError::NoRxCopy));
        let p = front(&xs, &[BASE[1], BASE[2], BASE[3]]);
        assert_eq!(
            read_frontend(&xs, &p),
            Err(HandshakeError::Key("tx-ring-ref"))
        );
        let p = front(&xs, &[BASE[0], BASE[1], ("event-channel", "x"), BASE[3]]);
        assert_eq!(
            read_frontend(&xs, &p),
            Err(HandshakeError::Key("event-channel"))
        );
        let mut many = BASE.to_vec();
        many.push(("multi-queue-num-queues", "4"));
        let p = front(&xs, &many);
        assert_eq!(read_frontend(&xs, &p), Err(HandshakeError::Queues(4)));
    }

    #[test]
    fn offer_announce_and_macs() {
        let xs = MemStore::new();
        let mac = [0, 0x16, 0x3e, 0xaa, 0xbb, 0x0c];
        announce(&xs, DomId(1), DomId(7), 0, mac, 1500).unwrap();
        let bp = backend_path(DomId(1), DomId(7), 0);
        assert_eq!(
            xs.read(T, &format!("{bp}/mac")).unwrap(),
            b"00:16:3e:aa:bb:0c"
        );
        assert_eq!(parse_mac(b"00:16:3e:aa:bb:0c"), Some(mac));
        assert_eq!(parse_mac(b"00:16:3e:aa:bb"), None);
        assert_eq!(parse_mac(b"00:16:3e:aa:bb:0c:01"), None);
        assert_eq!(state(&xs, &bp).unwrap(), XenbusState::Initialising);
        offer(&xs, &bp).unwrap();
        assert_eq!(state(&xs, &bp).unwrap(), XenbusState::InitWait);
        assert_eq!(xs.read(T, &format!("{bp}/feature-rx-copy")).unwrap(), b"1");
        let fp = frontend_path(DomId(7), 0);
        assert_eq!(xs.read(T, &format!("{fp}/backend")).unwrap(), bp.as_bytes());
        // The frontend owns its directory; the backend may read it.
        let perms = xs.get_perms(T, &fp).unwrap();
        assert_eq!(perms[0].dom, DomId(7));
        assert_eq!((perms[1].dom, perms[1].access), (DomId(1), Access::Read));
    }
}
