//! `xenstore-domain`: the xenstore domain in Xen mode.
//!
//! Runs the real xenstore core ([`windsor_xenstore::Store`]: tree,
//! permissions, transactions, watches, quotas) and serves it over xenbus
//! rings ([`windsor_unikernel::xenbus`], server side). dom0 builds it first.
//!
//! # How dom0 and later domains reach it
//!
//! * **dom0**: its ring is *this* domain's own xenstore page. dom0 builds
//!   us with `xenstore_domid = 0`, so the builder grants our store page to
//!   dom0 (reserved grant entry 1) and allocates our store port unbound for
//!   dom0; dom0 maps the grant and binds the port before unpausing us. So
//!   the page Xen's HVM params name (`HVM_PARAM_STORE_PFN/EVTCHN`) is, for
//!   this one domain, the server end of dom0's connection. No message is
//!   needed for dom0 to introduce itself, and the store counts the
//!   connection as dom0's (privileged).
//! * **every other domain**: dom0 sends `XS_INTRODUCE(domid, gfn, port)`
//!   over its ring. The store answers with an `Introduce` effect; we map
//!   the domain's reserved grant entry 1 (the builder granted its store page
//!   to us) — the gfn is informational, as in C xenstored with grant
//!   mapping — bind its port, and connect it. `XS_RELEASE(domid)` drops its
//!   connection and the nodes it owns; we unmap the page and close the port,
//!   so the domain can then be destroyed without a leaked mapping.
//!
//! # No persistence in Xen mode
//!
//! There is no block device in Xen mode yet, so the tree lives only in this
//! domain's memory and is lost when it stops. The start-up log says so.
//!
//! Command line (from dom0): `domid=N` and the per-domain quotas
//! `xs.entries= xs.size= xs.watches= xs.txns=` from the boot plan.
//!
//! The loop: clear pending ports, move requests from every ring into the
//! store (a connection over its outstanding-reply quota is not read), run
//! the store's effects, move queued replies and events into the rings,
//! notify peers that got bytes, then wait on all ports (100 ms at most).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod image {
    use alloc::collections::VecDeque;
    use alloc::vec::Vec;
    use core::time::Duration;
    use windsor_unikernel::xen::platform::{
        Clock, EventChannel, ForeignMapping, GrantTable, Platform, ShutdownReason,
    };
    use windsor_unikernel::xen::{DomId, EvtchnPort, GrantRef, SharedMem};
    use windsor_unikernel::xenbus::{Side, XsRing};
    use windsor_unikernel::{println, Mapping, Xen};
    use windsor_xenstore::wire::Decoder;
    use windsor_xenstore::{Config, ConnId, Effect, HandleError, Store};

    windsor_unikernel::main!(main);

    /// Bytes of output we hold per connection beyond the ring (one ring).
    const OUT_BUFFER: usize = 1024;

    /// Where a connection's ring page lives.
    enum Page {
        /// Our own store page (dom0's connection).
        Own(SharedMem<'static>),
        /// A domain's store page, mapped through its reserved grant.
        Mapped(Mapping),
    }

    struct Conn {
        id: ConnId,
        dom: DomId,
        page: Page,
        port: EvtchnPort,
        dec: Decoder,
        /// Reply and event bytes not yet in the ring.
        out: VecDeque<u8>,
        /// A request read but refused as busy, retried first.
        held: Option<windsor_xenstore::wire::Packet>,
    }

    /// The server end of a connection's ring.
    fn ring(page: &Page) -> Option<XsRing<'_>> {
        let mem = match page {
            Page::Own(m) => *m,
            Page::Mapped(m) => m.rw()?,
        };
        XsRing::new(mem, Side::Server)
    }

    fn arg(cmdline: &str, key: &str) -> Option<u64> {
        cmdline
            .split_ascii_whitespace()
            .find_map(|w| w.strip_prefix(key)?.parse().ok())
    }

    fn config(xen: &Xen) -> Config {
        let mut cfg = Config {
            hash_seed: xen.now().as_nanos() as u64 ^ 0x9e37_79b9_7f4a_7c15,
            ..Config::default()
        };
        let c = xen.cmdline();
        let q = &mut cfg.quotas;
        if let Some(v) = arg(c, "xs.entries=") {
            q.nodes_per_domain = v as u32;
        }
        if let Some(v) = arg(c, "xs.size=") {
            q.value_size = v as usize;
        }
        if let Some(v) = arg(c, "xs.watches=") {
            q.watches_per_domain = v as u32;
        }
        if let Some(v) = arg(c, "xs.txns=") {
            q.transactions = v as usize;
        }
        cfg
    }

    fn main(xen: &'static Xen) -> ShutdownReason {
        println!(
            "xenstore-domain: d{} up; no block device in Xen mode: running WITHOUT \
             persistence (the store lives in memory only)",
            xen.domid()
        );
        let cfg = config(xen);
        let Some(own) = xen.store_ring() else {
            panic!("no xenstore page: dom0 must build the xenstore domain with a store ring");
        };
        let mut store = Store::new(cfg);
        let mut conns = Vec::new();
        conns.push(Conn {
            id: store.connect(DomId::DOM0),
            dom: DomId::DOM0,
            page: Page::Own(own.page),
            port: own.port,
            dec: Decoder::new(),
            out: VecDeque::new(),
            held: None,
        });
        println!(
            "xenstore-domain: serving dom0 on port {} (quotas: {} nodes, {} bytes, {} watches, \
             {} transactions per domain)",
            own.port,
            cfg.quotas.nodes_per_domain,
            cfg.quotas.value_size,
            cfg.quotas.watches_per_domain,
            cfg.quotas.transactions
        );
        let mut buf = [0u8; 1024];
        loop {
            for c in &conns {
                let _ = xen.clear_pending(c.port);
            }
            let mut broken = Vec::new();
            // Requests in.
            for c in conns.iter_mut() {
                if let Some(p) = c.held.take() {
                    if let Err(HandleError::Busy) = store.handle(c.id, &p.header, &p.payload) {
                        c.held = Some(p);
                        continue;
                    }
                }
                let Some(ring) = ring(&c.page) else { continue };
                let mut read_any = false;
                'conn: while store.can_accept(c.id) && c.held.is_none() {
                    let n = match ring.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) => {
                            println!("xenstore-domain: d{}: ring corrupt ({e:?})", c.dom);
                            broken.push(c.dom);
                            break;
                        }
                    };
                    read_any = true;
                    let mut at = 0;
                    while at < n {
                        match c.dec.feed(&buf[at..n]) {
                            Ok((used, pkt)) => {
                                at += used;
                                if let Some(p) = pkt {
                                    if let Err(HandleError::Busy) =
                                        store.handle(c.id, &p.header, &p.payload)
                                    {
                                        c.held = Some(p);
                                    }
                                }
                            }
                            Err(e) => {
                                println!("xenstore-domain: d{}: bad message ({e:?})", c.dom);
                                broken.push(c.dom);
                                break 'conn;
                            }
                        }
                    }
                }
                if read_any {
                    let _ = xen.notify(c.port);
                }
            }
            for dom in broken {
                // A peer that broke the protocol is cut off (as C
                // xenstored does); dom0 may release and rebuild it.
                if let Some(i) = conns.iter().position(|c| c.dom == dom) {
                    let c = conns.remove(i);
                    store.disconnect(c.id);
                    let _ = xen.close(c.port);
                }
            }
            // Effects.
            for e in store.take_effects() {
                match e {
                    Effect::Introduce { domid, gfn, port } => {
                        if let Some(c) = conns.iter().find(|c| c.dom == domid) {
                            println!(
                                "xenstore-domain: d{domid} introduced again (port {})",
                                c.port
                            );
                            continue;
                        }
                        match connect(xen, domid, EvtchnPort(port)) {
                            Ok((page, local)) => {
                                let id = store.connect(domid);
                                println!(
                                    "xenstore-domain: introduced d{domid} (ring gfn {gfn:#x}, \
                                     its port {port} -> our port {local})"
                                );
                                conns.push(Conn {
                                    id,
                                    dom: domid,
                                    page: Page::Mapped(page),
                                    port: local,
                                    dec: Decoder::new(),
                                    out: VecDeque::new(),
                                    held: None,
                                });
                            }
                            Err(e) => println!(
                                "xenstore-domain: introduce d{domid} failed: {e} (not connected)"
                            ),
                        }
                    }
                    Effect::Release { domid, .. } => {
                        if let Some(i) = conns.iter().position(|c| c.dom == domid) {
                            let c = conns.remove(i);
                            let port = c.port;
                            let closed = xen.close(port);
                            drop(c);
                            println!(
                                "xenstore-domain: released d{domid}: ring unmapped, port {port} \
                                 closed ({closed:?}), its nodes removed"
                            );
                        }
                    }
                    Effect::Resume { .. } => {}
                }
            }
            // Replies and events out.
            let _ = store.take_ready();
            for c in conns.iter_mut() {
                // Take from the store only what the ring can soon carry:
                // unread output stays in the store, where it counts against
                // the connection's quotas (a guest that never reads its
                // ring cannot make us buffer without bound).
                while c.out.len() < OUT_BUFFER {
                    let Some(p) = store.pop(c.id) else { break };
                    c.out.extend(p.to_vec());
                }
                if c.out.is_empty() {
                    continue;
                }
                let Some(ring) = ring(&c.page) else { continue };
                let mut wrote = false;
                loop {
                    let (a, _) = c.out.as_slices();
                    if a.is_empty() {
                        break;
                    }
                    match ring.write(a) {
                        Ok(0) => break,
                        Ok(n) => {
                            c.out.drain(..n);
                            wrote = true;
                        }
                        Err(e) => {
                            println!("xenstore-domain: d{}: ring corrupt ({e:?})", c.dom);
                            c.out.clear();
                            break;
                        }
                    }
                }
                if wrote {
                    let _ = xen.notify(c.port);
                }
            }
            let ports: Vec<EvtchnPort> = conns.iter().map(|c| c.port).collect();
            let _ = xen.wait(&ports, Some(Duration::from_millis(100)));
        }
    }

    /// Maps `dom`'s store page (reserved grant 1) and binds its store port.
    fn connect(
        xen: &'static Xen,
        dom: DomId,
        port: EvtchnPort,
    ) -> windsor_unikernel::xen::platform::Result<(Mapping, EvtchnPort)> {
        let page = xen.map(dom, &[GrantRef::RESERVED_XENSTORE], false)?;
        let local = xen.bind_interdomain(dom, port)?;
        let _ = xen.clear_pending(local);
        Ok((page, local))
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
