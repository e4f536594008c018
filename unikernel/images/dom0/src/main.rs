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
//! 3. builds every **guest** in plan order as a VM of the toolstack core
//!    (`windsor_toolstack::Engine`, the same core host mode runs): the
//!    engine makes the VM record and the domain's configuration; dom0
//!    creates and builds the domain, commits the engine's
//!    `/local/domain/<id>` tree in one transaction, sends
//!    `XS_INTRODUCE(id, store gfn, store port)`, unpauses it and waits (the
//!    plan's `domain_ready_ms`) for `data/state = running`. A refused image
//!    or a guest that crashes or does not come up is reported and cleaned
//!    up; the host carries on. A failed create or build is reported with
//!    the op that failed and Xen's code (`Xen::describe`, e.g.
//!    `XENMEM_populate_physmap (dom 3, 4096 pages) failed: ENOMEM (12)`,
//!    or for a refused image `image check failed: ENOEXEC: <why>`). Driver
//!    domains (netback; blkback) are started before the guests and their
//!    devices plugged at each guest's start (`drivers`);
//! 4. prints the ready marker with the time from dom0's entry:
//!    `WINDSOR-READY dom0=<ms> ms xen=<ms> ms host=<name> guests=<n>`;
//! 5. with `serve` on its command line (`cargo xtask xen-up`), stays up:
//!    brings up the NIC and serves the XenAPI (`host`, `net`, `http`)
//!    until `host.shutdown`/`host.reboot`, then stops every VM and the
//!    xenstore domain and powers off (or reboots); otherwise
//!    exercises and tears the host down (the boot test is the whole life
//!    of the host): for each
//!    guest whose command line has `vchan=N`, connects to the vchan it
//!    offers under `/local/domain/<id>/data/vchan/0/checksum`, reads `N`
//!    bytes and compares their FNV-1a 64 with the one the guest wrote to
//!    `data/vchan-checksum`; applies the `misbehave=<guest>:<what>` words
//!    of its own command line (writes the fuzz-target guest's
//!    `control/misbehave`: `crash`, `ignore-shutdown`, `spin`); reports
//!    and cleans up guests that already shut down (a crash); then asks
//!    each remaining guest to shut down cleanly (the engine's request
//!    through `control/shutdown`, `poweroff`), waits (`shutdown_ms`),
//!    releases it from xenstore (`XS_RELEASE`), commits the engine's
//!    removal of its nodes and checks they are gone, destroys
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

#[cfg(any(test, target_os = "none"))]
extern crate alloc;

#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod drivers;
#[cfg(target_os = "none")]
mod host;
// Portable: its framing tests run on the host (`cargo test -p windsor-dom0`).
#[cfg(any(test, target_os = "none"))]
mod http;
#[cfg(target_os = "none")]
mod linux;
#[cfg(target_os = "none")]
mod net;

#[cfg(target_os = "none")]
mod image {
    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;
    use core::sync::atomic::{AtomicU32, Ordering};
    use core::time::Duration;
    use windsor_boot_config::{BootPlan, Bundle, DomainKind, PlanDomain};
    use windsor_toolstack::action::{Action, NewRecord, PowerState, Ref, Reply, VmRecord};
    use windsor_toolstack::effect::commit;
    use windsor_toolstack::layout;
    use windsor_toolstack::lifecycle::{self, Op};
    use windsor_toolstack::power::{Exit, Scan};
    use windsor_toolstack::{Engine, Handled, Settings};
    use windsor_unikernel::xen::platform::{
        BuiltDomain, Clock, CreateConfig, DomainControl, DomainImage, EventChannel, GrantTable,
        LocalPages, Platform, RunState, ShutdownReason, Virq,
    };
    use windsor_unikernel::xen::{DomId, Errno, EvtchnPort};
    use windsor_unikernel::{boot_time, println, Xen};
    use windsor_xenstore::client::{ClientError, TxId, XenStore};
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
        /// Its VM record in the toolstack engine.
        vm: Ref,
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
            redacted(xen.cmdline())
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
        let xs_cfg = plan_config(xs_plan);
        let made = create_and_build(
            xen,
            &bundle,
            xs_plan,
            &xs_cfg,
            &xs_cmdline,
            DomId::DOM0,
            |xsdom| {
                xen.grant_xenstore_ring(&ring, 0, xsdom)
                    .map_err(|e| format!("grant dom0's ring: {e}"))?;
                let p = xen
                    .alloc_unbound(xsdom)
                    .map_err(|e| format!("dom0's xenstore port: {e}"))?;
                port = Some(p);
                Ok(format!("dom0-ring={}:{}", ring.gfn(0).0, p.0))
            },
        );
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
        if let Err(e) = xs.write(T, &node(DomId::DOM0, "name"), b"Domain-0") {
            panic!("xenstore domain d{xsdom} does not answer: {e}");
        }
        let _ = xs.write(T, &node(DomId::DOM0, "domid"), b"0");
        let _ = xs.write(T, &node(xsdom, "name"), xs_plan.name.as_bytes());
        println!(
            "windsor dom0: xenstore domain {:?} is d{} and answers (built and first reply in {} ms)",
            xs_plan.name,
            xsdom,
            ms(xen.now() - t0)
        );

        // The toolstack core keeps the guests' VM records and decides their
        // xenstore nodes, introduction and shutdown handshake. The pool
        // database is not written: the xenstore domain has no persistence
        // in Xen mode yet, so its effects are dropped.
        let (mut drivers, f) = crate::drivers::start(xen, &xs, &bundle, &plan, xsdom, dom_exc);
        FAILED.fetch_add(f, Ordering::Relaxed);
        let mut eng = Engine::new(
            drivers.settings(Settings {
                host_name: plan.host.clone(),
                xenstore_domid: xsdom,
                backend_domid: DomId::DOM0,
                fuzz_template: false,
                ..Settings::default()
            }),
            xen.now().as_nanos() as u64 | 1,
            Vec::new(),
        );
        eng.bootstrap(&[]);
        eng.take_effects();

        // 2. The other domains, in plan order; guests that report on their
        //    console (other people's kernels) go through `linux`.
        let mut guests = Vec::new();
        let mut console_guests = Vec::new();
        for d in &plan.domains[1..] {
            if d.ready_console.is_some() {
                console_guests.push(d);
                continue;
            }
            if crate::drivers::serves(d.kind).is_some() {
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
            let started = start_guest(xen, &xs, &mut eng, &mut drivers, &bundle, &plan, d, dom_exc);
            if let Some(g) = started {
                guests.push(g);
            }
        }

        let (linux_guests, f) = crate::linux::start_all(
            xen,
            &xs,
            (&mut eng, &mut drivers),
            &bundle,
            &plan,
            &console_guests,
            xsdom,
            dom_exc,
        );
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
        if serve_requested(xen) {
            // The host stays up and serves the XenAPI until it is told to
            // stop; then everything goes down as below.
            let mut linux_guests = linux_guests;
            let lent = linux_guests
                .iter_mut()
                .map(crate::linux::ConsoleGuest::console_mut)
                .collect();
            let stop = serve(xen, &xs, &bundle, &plan, &mut eng, dom_exc, lent);
            let f = crate::linux::stop_all(
                xen,
                &xs,
                (&mut eng, &mut drivers),
                &bundle,
                &plan,
                linux_guests,
                &[],
                xsdom,
                dom_exc,
            );
            FAILED.fetch_add(f, Ordering::Relaxed);
            FAILED.fetch_add(drivers.stop(xen, &xs, dom_exc), Ordering::Relaxed);
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
            return match stop {
                Some(crate::host::Stop::Reboot) => ShutdownReason::Reboot,
                _ => ShutdownReason::Poweroff,
            };
        }
        let reboot: Vec<&str> = xen
            .cmdline()
            .split_ascii_whitespace()
            .filter_map(|w| w.strip_prefix("reboot="))
            .flat_map(|l| l.split(','))
            .collect();
        let f = crate::linux::stop_all(
            xen,
            &xs,
            (&mut eng, &mut drivers),
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
                let exits = exits_of(&eng, g.dom, r);
                cleanup(xen, &xs, &mut eng, g.plan, &g.vm, g.dom, dom_exc);
                settled(&mut eng, &exits);
                drivers.unplug(&xs, g.dom);
                continue;
            }
            shutdown_guest(xen, &xs, &mut eng, &plan, g, dom_exc);
            drivers.unplug(&xs, g.dom);
        }
        FAILED.fetch_add(drivers.stop(xen, &xs, dom_exc), Ordering::Relaxed);
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

    /// Whether dom0's command line asks for a host that stays up and
    /// serves the XenAPI (`serve`, as `cargo xtask xen-up` boots it).
    fn serve_requested(xen: &Xen) -> bool {
        xen.cmdline().split_ascii_whitespace().any(|w| w == "serve")
    }

    /// The command line with the password hash left out.
    fn redacted(cmdline: &str) -> String {
        cmdline
            .split_ascii_whitespace()
            .map(|w| {
                if w.starts_with("api.root=") {
                    "api.root=<hash>"
                } else {
                    w
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Brings up the NIC and serves the XenAPI until `host.shutdown` or
    /// `host.reboot` (`None`: no NIC, nothing served; counted as failed).
    fn serve(
        xen: &'static Xen,
        xs: &Xs<'_>,
        bundle: &Bundle<'_>,
        plan: &BootPlan,
        eng: &mut Engine,
        dom_exc: EvtchnPort,
        linux: Vec<&mut crate::console::Console>,
    ) -> Option<crate::host::Stop> {
        let t0 = xen.now();
        let (nic, df) = match windsor_unikernel::pci::virtio_net() {
            Ok(x) => x,
            Err(e) => {
                fail!("windsor dom0: no XenAPI: {e}");
                return None;
            }
        };
        let trace = xen
            .cmdline()
            .split_ascii_whitespace()
            .any(|w| w == "net.trace");
        let mut net = crate::net::Net::new(nic, xen.now(), trace);
        let mac = net.mac();
        let root_hash = crate::host::root_hash_from_cmdline(xen.cmdline());
        if root_hash.is_none() {
            println!(
                "windsor dom0: no api.root=<hash> on the command line: every login is refused"
            );
        }
        let now = xen.now();
        println!(
            "WINDSOR-API-READY http://10.0.2.15:{} dom0={} ms xen={} ms (NIC {df} \
             {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} up in {} ms)",
            crate::net::API_PORT,
            ms(now.saturating_sub(boot_time())),
            now.as_millis(),
            mac[0],
            mac[1],
            mac[2],
            mac[3],
            mac[4],
            mac[5],
            ms(now - t0)
        );
        let ctx = crate::host::Ctx {
            xen,
            xs,
            bundle,
            plan,
            dom_exc,
            root_hash,
            linux,
        };
        Some(crate::host::Host::new(ctx, eng).run(&mut net))
    }

    /// `/local/domain/<dom>/<rel>`.
    fn node(dom: DomId, rel: &str) -> String {
        format!("{}/{rel}", layout::domain(dom))
    }

    /// The domain of a plan entry that is not a VM (the xenstore domain).
    fn plan_config(d: &PlanDomain) -> CreateConfig {
        CreateConfig {
            max_mem_kib: u64::from(d.memory_mib) * 1024,
            max_vcpus: d.vcpus.max(1),
            ..CreateConfig::default()
        }
    }

    /// The VM record of a planned guest.
    fn vm_record(d: &PlanDomain, cmdline: &str) -> VmRecord {
        let mem = i64::from(d.memory_mib) << 20;
        let vcpus = i64::from(d.vcpus.max(1));
        VmRecord {
            name_label: d.name.clone(),
            PV_kernel: d.image.clone(),
            PV_args: cmdline.into(),
            memory_static_max: mem,
            memory_dynamic_max: mem,
            memory_dynamic_min: mem,
            memory_target: mem,
            VCPUs_max: vcpus,
            VCPUs_at_startup: vcpus,
            ..VmRecord::default()
        }
    }

    /// What the engine makes of `dom` shutting down for `r` (asked before
    /// the domain is cleaned up, while the engine still knows it).
    fn exits_of(eng: &Engine, dom: DomId, r: ShutdownReason) -> Vec<Exit> {
        let scan = Scan {
            ids: alloc::vec![dom.0],
            down: alloc::vec![(dom.0, r)],
        };
        eng.exits(&scan, &[])
    }

    /// Records exits whose domains were cleaned up. Xen mode restarts
    /// nothing yet: a VM whose policy is to restart is halted too.
    fn settled(eng: &mut Engine, exits: &[Exit]) {
        for x in exits {
            if let Some(v) = eng.exited(x) {
                eng.halted(v, PowerState::Halted, lifecycle::reason_word(x.why));
            }
        }
        eng.take_effects();
    }

    /// Creates a domain for `d` with `cfg` and builds it from its bundle
    /// entry.
    ///
    /// `prepare` runs between creation and build and returns more command
    /// line words for the domain.
    fn create_and_build(
        xen: &'static Xen,
        bundle: &Bundle<'_>,
        d: &PlanDomain,
        cfg: &CreateConfig,
        cmdline: &str,
        xenstore: DomId,
        prepare: impl FnOnce(DomId) -> Result<String, String>,
    ) -> Result<(DomId, BuiltDomain), String> {
        let kernel = bundle
            .entry(d.module as usize)
            .ok_or_else(|| format!("bundle has no entry {}", d.module))?;
        let dom = xen.create(cfg).map_err(|e| xen.describe(e))?;
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

    /// Builds, introduces and starts guest `d` as a VM of the engine, its
    /// devices plugged into the driver domains; waits for it to be running.
    #[allow(clippy::too_many_arguments)]
    fn start_guest<'p>(
        xen: &'static Xen,
        xs: &Xs<'_>,
        eng: &mut Engine,
        drivers: &mut crate::drivers::Drivers<'_>,
        bundle: &Bundle<'_>,
        plan: &BootPlan,
        d: &'p PlanDomain,
        dom_exc: EvtchnPort,
    ) -> Option<Guest<'p>> {
        let t0 = xen.now();
        let cmdline = format!("{} xenbus", d.cmdline);
        let created = eng.handle(
            Action::Create(NewRecord::Vm(vm_record(d, &cmdline))),
            xen.now().as_secs(),
        );
        let vm = match created {
            Handled::Reply(Ok(Reply::Ref(r))) => r,
            other => {
                fail!(
                    "windsor dom0: guest {:?} not started: no VM record: {other:?}",
                    d.name
                );
                return None;
            }
        };
        if let Err(e) = drivers.add_devices(eng, xen.now().as_secs(), &vm, &cmdline) {
            fail!("windsor dom0: guest {:?} not started: {e}", d.name);
            return None;
        }
        let v = match eng.begin(&vm, Op::Start) {
            Ok(v) => v,
            Err(e) => {
                fail!("windsor dom0: guest {:?} not started: {e}", d.name);
                return None;
            }
        };
        let cfg = eng.create_config(&v);
        let xsdom = eng.settings().xenstore_domid;
        let (dom, built) =
            match create_and_build(xen, bundle, d, &cfg, &cmdline, xsdom, |_| Ok(String::new())) {
                Ok(x) => x,
                Err(e) => {
                    fail!("windsor dom0: guest {:?} not started: {e}", d.name);
                    return None;
                }
            };
        // The domain's tree and devices, in one transaction, then its
        // introduction.
        let tree = eng.attach(&v, dom);
        let state_path = node(dom, "data/state");
        let prep = commit(xs, &tree)
            .and_then(|()| xs.introduce(dom, built.store_gfn.0, built.store_port))
            .and_then(|()| xs.watch(&state_path, "state"));
        if let Err(e) = prep {
            fail!(
                "windsor dom0: guest {:?} d{dom}: xenstore set-up failed: {e}",
                d.name
            );
            cleanup(xen, xs, eng, d, &vm, dom, dom_exc);
            return None;
        }
        if let Err(e) = drivers.plug(eng, &v, dom) {
            fail!(
                "windsor dom0: guest {:?} d{dom}: devices not plugged: {e}",
                d.name
            );
            drivers.unplug(xs, dom);
            cleanup(xen, xs, eng, d, &vm, dom, dom_exc);
            return None;
        }
        if let Err(e) = xen.unpause(dom) {
            panic!("unpause d{dom}: {}", xen.describe(e));
        }
        eng.started(v, Op::Start, dom, false);
        eng.take_effects();
        let deadline = xen.now() + Duration::from_millis(plan.dom0.timeouts.domain_ready_ms.into());
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
                let booted = xs.read(T, &node(dom, "data/booted")).unwrap_or_default();
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
                    vm,
                    dom,
                    vchan,
                })
            }
            Err(why) if why == "Crash" => {
                fail!(
                    "windsor dom0: guest {:?} d{dom} crashed while starting",
                    d.name
                );
                let exits = exits_of(eng, dom, ShutdownReason::Crash);
                cleanup(xen, xs, eng, d, &vm, dom, dom_exc);
                settled(eng, &exits);
                drivers.unplug(xs, dom);
                None
            }
            Err(why) => {
                fail!(
                    "windsor dom0: guest {:?} d{dom} did not come up ({why}); destroying it",
                    d.name
                );
                hard_stop(xen, xs, eng, d, &vm, dom, dom_exc);
                drivers.unplug(xs, dom);
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
        let key = node(g.dom, "data/vchan-checksum");
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
        let key = node(g.dom, "control/misbehave");
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

    /// Asks a guest to shut down cleanly (the engine's request through
    /// `control/shutdown`), then cleans up.
    fn shutdown_guest(
        xen: &'static Xen,
        xs: &Xs<'_>,
        eng: &mut Engine,
        plan: &BootPlan,
        g: &Guest<'_>,
        dom_exc: EvtchnPort,
    ) {
        let dom = g.dom;
        let t0 = xen.now();
        let req = match eng.clean_request(&g.vm, Op::CleanShutdown) {
            Ok(c) => c,
            Err(e) => {
                fail!("windsor dom0: guest d{dom}: no clean shutdown: {e}");
                hard_stop(xen, xs, eng, g.plan, &g.vm, dom, dom_exc);
                return;
            }
        };
        if let Err(e) = xs.write(T, &req.node, req.word.as_bytes()) {
            fail!("windsor dom0: guest d{dom}: cannot write control/shutdown: {e}");
        }
        eng.clean_started(&g.vm, &req, Op::CleanShutdown);
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
            .read(T, &node(dom, "data/state"))
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        // The guest acknowledges by clearing the request (as Linux does).
        let acked = xs.read(T, &req.node).is_ok_and(|v| v.is_empty());
        match reason {
            Some(r) => {
                println!(
                    "windsor dom0: guest {:?} d{dom} shut down on request: {r:?} after {} ms \
                     (control/shutdown {}, data/state={state})",
                    g.plan.name,
                    ms(xen.now() - t0),
                    if acked {
                        "acknowledged"
                    } else {
                        "NOT acknowledged"
                    }
                );
                let exits = exits_of(eng, dom, r);
                cleanup(xen, xs, eng, g.plan, &g.vm, dom, dom_exc);
                settled(eng, &exits);
                if let Err(e) = eng.clean_outcome(&g.vm, &req, Op::CleanShutdown) {
                    fail!(
                        "windsor dom0: guest {:?} d{dom}: clean shutdown: {e}",
                        g.plan.name
                    );
                }
            }
            None => {
                let timeout = Duration::from_millis(plan.dom0.timeouts.shutdown_ms.into());
                let e = eng.clean_timed_out(&g.vm, &req, acked, timeout);
                fail!(
                    "windsor dom0: guest {:?} d{dom} did not shut down within {} ms; destroying it",
                    g.plan.name,
                    plan.dom0.timeouts.shutdown_ms
                );
                println!("windsor dom0: guest {:?} d{dom}: {e}", g.plan.name);
                hard_stop(xen, xs, eng, g.plan, &g.vm, dom, dom_exc);
            }
        }
    }

    /// `VM.hard_shutdown`: cleans up a guest that is still running and
    /// halts its VM.
    fn hard_stop(
        xen: &'static Xen,
        xs: &Xs<'_>,
        eng: &mut Engine,
        d: &PlanDomain,
        vm: &str,
        dom: DomId,
        dom_exc: EvtchnPort,
    ) {
        cleanup(xen, xs, eng, d, vm, dom, dom_exc);
        if let Ok(v) = eng.begin(vm, Op::HardShutdown) {
            eng.hard_halted(v);
        }
        eng.take_effects();
    }

    /// Releases `dom` from xenstore, removes its nodes (the engine's
    /// removal transaction) and checks they are gone, destroys it and
    /// waits until Xen no longer lists it.
    fn cleanup(
        xen: &'static Xen,
        xs: &Xs<'_>,
        eng: &mut Engine,
        d: &PlanDomain,
        vm: &str,
        dom: DomId,
        dom_exc: EvtchnPort,
    ) {
        let path = layout::domain(dom);
        if let Err(e) = xs.release(dom) {
            fail!("windsor dom0: release d{dom} from xenstore: {e}");
        }
        let uuid = windsor_toolstack::action::uuid_of(vm).unwrap_or_default();
        let removal = eng.detach(uuid, dom);
        if let Err(e) = commit(xs, &removal) {
            println!("windsor dom0: removing d{dom}'s nodes: {e}");
        }
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
