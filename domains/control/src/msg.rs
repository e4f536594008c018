//! The messages of the control protocol.
//!
//! Every frame carries one [`Envelope`]: the protocol [`VERSION`] of the
//! sender, a request id chosen by the client and echoed by the server, and
//! a body. The client sends [`Request`]s, the server answers each with
//! exactly one [`Response`] of the same id, in order. The first exchange of
//! a connection is [`Request::Hello`] / [`Response::Hello`]; a server that
//! gets an envelope of another major version answers
//! [`ErrorCode::Version`] and closes.
//!
//! Every variable-length field is bounded (see the `MAX_*` constants); the
//! decoder rejects longer ones, so a peer cannot make the other allocate
//! more than a frame's worth.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks. Envelopes of another version
/// are refused.
pub const VERSION: u16 = 1;
/// Most devices in one [`Response::Counters`] or [`Response::Health`].
pub const MAX_DEVICES: usize = 256;
/// Longest string in any message (names, paths, messages).
pub const MAX_STRING: usize = 256;

/// What kind of device a service domain serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DeviceKind {
    /// A network interface (`vif`, netback).
    Vif,
    /// A block device (`vbd`, blkback).
    Vbd,
}

impl DeviceKind {
    /// The xenstore name (`backend/<kind>/...`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Vif => "vif",
            DeviceKind::Vbd => "vbd",
        }
    }
}

/// A device: kind, frontend domain and device id, as in the xenstore
/// paths `backend/<kind>/<frontend>/<devid>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeviceId {
    /// The device kind.
    pub kind: DeviceKind,
    /// The frontend (guest) domain.
    pub frontend: u16,
    /// The device id within the guest.
    pub devid: u32,
}

/// Parameters of a network interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VifParams {
    /// The guest's MAC address.
    pub mac: [u8; 6],
    /// The MTU (bytes of IP packet).
    pub mtu: u16,
    /// Rate limit: `(bytes, microseconds)` of credit, as Linux netback's
    /// `rate` key; `None` for no limit.
    pub rate: Option<(u64, u32)>,
}

/// Parameters of a block device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VbdParams {
    /// The backing store (the `params` key: a path for a raw image).
    pub params: String,
    /// Read-only (`mode` `r`).
    pub readonly: bool,
}

/// Parameters of a device, by kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceParams {
    /// A network interface.
    Vif(VifParams),
    /// A block device.
    Vbd(VbdParams),
}

/// Counters of a network interface, from the guest's point of view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VifCounters {
    /// Packets the guest sent that were forwarded.
    pub tx_packets: u64,
    /// Bytes of those packets.
    pub tx_bytes: u64,
    /// Packets the guest sent that were dropped (malformed, over MTU, no
    /// destination queue space).
    pub tx_dropped: u64,
    /// Packets delivered to the guest.
    pub rx_packets: u64,
    /// Bytes of those packets.
    pub rx_bytes: u64,
    /// Packets for the guest that were dropped (no buffers, queue full).
    pub rx_dropped: u64,
    /// Times the rate limit held the guest's transmissions back.
    pub rate_limited: u64,
}

/// Counters of a block device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VbdCounters {
    /// Read requests served.
    pub reads: u64,
    /// Write requests served.
    pub writes: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Requests that failed.
    pub errors: u64,
}

/// Counters of one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceCounters {
    /// A network interface's.
    Vif(VifCounters),
    /// A block device's.
    Vbd(VbdCounters),
}

/// The state of one device as the service domain sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceState {
    /// Plugged, waiting for the frontend's handshake.
    Waiting,
    /// Connected and serving.
    Connected,
    /// Disconnected because the frontend broke the protocol; it can
    /// reconnect by walking the states again.
    Failed,
    /// The frontend closed it.
    Closed,
}

/// The health report of a service domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Milliseconds since the service started.
    pub uptime_ms: u64,
    /// Each plugged device and its state (at most [`MAX_DEVICES`]).
    pub devices: Vec<(DeviceId, DeviceState)>,
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The envelope's version is not ours.
    Version,
    /// The device is not plugged.
    NoSuchDevice,
    /// The device is already plugged.
    AlreadyPlugged,
    /// This service does not serve that kind of device.
    WrongKind,
    /// The parameters are invalid (e.g. a multicast MAC, MTU out of range).
    BadParams,
    /// The service is at its device limit.
    Full,
    /// xenstore refused the service's writes.
    Store,
}

/// What the client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Opens a session; the server answers its name and version.
    Hello,
    /// Start serving a device whose xenstore nodes the toolstack wrote.
    Plug {
        /// The device.
        device: DeviceId,
        /// Its parameters.
        params: DeviceParams,
    },
    /// Stop serving a device (the backend walks to `Closed`).
    Unplug {
        /// The device.
        device: DeviceId,
    },
    /// The counters of one device, or of all with `None`.
    Counters {
        /// The device, or all.
        device: Option<DeviceId>,
    },
    /// The service's health.
    Health,
    /// Ask the service to restart: it answers, then exits; the toolstack
    /// starts it again and the frontends reconnect.
    Restart,
}

/// What the server answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Hello`].
    Hello {
        /// The service's name (`netback`, `blkback`).
        service: String,
        /// Its [`VERSION`].
        version: u16,
    },
    /// Done.
    Ok,
    /// Counters (at most [`MAX_DEVICES`]).
    Counters(Vec<(DeviceId, DeviceCounters)>),
    /// Health.
    Health(Health),
    /// The request failed.
    Error(ErrorCode),
}

/// A message body: a request or a response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// From the client.
    Request(Request),
    /// From the server.
    Response(Response),
}

/// One frame's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sender's protocol version.
    pub version: u16,
    /// Chosen by the client, echoed by the server.
    pub id: u32,
    /// The message.
    pub body: Body,
}

impl Envelope {
    /// Checks the bounds serde cannot express: list lengths and string
    /// lengths. Called by the decoder on every envelope.
    pub fn check_bounds(&self) -> bool {
        let s = |x: &str| x.len() <= MAX_STRING;
        match &self.body {
            Body::Request(Request::Plug {
                params: DeviceParams::Vbd(v),
                ..
            }) => s(&v.params),
            Body::Request(_) => true,
            Body::Response(Response::Hello { service, .. }) => s(service),
            Body::Response(Response::Counters(c)) => c.len() <= MAX_DEVICES,
            Body::Response(Response::Health(h)) => h.devices.len() <= MAX_DEVICES,
            Body::Response(_) => true,
        }
    }
}
