//! The frontend's side of the blkif handshake (`io/blkif.h`, `io/xenbus.h`).
//!
//! ```text
//! read device/vbd/<id>/{backend, backend-id}
//! wait backend state >= InitWait; read its features
//! write ring-ref | ring-page-order + ring-ref%u, event-channel, protocol,
//!       state = Initialised            (one transaction)
//! wait backend Connected; read sectors, sector-size, info; state = Connected
//! ```
//!
//! Everything read from the backend's directory is parsed with bounds.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use windsor_xenstore_client::{in_transaction, ClientError, TxId, XenStore};
use xen::abi::xenbus::XenbusState;
use xen::{DomId, EvtchnPort, GrantRef};

const T: TxId = TxId::NONE;

/// Why the handshake failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A xenstore call failed.
    #[error(transparent)]
    Store(#[from] ClientError),
    /// A backend node is missing or malformed.
    #[error("backend node {0} missing or malformed")]
    Backend(String),
    /// The backend closed or failed instead of connecting.
    #[error("backend went to state {0}")]
    BackendState(XenbusState),
}

/// What the backend offers (read at InitWait).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// `max-ring-page-order`.
    pub max_ring_page_order: u32,
    /// `feature-max-indirect-segments` (0: none).
    pub max_indirect_segments: u32,
    /// `feature-flush-cache`.
    pub flush: bool,
    /// `feature-barrier`.
    pub barrier: bool,
    /// `feature-discard`.
    pub discard: bool,
}

/// The disk (read at Connected).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskInfo {
    /// Size in `sector_size` units.
    pub sectors: u64,
    /// `sector-size`.
    pub sector_size: u32,
    /// `info` bits.
    pub info: u32,
}

/// The frontend's handshake state for one device.
#[derive(Clone, Debug)]
pub struct Frontend {
    /// Our directory (`/local/domain/<me>/device/vbd/<id>`).
    pub dir: String,
    /// The backend's directory.
    pub backend: String,
    /// The backend's domain.
    pub backend_id: DomId,
}

fn read<X: XenStore + ?Sized>(xs: &X, path: &str) -> Result<Option<String>, ClientError> {
    match xs.read(T, path) {
        Ok(v) => Ok(Some(
            String::from_utf8_lossy(&v)
                .trim_end_matches('\0')
                .to_string(),
        )),
        Err(ClientError::Store(xen::Errno::ENOENT)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn num<X: XenStore + ?Sized>(xs: &X, path: &str) -> Result<Option<u64>, Error> {
    match read(xs, path)? {
        None => Ok(None),
        Some(v) if !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(v.parse().ok())
        }
        Some(_) => Err(Error::Backend(path.into())),
    }
}

impl Frontend {
    /// Reads where the backend is.
    pub fn new<X: XenStore + ?Sized>(xs: &X, me: DomId, devid: u32) -> Result<Frontend, Error> {
        let dir = format!("/local/domain/{}/device/vbd/{devid}", me.0);
        let backend =
            read(xs, &format!("{dir}/backend"))?.ok_or_else(|| Error::Backend("backend".into()))?;
        let backend_id = num(xs, &format!("{dir}/backend-id"))?
            .and_then(|v| u16::try_from(v).ok())
            .map(DomId)
            .ok_or_else(|| Error::Backend("backend-id".into()))?;
        Ok(Frontend {
            dir,
            backend,
            backend_id,
        })
    }

    /// The backend's state (Unknown if absent or unreadable).
    pub fn backend_state<X: XenStore + ?Sized>(&self, xs: &X) -> XenbusState {
        xs.read(T, &format!("{}/state", self.backend))
            .ok()
            .and_then(|v| XenbusState::parse(&v))
            .unwrap_or(XenbusState::Unknown)
    }

    /// Waits (watching the backend's state) until `pred` holds, up to
    /// `timeout` in total; with `fail_on_close`, a backend in Closing or
    /// Closed (where `pred` does not hold) is an error at once.
    pub fn wait_backend<X: XenStore + ?Sized>(
        &self,
        xs: &X,
        timeout: Duration,
        fail_on_close: bool,
        pred: impl Fn(XenbusState) -> bool,
    ) -> Result<XenbusState, Error> {
        let path = format!("{}/state", self.backend);
        let token = format!("blkfront:{}", self.dir);
        xs.watch(&path, &token)?;
        let step = Duration::from_millis(20);
        let mut waited = Duration::ZERO;
        let r = loop {
            let s = self.backend_state(xs);
            if pred(s) {
                break Ok(s);
            }
            if fail_on_close && matches!(s, XenbusState::Closing | XenbusState::Closed) {
                break Err(Error::BackendState(s));
            }
            if waited >= timeout {
                break Err(Error::BackendState(s));
            }
            match xs.next_event(Some(step)) {
                Ok(_) | Err(ClientError::Timeout) => {}
                Err(e) => break Err(e.into()),
            }
            waited += step;
        };
        let _ = xs.unwatch(&path, &token);
        r
    }

    /// Reads the backend's features (valid from InitWait on).
    pub fn features<X: XenStore + ?Sized>(&self, xs: &X) -> Result<Features, Error> {
        let b = &self.backend;
        let n = |k: &str| num(xs, &format!("{b}/{k}"));
        Ok(Features {
            max_ring_page_order: n("max-ring-page-order")?.unwrap_or(0).min(8) as u32,
            max_indirect_segments: n("feature-max-indirect-segments")?.unwrap_or(0).min(4096)
                as u32,
            flush: n("feature-flush-cache")?.unwrap_or(0) == 1,
            barrier: n("feature-barrier")?.unwrap_or(0) == 1,
            discard: n("feature-discard")?.unwrap_or(0) == 1,
        })
    }

    /// Publishes the ring and switches to Initialised.
    pub fn publish<X: XenStore + ?Sized>(
        &self,
        xs: &X,
        refs: &[GrantRef],
        port: EvtchnPort,
    ) -> Result<(), Error> {
        let d = &self.dir;
        in_transaction(xs, |tx| {
            if refs.len() == 1 {
                xs.write(
                    tx,
                    &format!("{d}/ring-ref"),
                    refs[0].0.to_string().as_bytes(),
                )?;
            } else {
                let order = refs.len().trailing_zeros();
                xs.write(
                    tx,
                    &format!("{d}/ring-page-order"),
                    order.to_string().as_bytes(),
                )?;
                for (i, r) in refs.iter().enumerate() {
                    xs.write(tx, &format!("{d}/ring-ref{i}"), r.0.to_string().as_bytes())?;
                }
            }
            xs.write(
                tx,
                &format!("{d}/event-channel"),
                port.0.to_string().as_bytes(),
            )?;
            xs.write(tx, &format!("{d}/protocol"), b"x86_64-abi")?;
            xs.write(tx, &format!("{d}/feature-persistent"), b"1")?;
            xs.write(
                tx,
                &format!("{d}/state"),
                XenbusState::Initialised.as_text().as_bytes(),
            )
        })?;
        Ok(())
    }

    /// Reads the disk's properties (valid once the backend is Connected)
    /// and switches to Connected.
    pub fn connected<X: XenStore + ?Sized>(&self, xs: &X) -> Result<DiskInfo, Error> {
        let b = &self.backend;
        let need = |k: &str| -> Result<u64, Error> {
            num(xs, &format!("{b}/{k}"))?.ok_or_else(|| Error::Backend(k.into()))
        };
        let info = DiskInfo {
            sectors: need("sectors")?,
            sector_size: u32::try_from(need("sector-size")?)
                .map_err(|_| Error::Backend("sector-size".into()))?,
            info: need("info")? as u32,
        };
        self.switch(xs, XenbusState::Connected)?;
        Ok(info)
    }

    /// Writes our state.
    pub fn switch<X: XenStore + ?Sized>(&self, xs: &X, s: XenbusState) -> Result<(), Error> {
        xs.write(T, &format!("{}/state", self.dir), s.as_text().as_bytes())?;
        Ok(())
    }

    /// Removes the ring nodes (before a reconnect).
    pub fn clear_ring<X: XenStore + ?Sized>(&self, xs: &X) -> Result<(), Error> {
        let mut keys: Vec<String> = ["ring-ref", "ring-page-order", "event-channel"]
            .iter()
            .map(|k| k.to_string())
            .collect();
        keys.extend((0..16).map(|i| format!("ring-ref{i}")));
        for k in keys {
            match xs.rm(T, &format!("{}/{k}", self.dir)) {
                Ok(()) | Err(ClientError::Store(xen::Errno::ENOENT)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
