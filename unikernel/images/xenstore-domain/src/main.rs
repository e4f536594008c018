//! `xenstore-domain`: the xenstore domain in Xen mode.
//!
//! Runs the real xenstore core ([`windsor_xenstore::Store`]: tree,
//! permissions, transactions, watches, quotas) and serves it over xenbus
//! rings (the crate's own xenbus transport, server side). dom0 builds it
//! first.
//!
//! # How dom0 and later domains reach it
//!
//! The rings are served by the xenstore crate's xenbus transport
//! ([`windsor_xenstore::xenbus::XenbusServer`]): every ring, dom0's
//! included, is a page the domain granted to us through its reserved grant
//! entry 1 (`GNTTAB_RESERVED_XENSTORE`) plus an unbound port for us.
//!
//! * **dom0** grants a page of its own that way (its runtime's
//!   `grant_xenstore_ring`), allocates a port for us, and passes both on our
//!   command line as `dom0-ring=<gfn>:<port>`; we introduce dom0 to the
//!   server ourselves at start-up. dom0 waits for the server to advertise
//!   its features in the ring page before its first request (introducing
//!   resets the ring).
//! * **every other domain**: dom0 sends `XS_INTRODUCE(domid, gfn, port)`
//!   over its ring; the store answers with an `Introduce` effect, which the
//!   server applies (maps the domain's reserved grant 1 — the builder
//!   granted its store page to us — binds its port, connects it with the
//!   domain id as identity). `XS_RELEASE(domid)` drops its connection and
//!   the nodes it owns; the server unmaps the page and closes the port, so
//!   the domain can be destroyed without a leaked mapping.
//!
//! # No persistence in Xen mode
//!
//! There is no block device in Xen mode yet, so the tree lives only in this
//! domain's memory and is lost when it stops. The start-up log says so.
//!
//! Command line (from dom0): `domid=N`, `dom0-ring=<gfn>:<port>` and the
//! per-domain quotas `xs.entries= xs.size= xs.watches= xs.txns=` from the
//! boot plan.
//!
//! The loop: take requests from every ring into the store
//! ([`XenbusServer::receive`](windsor_xenstore::xenbus::XenbusServer::receive)),
//! apply the store's effects (so a domain is mapped and bound before dom0
//! reads the reply to its `XS_INTRODUCE`, and unmapped before the reply to
//! `XS_RELEASE`), then write replies and events
//! ([`transmit`](windsor_xenstore::xenbus::XenbusServer::transmit)), and
//! wait on every port (100 ms at most) unless a ring has more input.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod image {
    use core::time::Duration;
    use windsor_unikernel::xen::platform::{Clock, Platform, ShutdownReason};
    use windsor_unikernel::xen::{DomId, EvtchnPort};
    use windsor_unikernel::{println, Xen};
    use windsor_xenstore::xenbus::{ServerConfig, XenbusServer};
    use windsor_xenstore::{Config, Effect, Store};

    windsor_unikernel::main!(main);

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

    /// `dom0-ring=<gfn>:<port>` from the command line.
    fn dom0_ring(xen: &Xen) -> Option<(u64, EvtchnPort)> {
        let v = xen
            .cmdline()
            .split_ascii_whitespace()
            .find_map(|w| w.strip_prefix("dom0-ring="))?;
        let (gfn, port) = v.split_once(':')?;
        Some((gfn.parse().ok()?, EvtchnPort(port.parse().ok()?)))
    }

    fn main(xen: &'static Xen) -> ShutdownReason {
        println!(
            "xenstore-domain: d{} up; no block device in Xen mode: running WITHOUT \
             persistence (the store lives in memory only)",
            xen.domid()
        );
        let cfg = config(xen);
        let Some((gfn, port)) = dom0_ring(xen) else {
            panic!("no dom0-ring=<gfn>:<port> on the command line: dom0 has no ring to us");
        };
        let mut store = Store::new(cfg);
        let mut srv = match XenbusServer::new(xen, ServerConfig::default()) {
            Ok(s) => s,
            Err(e) => panic!("xenbus server: {e}"),
        };
        if let Err(e) = srv.introduce(&mut store, DomId::DOM0, gfn, port) {
            panic!("serving dom0's ring (gfn {gfn:#x}, port {port}): {e}");
        }
        println!(
            "xenstore-domain: serving dom0 (ring gfn {gfn:#x}, its port {port} -> our port {}; \
             quotas: {} nodes, {} bytes, {} watches, {} transactions per domain)",
            srv.port(DomId::DOM0).map_or(0, |p| p.0),
            cfg.quotas.nodes_per_domain,
            cfg.quotas.value_size,
            cfg.quotas.watches_per_domain,
            cfg.quotas.transactions
        );
        loop {
            let mut p = srv.receive(&mut store);
            for e in store.take_effects() {
                let local = match &e {
                    Effect::Release { domid, .. } => srv.port(*domid),
                    _ => None,
                };
                let r = srv.apply(&mut store, &e);
                match (&e, r) {
                    (Effect::Introduce { domid, gfn, port }, Ok(())) => println!(
                        "xenstore-domain: introduced d{domid} (ring gfn {gfn:#x}, its port {port} \
                         -> our port {})",
                        srv.port(*domid).map_or(0, |p| p.0)
                    ),
                    (Effect::Release { domid, .. }, Ok(())) => println!(
                        "xenstore-domain: released d{domid}: ring unmapped, port {} closed, its \
                         nodes removed",
                        local.map_or(0, |p| p.0)
                    ),
                    (e, Err(err)) => println!("xenstore-domain: {e:?} failed: {err}"),
                    _ => {}
                }
            }
            let out = srv.transmit(&mut store);
            p.more |= out.more;
            for d in p.ignored.iter().chain(&out.ignored) {
                println!(
                    "xenstore-domain: d{d} broke the ring protocol: ignored until it reconnects"
                );
            }
            for d in p.gone.iter().chain(&out.gone) {
                println!("xenstore-domain: d{d} closed its port: ring released");
            }
            if !p.more {
                let _ = srv.wait(Some(Duration::from_millis(100)));
            }
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
