//! `dom0`: the Windsor toolstack's boot orchestration in Xen mode.
//!
//! Xen starts this image as the PVH dom0 with one module, the boot bundle
//! of `windsor-boot-config` (the plan and every domain image). dom0:
//!
//! 1. parses the bundle and decodes the [`BootPlan`](windsor_boot_config::BootPlan); a mismatched or
//!    corrupt blob is refused with the plan's or bundle's own error, and
//!    dom0 crashes with it (Xen reports `Hardware Dom0 crashed`);
//! 2. builds the **xenstore domain** (plan entry 0) with the Xen-mode
//!    `DomainBuilder`; dom0's own xenbus ring is a dom0 page granted to it
//!    through dom0's reserved grant entry 1 plus a port, both named on its
//!    command line (`dom0-ring=<gfn>:<port>`), so the xenstore domain maps
//!    dom0's ring exactly as it maps a guest's (see the xenstore-domain
//!    image's doc);
//! 3. builds every **guest** in plan order: creates it, writes
//!    `/local/domain/<id>` (owned by the guest: `name`, `domid`), sends
//!    `XS_INTRODUCE(id, store gfn, store port)`, unpauses it and waits (the
//!    plan's `domain_ready_ms`) for `data/state = running`. A refused image
//!    or a guest that crashes or does not come up is reported and cleaned
//!    up; the host carries on. A failed create or build is reported with
//!    the op that failed and Xen's code (`Xen::describe`, e.g.
//!    `XENMEM_populate_physmap (dom 3, 4096 pages) failed: ENOMEM (12)`,
//!    or for a refused image `image check failed: ENOEXEC: <why>`). Service domains other than xenstore
//!    (netback, blkback) have no Xen-mode image yet and are skipped with a
//!    message;
//! 4. prints the ready marker with the time from dom0's entry:
//!    `WINDSOR-READY dom0=<ms> ms xen=<ms> ms host=<name> guests=<n>`;
//! 5. exercises and tears the host down (there is no lifecycle API in Xen
//!    mode yet, so the boot test is the whole life of the host): for each
//!    guest whose command line has `vchan=N`, connects to the vchan it
//!    offers under `/local/domain/<id>/data/vchan/0/checksum`, reads `N`
//!    bytes and compares their FNV-1a 64 with the one the guest wrote to
//!    `data/vchan-checksum`; applies the `misbehave=<guest>:<what>` words
//!    of its own command line (writes the fuzz-target guest's
//!    `control/misbehave`: `crash`, `ignore-shutdown`, `spin`); reports
//!    and cleans up guests that already shut down (a crash); then asks
//!    each remaining guest to shut down through
//!    `control/shutdown` (`poweroff`), waits (`shutdown_ms`), releases it
//!    from xenstore (`XS_RELEASE`), checks its nodes are gone, destroys
//!    it and waits until Xen no longer lists it (only then are its memory,
//!    grants and event channels released); finally destroys the xenstore
//!    domain and powers off.
//!
//! Every wait is bounded; every step logs one line prefixed `windsor dom0:`.
//! Before powering off, dom0 prints `WINDSOR-DONE failed=<n>`: the number
//! of planned steps that failed (a refused image, a guest that crashed, did
//! not come up or did not shut down on request, a checksum mismatch,
//! leftover nodes, a skipped service domain); `cargo xtask xen-boot` exits
//! non-zero unless it is 0.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod linux;

#[cfg(target_os = "none")]
mod image {
    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;
    use core::sync::atomic::{AtomicU32, Ordering};
    use core::time::Duration;
    use windsor_boot_config::{BootPlan, Bundle, DomainKind, PlanDomain};
    use windsor_unikernel::xen::platform::{
        BuiltDomain, Clock, CreateConfig, DomainControl, DomainImage, EventChannel, GrantTable,
        LocalPages, Platform, RunState, ShutdownReason, Virq,
    };
    use windsor_unikernel::xen::{DomId, Errno, EvtchnPort};
    use windsor_unikernel::{boot_time, println, Xen};
    use windsor_xenstore::client::{Access, ClientError, Perm, TxId, XenStore};
    use windsor_xenstore::xenbus::XenbusClient;

    windsor_unikernel::main!(main);

    /// `server_features` in the xenstore ring page (`xs_wire.h`).
    const SERVER_FEATURES: usize = 2064;

    /// Planned steps that failed (reported at the end: `WINDSOR-DONE`).
    static FAILED: AtomicU32 = AtomicU32::new(0);

    /// Prints a failed step's line and counts it.
    macro_rules! fail {
        ($($arg:tt)*) => {{
            FAILED.fetch_add(1, Ordering::Relaxed);
            println!($($arg)*);
        }};
    }

    type Xs<'a> = XenbusClient<'a, Xen>;
    const T: TxId = TxId::NONE;

    /// A guest that came up.
    struct Guest<'p> {
        plan: &'p PlanDomain,
        dom: DomId,
        vchan: Option<usize>,
    }

    fn ms(d: Duration) -> String {
        format!("{}.{:03}", d.as_micros() / 1000, d.as_micros() % 1000)
    }

    fn main(xen: &'static Xen) -> ShutdownReason {
        let (major, minor) = xen.xen_version();
        println!(
            "windsor dom0: Xen {major}.{minor}, cmdline {:?}",
            xen.cmdline()
        );
        let Some(blob) = xen.module(0) else {
            panic!("no boot module: dom0 needs the boot bundle (boot-config) as its one module")
        };
        let bundle = match Bundle::parse(blob) {
            Ok(b) => b,
            Err(e) => panic!("boot bundle refused: {e}"),
        };
        let plan = match bundle.plan() {
            Ok(p) => p,
            Err(e) => panic!("boot plan refused: {e}"),
        };
        println!(
            "windsor dom0: plan for host {:?}: {} domains, {} bundle entries, {} KiB",
            plan.host,
            plan.domains.len(),
            bundle.len(),
            blob.len() / 1024
        );
        let dom_exc = xen.bind_virq(Virq::DomExc).expect("bind VIRQ_DOM_EXC");

        // 1. The xenstore domain, and dom0's ring to it: a dom0 page granted
        //    through dom0's reserved xenstore entry, and a port, named on the
        //    xenstore domain's command line.
        let xs_plan = &plan.domains[0];
        assert_eq!(xs_plan.kind, DomainKind::Xenstore, "plan invariant");
        let q = plan.dom0.xenstore;
        let xs_cmdline = format!(
            "{} xs.entries={} xs.size={} xs.watches={} xs.txns={}",
            xs_plan.cmdline,
            q.max_entries_per_domain,
            q.max_entry_size,
            q.max_watches_per_domain,
            q.max_transactions_per_domain
        );
        let t0 = xen.now();
        let ring = xen.alloc_pages(1).expect("a page for dom0's xenstore ring");
        let mut port = None;
        let made = create_and_build(xen, &bundle, xs_plan, &xs_cmdline, DomId::DOM0, |xsdom| {
            xen.grant_xenstore_ring(&ring, 0, xsdom)
                .map_err(|e| format!("grant dom0's ring: {e}"))?;
            let p = xen
                .alloc_unbound(xsdom)
                .map_err(|e| format!("dom0's xenstore port: {e}"))?;
            port = Some(p);
            Ok(format!("dom0-ring={}:{}", ring.gfn(0).0, p.0))
        });
        let (xsdom, _) = match made {
            Ok(x) => x,
            Err(e) => panic!("xenstore domain {:?}: {e}", xs_plan.name),
        };
        let port = port.expect("set while building");
        if let Err(e) = xen.unpause(xsdom) {
            panic!("unpause the xenstore domain: {}", xen.describe(e));
        }
        // Introducing dom0 resets the ring; the server then advertises its
        // features in the page. Only then is it safe to write a request.
        let page = ring.mem();
        let deadline = xen.now() + Duration::from_secs(5);
        while page.ro().load_u32(SERVER_FEATURES, Ordering::Acquire) == 0 {
            if xen.now() > deadline {
                panic!("xenstore domain d{xsdom} never served dom0's ring");
            }
            let _ = xen.clear_pending(port);
            let _ = xen.wait(&[port], Some(Duration::from_millis(5)));
        }
        let xs = XenbusClient::with_ring(xen, page, port).expect("ring page");
        if let Err(e) = xs.write(T, "/local/domain/0/name", b"Domain-0") {
            panic!("xenstore domain d{xsdom} does not answer: {e}");
        }
        let _ = xs.write(T, "/local/domain/0/domid", b"0");
        let _ = xs.write(
            T,
            &format!("/local/domain/{}/name", xsdom.0),
            xs_plan.name.as_bytes(),
        );
        println!(
            "windsor dom0: xenstore domain {:?} is d{} and answers (built and first reply in {} ms)",
            xs_plan.name,
            xsdom,
            ms(xen.now() - t0)
        );

        // 2. The other domains, in plan order; guests that report on their
        //    console (other people's kernels) go through `linux`.
        let mut guests = Vec::new();
        let mut console_guests = Vec::new();
        for d in &plan.domains[1..] {
            if d.ready_console.is_some() {
                console_guests.push(d);
                continue;
            }
            if d.kind != DomainKind::Guest {
                fail!(
                    "windsor dom0: {} domain {:?} skipped: no Xen-mode image for it yet",
                    d.kind,
                    d.name
                );
                continue;
            }
            if let Some(g) = start_guest(xen, &xs, &bundle, &plan, d, xsdom, dom_exc) {
                guests.push(g);
            }
        }

        let (linux_guests, f) =
            crate::linux::start_all(xen, &xs, &bundle, &plan, &console_guests, xsdom, dom_exc);
        FAILED.fetch_add(f, Ordering::Relaxed);
        let linux_up = linux_guests.len();

        // 3. Ready.
        let now = xen.now();
        println!(
            "WINDSOR-READY dom0={} ms xen={} ms host={} guests={}",
            ms(now.saturating_sub(boot_time())),
            now.as_millis(),
            plan.host,
            guests.len() + linux_up
        );
        let reboot: Vec<&str> = xen
            .cmdline()
            .split_ascii_whitespace()
            .filter_map(|w| w.strip_prefix("reboot="))
            .flat_map(|l| l.split(','))
            .collect();
        let f = crate::linux::stop_all(
            xen,
            &xs,
            &bundle,
            &plan,
            linux_guests,
            &reboot,
            xsdom,
            dom_exc,
        );
        FAILED.fetch_add(f, Ordering::Relaxed);

        // 4. Exercise and tear down.
        for g in &guests {
            if let Some(n) = g.vchan {
                vchan_check(xen, &xs, g, n);
            }
        }
        for w in xen.cmdline().split_ascii_whitespace() {
            let Some((name, what)) = w.strip_prefix("misbehave=").and_then(|a| a.split_once(':'))
            else {
                continue;
            };
            match guests.iter().find(|g| g.plan.name == name) {
                Some(g) => misbehave(xen, &xs, g, what, dom_exc),
                None => fail!("windsor dom0: misbehave: no running guest {name:?}"),
            }
        }
        for g in &guests {
            if let Ok(RunState::Shutdown(r)) = xen.info(g.dom).map(|i| i.state) {
                // It went on its own (crashed, or powered off unasked).
                fail!(
                    "windsor dom0: guest {:?} d{} is already shut down: {r:?}{}",
                    g.plan.name,
                    g.dom,
                    if r == ShutdownReason::Crash {
                        " (crashed)"
                    } else {
                        ""
                    }
                );
                cleanup(xen, &xs, g.plan, g.dom, dom_exc);
                continue;
            }
            shutdown_guest(xen, &xs, &plan, g, dom_exc);
        }
        drop(xs);
        let _ = xen.close(port);
        if let Err(e) = xen.destroy(xsdom) {
            panic!("destroy the xenstore domain: {}", xen.describe(e));
        }
        if wait_gone(xen, xsdom, dom_exc) {
            println!("windsor dom0: xenstore domain d{xsdom} destroyed; host down");
        }
        println!(
            "WINDSOR-DONE failed={} ({} ms since dom0 start)",
            FAILED.load(Ordering::Relaxed),
            ms(xen.now().saturating_sub(boot_time()))
        );
        ShutdownReason::Poweroff
    }

    /// Creates a domain for `d` and builds it from its bundle entry.
    ///
    /// `prepare` runs between creation and build and returns more command
    /// line words for the domain.
    fn create_and_build(
        xen: &'static Xen,
        bundle: &Bundle<'_>,
        d: &PlanDomain,
        cmdline: &str,
        xenstore: DomId,
        prepare: impl FnOnce(DomId) -> Result<String, String>,
    ) -> Result<(DomId, BuiltDomain), String> {
        let kernel = bundle
            .entry(d.module as usize)
            .ok_or_else(|| format!("bundle has no entry {}", d.module))?;
        let cfg = CreateConfig {
            max_mem_kib: u64::from(d.memory_mib) * 1024,
            max_vcpus: d.vcpus.max(1),
            ..CreateConfig::default()
        };
        let dom = xen.create(&cfg).map_err(|e| xen.describe(e))?;
        let extra = match prepare(dom) {
            Ok(x) => x,
            Err(e) => {
                let _ = xen.destroy(dom);
                return Err(e);
            }
        };
        let cmdline = format!("{cmdline} {extra} domid={}", dom.0);
        let image = DomainImage {
            kernel,
            cmdline: cmdline.trim(),
            xenstore_domid: xenstore,
            console_domid: DomId::DOM0,
        };
        let t0 = xen.now();
        let ramdisk = d
            .ramdisk
            .as_ref()
            .and_then(|r| bundle.entry(r.module as usize));
        match xen.build_with_ramdisk(dom, &image, ramdisk) {
            Ok(b) => {
                println!(
                    "windsor dom0: built {} {:?} as d{} from bundle entry {} ({} KiB image, {} MiB) \
                     in {} ms",
                    d.kind,
                    d.name,
                    dom,
                    d.module,
                    kernel.len() / 1024,
                    d.memory_mib,
                    ms(xen.now() - t0)
                );
                Ok((dom, b))
            }
            Err(e) => {
                // Which op failed, before destroy can record another.
                let why = xen.describe(e);
                let _ = xen.destroy(dom);
                Err(format!(
                    "image {:?} refused by the builder: {why} (domain d{dom} destroyed)",
                    d.image
                ))
            }
        }
    }

    /// Builds, introduces and starts guest `d`; waits for it to be running.
    fn start_guest<'p>(
        xen: &'static Xen,
        xs: &Xs<'_>,
        bundle: &Bundle<'_>,
        plan: &BootPlan,
        d: &'p PlanDomain,
        xsdom: DomId,
        dom_exc: EvtchnPort,
    ) -> Option<Guest<'p>> {
        let t0 = xen.now();
        let cmdline = format!("{} xenbus", d.cmdline);
        let (dom, built) =
            match create_and_build(xen, bundle, d, &cmdline, xsdom, |_| Ok(String::new())) {
                Ok(x) => x,
                Err(e) => {
                    fail!("windsor dom0: guest {:?} not started: {e}", d.name);
                    return None;
                }
            };
        let path = format!("/local/domain/{}", dom.0);
        let prep = (|| -> Result<(), ClientError> {
            xs.mkdir(T, &path)?;
            xs.set_perms(
                T,
                &path,
                &[Perm {
                    dom,
                    access: Access::None,
                }],
            )?;
            xs.write(T, &format!("{path}/name"), d.name.as_bytes())?;
            xs.write(T, &format!("{path}/domid"), format!("{}", dom.0).as_bytes())?;
            xs.mkdir(T, &format!("{path}/control"))?;
            xs.mkdir(T, &format!("{path}/data"))?;
            xs.introduce(dom, built.store_gfn.0, built.store_port)?;
            xs.watch(&format!("{path}/data/state"), "state")
        })();
        if let Err(e) = prep {
            fail!(
                "windsor dom0: guest {:?} d{dom}: xenstore set-up failed: {e}",
                d.name
            );
            cleanup(xen, xs, d, dom, dom_exc);
            return None;
        }
        if let Err(e) = xen.unpause(dom) {
            panic!("unpause d{dom}: {}", xen.describe(e));
        }
        let deadline = xen.now() + Duration::from_millis(plan.dom0.timeouts.domain_ready_ms.into());
        let state_path = format!("{path}/data/state");
        let outcome = loop {
            if let Ok(i) = xen.info(dom) {
                if let RunState::Shutdown(r) = i.state {
                    break Err(format!("{r:?}"));
                }
            }
            if let Ok(v) = xs.read(T, &state_path) {
                if v == b"running" {
                    break Ok(());
                }
            }
            if xen.now() > deadline {
                break Err("not running in time".into());
            }
            let _ = xen.clear_pending(dom_exc);
            let _ = xs.next_event(Some(Duration::from_millis(20)));
        };
        let _ = xs.unwatch(&state_path, "state");
        match outcome {
            Ok(()) => {
                let booted = xs
                    .read(T, &format!("{path}/data/booted"))
                    .unwrap_or_default();
                println!(
                    "windsor dom0: guest {:?} d{dom} running (data/booted={}, data/state=running) \
                     {} ms after build start",
                    d.name,
                    String::from_utf8_lossy(&booted),
                    ms(xen.now() - t0)
                );
                let vchan = d
                    .cmdline
                    .split_ascii_whitespace()
                    .find_map(|w| w.strip_prefix("vchan=")?.parse().ok());
                Some(Guest {
                    plan: d,
                    dom,
                    vchan,
                })
            }
            Err(why) if why == "Crash" => {
                fail!(
                    "windsor dom0: guest {:?} d{dom} crashed while starting",
                    d.name
                );
                cleanup(xen, xs, d, dom, dom_exc);
                None
            }
            Err(why) => {
                fail!(
                    "windsor dom0: guest {:?} d{dom} did not come up ({why}); destroying it",
                    d.name
                );
                cleanup(xen, xs, d, dom, dom_exc);
                None
            }
        }
    }

    /// FNV-1a 64 over a stream.
    struct Fnv(u64);
    impl Fnv {
        fn update(&mut self, b: &[u8]) {
            for &x in b {
                self.0 ^= u64::from(x);
                self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }

    /// Reads the guest's checksummed vchan stream and compares checksums.
    fn vchan_check(xen: &'static Xen, xs: &Xs<'_>, g: &Guest<'_>, n: usize) {
        let path = vchan::rendezvous::path(g.dom, DomId::DOM0, "checksum");
        let deadline = xen.now() + Duration::from_secs(5);
        let mut v = loop {
            match vchan::Vchan::client(xen, xs, g.dom, &path) {
                Ok(v) => break v,
                Err(e) if xen.now() > deadline => {
                    fail!(
                        "windsor dom0: vchan d{} -> dom0: connect failed: {e}",
                        g.dom
                    );
                    return;
                }
                Err(_) => {
                    let _ = xs.next_event(Some(Duration::from_millis(10)));
                }
            }
        };
        let t0 = xen.now();
        let mut sum = Fnv(0xcbf2_9ce4_8422_2325);
        let mut buf = alloc::vec![0u8; 16384];
        let mut got = 0;
        while got < n {
            let want = buf.len().min(n - got);
            match v.read(&mut buf[..want]) {
                // The guest closed before sending everything.
                Ok(0) => break,
                Ok(k) => {
                    sum.update(&buf[..k]);
                    got += k;
                }
                Err(e) => {
                    fail!("windsor dom0: vchan d{} -> dom0: read failed: {e}", g.dom);
                    break;
                }
            }
        }
        let dt = xen.now() - t0;
        let key = format!("/local/domain/{}/data/vchan-checksum", g.dom.0);
        let deadline = xen.now() + Duration::from_secs(5);
        let theirs = loop {
            match xs.read(T, &key) {
                Ok(v) => break Some(String::from_utf8_lossy(&v).into_owned()),
                Err(_) if xen.now() > deadline => break None,
                Err(_) => {
                    let _ = xs.next_event(Some(Duration::from_millis(10)));
                }
            }
        };
        drop(v);
        let ours = format!("{:016x}", sum.0);
        let mbps = got as f64 / 1048576.0 / dt.as_secs_f64().max(1e-9);
        match theirs {
            Some(t) if t == ours && got == n => println!(
                "windsor dom0: vchan d{} -> dom0: {got} bytes in {} ms ({mbps:.1} MiB/s), \
                 fnv1a64 {ours} matches the guest's",
                g.dom,
                ms(dt)
            ),
            t => fail!(
                "windsor dom0: vchan d{} -> dom0: CHECKSUM MISMATCH: {got}/{n} bytes, ours {ours}, \
                 guest's {t:?}",
                g.dom
            ),
        }
    }

    /// Writes `control/misbehave = what` for a guest (the fuzz-target
    /// guest's knob: `crash`, `ignore-shutdown`, `spin`) and, for `crash`,
    /// waits (1 s at most) until Xen reports it shut down.
    fn misbehave(xen: &'static Xen, xs: &Xs<'_>, g: &Guest<'_>, what: &str, dom_exc: EvtchnPort) {
        let key = format!("/local/domain/{}/control/misbehave", g.dom.0);
        if let Err(e) = xs.write(T, &key, what.as_bytes()) {
            fail!("windsor dom0: misbehave d{}: {e}", g.dom);
            return;
        }
        println!(
            "windsor dom0: guest {:?} d{} told to misbehave: {what}",
            g.plan.name, g.dom
        );
        if what != "crash" {
            // Give the guest a moment to take it in before anything else.
            let _ = xs.read(T, &key);
            let _ = xen.wait(&[dom_exc], Some(Duration::from_millis(20)));
            return;
        }
        let t0 = xen.now();
        while xen.now() - t0 < Duration::from_secs(1) {
            if let Ok(RunState::Shutdown(_)) = xen.info(g.dom).map(|i| i.state) {
                break;
            }
            let _ = xen.clear_pending(dom_exc);
            let _ = xen.wait(&[dom_exc], Some(Duration::from_millis(10)));
        }
    }

    /// Asks a guest to shut down through `control/shutdown`, then cleans up.
    fn shutdown_guest(
        xen: &'static Xen,
        xs: &Xs<'_>,
        plan: &BootPlan,
        g: &Guest<'_>,
        dom_exc: EvtchnPort,
    ) {
        let dom = g.dom;
        let path = format!("/local/domain/{}", dom.0);
        let t0 = xen.now();
        if let Err(e) = xs.write(T, &format!("{path}/control/shutdown"), b"poweroff") {
            fail!("windsor dom0: guest d{dom}: cannot write control/shutdown: {e}");
        }
        let deadline = t0 + Duration::from_millis(plan.dom0.timeouts.shutdown_ms.into());
        let reason = loop {
            match xen.info(dom).map(|i| i.state) {
                Ok(RunState::Shutdown(r)) => break Some(r),
                Err(_) => break None,
                _ => {}
            }
            if xen.now() > deadline {
                break None;
            }
            let _ = xen.clear_pending(dom_exc);
            let _ = xen.wait(&[dom_exc], Some(Duration::from_millis(10)));
        };
        let state = xs
            .read(T, &format!("{path}/data/state"))
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        // The guest acknowledges by clearing the request (as Linux does).
        let acked = xs
            .read(T, &format!("{path}/control/shutdown"))
            .is_ok_and(|v| v.is_empty());
        match reason {
            Some(r) => println!(
                "windsor dom0: guest {:?} d{dom} shut down on request: {r:?} after {} ms \
                 (control/shutdown {}, data/state={state})",
                g.plan.name,
                ms(xen.now() - t0),
                if acked {
                    "acknowledged"
                } else {
                    "NOT acknowledged"
                }
            ),
            None => fail!(
                "windsor dom0: guest {:?} d{dom} did not shut down within {} ms; destroying it",
                g.plan.name,
                plan.dom0.timeouts.shutdown_ms
            ),
        }
        cleanup(xen, xs, g.plan, dom, dom_exc);
    }

    /// Releases `dom` from xenstore, checks its nodes are gone, destroys it
    /// and waits until Xen no longer lists it.
    fn cleanup(xen: &'static Xen, xs: &Xs<'_>, d: &PlanDomain, dom: DomId, dom_exc: EvtchnPort) {
        let path = format!("/local/domain/{}", dom.0);
        if let Err(e) = xs.release(dom) {
            fail!("windsor dom0: release d{dom} from xenstore: {e}");
        }
        // The guest owned its subtree, so release removed it; whatever dom0
        // wrote elsewhere for it goes too.
        let _ = xs.rm(T, &path);
        let gone = matches!(xs.read(T, &path), Err(ClientError::Store(Errno::ENOENT)));
        let state = xen.info(dom).map(|i| i.state);
        if let Err(e) = xen.destroy(dom) {
            fail!("windsor dom0: destroy d{dom}: {}", xen.describe(e));
        }
        if !gone {
            FAILED.fetch_add(1, Ordering::Relaxed);
        }
        if wait_gone(xen, dom, dom_exc) {
            println!(
                "windsor dom0: guest {:?} d{dom} cleaned up (was {state:?}): xenstore nodes {}, \
                 domain gone (memory, grants, event channels released)",
                d.name,
                if gone { "gone" } else { "STILL PRESENT" }
            );
        }
    }

    /// Waits until Xen no longer lists `dom` (5 s at most).
    fn wait_gone(xen: &'static Xen, dom: DomId, dom_exc: EvtchnPort) -> bool {
        let t0 = xen.now();
        while xen.info(dom).is_ok() {
            if xen.now() - t0 > Duration::from_secs(5) {
                fail!("windsor dom0: d{dom} still listed 5 s after destroy (a leaked mapping?)");
                return false;
            }
            let _ = xen.clear_pending(dom_exc);
            let _ = xen.wait(&[dom_exc], Some(Duration::from_millis(5)));
        }
        true
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
