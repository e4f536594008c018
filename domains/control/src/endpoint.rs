//! Both ends of the control channel over a [`Vchan`].
//!
//! The service domain is the [`Server`]: it offers the vchan, then calls
//! [`Server::poll`] from its event loop whenever the channel's port fires
//! (non-blocking; bounded work per call). The toolstack is the [`Client`]:
//! [`Client::call`] sends one request and waits, up to a timeout, for the
//! answer with the same id.

use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use vchan::{ServerConfig, Vchan};
use windsor_xenstore_client::XenStore;
use xen::platform::{Clock, EventChannel, GrantTable};
use xen::{DomId, EvtchnPort};

use crate::msg::{Body, Envelope, ErrorCode, Request, Response, VERSION};
use crate::wire::{encode, Decoder, WireError};
use crate::VCHAN_PORT;

/// Bytes of ring each way (a counters reply for many devices fits).
pub const RING_BYTES: usize = 64 * 1024;
/// Most requests a server handles in one [`Server::poll`].
pub const POLL_BUDGET: usize = 32;

/// Why the control channel failed.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The vchan failed or the peer closed it.
    #[error(transparent)]
    Channel(#[from] vchan::Error),
    /// The peer sent bytes that are not frames of this protocol.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The peer speaks another protocol version.
    #[error("peer speaks control protocol version {0}, we speak {VERSION}")]
    Version(u16),
    /// The peer sent a message of the wrong direction or an unexpected id.
    #[error("unexpected message from the peer")]
    Unexpected,
    /// No answer in time.
    #[error("no answer in time")]
    Timeout,
}

fn read_frames<P: GrantTable + EventChannel + Clock>(
    ch: &mut Vchan<'_, P>,
    dec: &mut Decoder,
    out: &mut Vec<Envelope>,
    max: usize,
) -> Result<(), EndpointError> {
    let mut buf = [0u8; 1024];
    while out.len() < max {
        let want = dec.want().min(buf.len());
        match ch.read(&mut buf[..want]) {
            Ok(0) => return Err(vchan::Error::Closed.into()),
            Ok(n) => {
                dec.push(&buf[..n]);
                if let Some(e) = dec.decode()? {
                    out.push(e);
                }
            }
            Err(vchan::Error::WouldBlock) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The service-domain end.
pub struct Server<'p, P: GrantTable + EventChannel + Clock> {
    ch: Vchan<'p, P>,
    dec: Decoder,
    out: Vec<u8>,
    service: String,
    seen_client: bool,
}

impl<'p, P: GrantTable + EventChannel + Clock> Server<'p, P> {
    /// Offers the channel to `client` (the toolstack's domain) under
    /// `/local/domain/<server>/data/vchan/<client>/control`.
    pub fn offer<X: XenStore + ?Sized>(
        plat: &'p P,
        xs: &X,
        server: DomId,
        client: DomId,
        service: &str,
    ) -> Result<Self, EndpointError> {
        let path = vchan::rendezvous::path(server, client, VCHAN_PORT);
        let mut ch = Vchan::server(
            plat,
            xs,
            &ServerConfig {
                server,
                client,
                path: &path,
                read_min: RING_BYTES,
                write_min: RING_BYTES,
            },
        )?;
        ch.set_blocking(false);
        Ok(Server {
            ch,
            dec: Decoder::new(),
            out: Vec::new(),
            service: service.into(),
            seen_client: false,
        })
    }

    /// The event channel to wait on.
    pub fn port(&self) -> EvtchnPort {
        self.ch.port()
    }

    /// Whether the client has connected.
    pub fn is_connected(&self) -> bool {
        self.ch.is_connected()
    }

    /// Reads what the client sent, answers each request with `handle`
    /// (`Hello` is answered here), and writes the answers. Returns how many
    /// requests were handled. An error means the channel is unusable: drop
    /// the server and offer a new one.
    pub fn poll(
        &mut self,
        mut handle: impl FnMut(Request) -> Response,
    ) -> Result<usize, EndpointError> {
        self.flush()?;
        if !self.ch.is_connected() {
            // Before the client came: nothing to do. After it left: done.
            return if self.seen_client {
                Err(vchan::Error::Closed.into())
            } else {
                Ok(0)
            };
        }
        self.seen_client = true;
        let mut envs = Vec::new();
        read_frames(&mut self.ch, &mut self.dec, &mut envs, POLL_BUDGET)?;
        let n = envs.len();
        for env in envs {
            let (rsp, fatal) = if env.version != VERSION {
                (
                    Response::Error(ErrorCode::Version),
                    Some(EndpointError::Version(env.version)),
                )
            } else {
                match env.body {
                    Body::Request(Request::Hello) => (
                        Response::Hello {
                            service: self.service.clone(),
                            version: VERSION,
                        },
                        None,
                    ),
                    Body::Request(r) => (handle(r), None),
                    Body::Response(_) => return Err(EndpointError::Unexpected),
                }
            };
            let frame = encode(&Envelope {
                version: VERSION,
                id: env.id,
                body: Body::Response(rsp),
            })?;
            self.out.extend_from_slice(&frame);
            if let Some(e) = fatal {
                let _ = self.flush();
                return Err(e);
            }
        }
        self.flush()?;
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), EndpointError> {
        while !self.out.is_empty() {
            match self.ch.write(&self.out) {
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(vchan::Error::WouldBlock) => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Unpublishes the channel and closes it.
    pub fn close<X: XenStore + ?Sized>(self, xs: &X) {
        let _ = self.ch.close_and_withdraw(xs);
    }
}

/// The toolstack end.
pub struct Client<'p, P: GrantTable + EventChannel + Clock> {
    plat: &'p P,
    ch: Vchan<'p, P>,
    dec: Decoder,
    next_id: u32,
}

impl<'p, P: GrantTable + EventChannel + Clock> Client<'p, P> {
    /// Connects to the channel `server` offered to us (`me`), then says
    /// hello; returns the client and the service's name.
    pub fn connect<X: XenStore + ?Sized>(
        plat: &'p P,
        xs: &X,
        server: DomId,
        me: DomId,
        timeout: Duration,
    ) -> Result<(Self, String), EndpointError> {
        let path = vchan::rendezvous::path(server, me, VCHAN_PORT);
        let mut ch = Vchan::client(plat, xs, server, &path)?;
        ch.set_blocking(false);
        let mut c = Client {
            plat,
            ch,
            dec: Decoder::new(),
            next_id: 1,
        };
        match c.call(Request::Hello, timeout)? {
            Response::Hello { service, version } if version == VERSION => Ok((c, service)),
            Response::Hello { version, .. } => Err(EndpointError::Version(version)),
            _ => Err(EndpointError::Unexpected),
        }
    }

    /// Sends `req` and waits up to `timeout` for its answer.
    pub fn call(&mut self, req: Request, timeout: Duration) -> Result<Response, EndpointError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let frame = encode(&Envelope {
            version: VERSION,
            id,
            body: Body::Request(req),
        })?;
        let deadline = self.plat.now().saturating_add(timeout);
        let mut sent = 0;
        loop {
            while sent < frame.len() {
                match self.ch.write(&frame[sent..]) {
                    Ok(n) => sent += n,
                    Err(vchan::Error::WouldBlock) => break,
                    Err(e) => return Err(e.into()),
                }
            }
            let mut envs = Vec::new();
            read_frames(&mut self.ch, &mut self.dec, &mut envs, 1)?;
            if let Some(env) = envs.pop() {
                if env.version != VERSION {
                    return Err(EndpointError::Version(env.version));
                }
                return match env.body {
                    Body::Response(r) if env.id == id => Ok(r),
                    _ => Err(EndpointError::Unexpected),
                };
            }
            let now = self.plat.now();
            if now >= deadline {
                return Err(EndpointError::Timeout);
            }
            self.ch
                .wait(Some((deadline - now).min(Duration::from_millis(20))))?;
        }
    }
}
