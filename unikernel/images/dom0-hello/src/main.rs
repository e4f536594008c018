//! `dom0-hello`: the smallest Windsor dom0.
//!
//! Boots as PVH dom0, prints what Xen handed it (version, command line,
//! modules, memory map), exercises the platform seam once (clock, an
//! event channel to itself, a grant, creating and destroying an empty
//! domain), prints the ready marker with the
//! time from dom0 start, and powers the host off (`SCHEDOP_shutdown`
//! poweroff of dom0 makes Xen halt the machine).
//!
//! With `panic` on its command line it panics right after the banner
//! instead, with `fault` it touches an unmapped page (the Xen-mode tests use
//! these to check that a crash is reported with its cause).
//!
//! Each boot module is built as a PVH guest (the Xen-mode `DomainBuilder`),
//! run until it shuts down (words `guest.X` of dom0's command line reach
//! the guest as `X`), and destroyed. While it runs, dom0 answers its hello
//! on the xenstore ring page (mapped through the reserved grant the builder
//! seeded, with an interdomain event channel on the xenstore port): the
//! path the xenbus transport takes. a module that is not a PVH image is
//! refused and reported (the failing step and Xen's code, through
//! `Xen::describe`), and the host carries on. Last, two domctls that must
//! fail (unpause of a domain that does not exist, createdomain with no
//! vCPUs) check that such failures name the op and the code.
//!
//! The ready marker is the line `xtask xen-boot` and the Xen-mode tests
//! look for:
//!
//! ```text
//! WINDSOR-READY dom0=<ms since dom0 entry> ms xen=<ms since Xen start> ms
//! ```
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod image {
    use alloc::format;
    use core::sync::atomic::Ordering;
    use core::time::Duration;
    use windsor_unikernel::start_info::{MemRegion, MEMMAP_RAM};
    use windsor_unikernel::xen::abi::hvm::HVM_PARAM_STORE_EVTCHN;
    use windsor_unikernel::xen::platform::ForeignMapping;
    use windsor_unikernel::xen::platform::{
        Clock, CreateConfig, DomainBuilder, DomainControl, DomainImage, DomainInfo, EventChannel,
        GrantTable, LocalPages, Platform, RunState, ShutdownReason, Virq,
    };
    use windsor_unikernel::xen::{DomId, GrantRef};
    use windsor_unikernel::Mapping;

    /// guest-hello's message layout on its ring page: text at 0, reply at
    /// this offset, a flag word (1: hello written, 2: answered) at the next.
    const HELLO_REPLY: usize = 1024;
    const HELLO_FLAG: usize = 2048;
    use windsor_unikernel::xen::{Gfn, PAGE_SIZE};
    use windsor_unikernel::{boot_time, println, Xen};

    windsor_unikernel::main!(main);

    fn main(xen: &'static Xen) -> ShutdownReason {
        let (major, minor) = xen.xen_version();
        let si = xen.start_info();
        println!(
            "windsor dom0-hello: Xen {major}.{minor}, dom{}, cmdline {:?}",
            xen.domid(),
            xen.cmdline()
        );
        if xen.cmdline().split_ascii_whitespace().any(|w| w == "panic") {
            panic!("panic requested on the command line");
        }
        if xen.cmdline().split_ascii_whitespace().any(|w| w == "fault") {
            // 4 GiB is just past the boot identity map: a page fault.
            // SAFETY: deliberately faulting; the exception handler reports
            // it and crashes the domain, so the read never completes.
            let v = unsafe { core::ptr::read_volatile(0x1_0000_0000 as *const u64) };
            println!("windsor: read {v:#x} from an unmapped page?");
        }
        for (i, m) in si.modules.iter().enumerate() {
            println!(
                "windsor: module {i}: {:#x}+{:#x} {:?}",
                m.paddr, m.size, m.cmdline
            );
        }
        for r in &si.memmap {
            println!(
                "windsor: memmap {:#012x}-{:#012x} type {}",
                r.addr,
                r.end(),
                r.kind
            );
        }
        println!("windsor: heap free {} KiB", xen.heap_free() / 1024);

        // Event channel loopback: alloc for ourselves, bind, send, wait.
        let unbound = xen.alloc_unbound(xen.domid()).expect("alloc_unbound");
        let local = xen
            .bind_interdomain(xen.domid(), unbound)
            .expect("bind_interdomain");
        xen.clear_pending(local).expect("clear");
        xen.clear_pending(unbound).expect("clear");
        xen.notify(local).expect("send");
        let fired = xen
            .wait(&[unbound], Some(core::time::Duration::from_millis(100)))
            .expect("wait");
        assert!(
            fired && xen.clear_pending(unbound).expect("clear"),
            "loopback event lost"
        );
        let timed_out = !xen
            .wait(&[unbound], Some(core::time::Duration::from_millis(5)))
            .expect("wait");
        assert!(timed_out, "wait without an event must time out");
        xen.close(local).expect("close");
        xen.close(unbound).expect("close");
        println!("windsor: event channel loopback ok (ports {unbound}, {local})");

        // Grant a page to ourselves, copy through the grant.
        let pages = xen.alloc_pages(1).expect("alloc_pages");
        pages.mem().write_bytes(0, b"windsor");
        let gref = xen
            .grant_access(&pages, 0, xen.domid(), false)
            .expect("grant");
        let mut buf = [0u8; 7];
        xen.copy_from_grant(xen.domid(), gref, 0, &mut buf)
            .expect("gnttab copy");
        assert_eq!(&buf, b"windsor");
        xen.end_access(gref).expect("end_access");
        println!("windsor: grant copy ok ({gref})");

        // Domain control: create an empty PVH domain, look at it, destroy it.
        let dom = xen.create(&CreateConfig::default()).expect("createdomain");
        let info = xen.info(dom).expect("getdomaininfo");
        assert_eq!(info.state, RunState::Paused, "a new domain starts paused");
        let mut all = [DomainInfo {
            domid: dom,
            state: RunState::Running,
            handle: [0; 16],
            tot_pages: 0,
            max_mem_kib: 0,
            max_vcpus: 0,
            cpu_time_ns: 0,
            privileged: false,
        }; 8];
        let n = xen
            .list(windsor_unikernel::xen::DomId::DOM0, &mut all)
            .expect("list");
        assert!(n >= 2 && all[0].domid.0 == 0 && all[..n].iter().any(|d| d.domid == dom));
        // Builder primitives on the empty domain: memory, a foreign mapping
        // round trip, e820, an HVM param, the HVM context.
        const PAGES: u64 = 2048;
        xen.populate_physmap(dom, Gfn(0), PAGES)
            .expect("populate_physmap");
        let m = xen
            .map_foreign(dom, &[Gfn(0x100), Gfn(0x101)])
            .expect("map foreign");
        m.mem().write_bytes(PAGE_SIZE + 8, b"windsor");
        drop(m);
        let m = xen
            .map_foreign(dom, &[Gfn(0x101)])
            .expect("map foreign again");
        let mut back = [0u8; 7];
        m.mem().read_bytes(8, &mut back);
        assert_eq!(&back, b"windsor", "guest memory lost the bytes");
        drop(m);
        let ram = MemRegion {
            addr: 0,
            size: PAGES * PAGE_SIZE as u64,
            kind: MEMMAP_RAM,
        };
        xen.set_memory_map(dom, &[ram]).expect("set_memory_map");
        xen.set_hvm_param(dom, HVM_PARAM_STORE_EVTCHN, 5)
            .expect("set param");
        assert_eq!(
            xen.get_hvm_param(dom, HVM_PARAM_STORE_EVTCHN)
                .expect("get param"),
            5
        );
        let ctx = xen.hvm_context(dom).expect("gethvmcontext");
        xen.set_hvm_context(dom, &ctx).expect("sethvmcontext");
        let populated = xen.info(dom).expect("getdomaininfo").tot_pages;
        assert!(populated >= PAGES, "only {populated} pages populated");
        println!(
            "windsor: builder primitives ok ({populated} pages, foreign map round trip, e820, \
             hvm param, hvm context {} bytes)",
            ctx.len()
        );

        xen.destroy(dom).expect("destroydomain");
        assert!(
            xen.info(dom).map_or(true, |i| i.state == RunState::Dying),
            "destroyed domain still listed"
        );
        println!(
            "windsor: domctl ok (created {dom:?} with {} KiB max, {} domains listed, destroyed)",
            info.max_mem_kib, n
        );

        // Every boot module is a guest image: build it, run it, wait for it
        // to shut down, destroy it.
        let dom_exc = xen.bind_virq(Virq::DomExc).expect("bind VIRQ_DOM_EXC");
        for i in 0..si.modules.len() {
            run_guest(xen, i, dom_exc);
        }

        // Failures name the op and Xen's code: a domctl on a domain that
        // does not exist, and a createdomain Xen refuses (no vCPUs). After the
        // modules: Xen's domain id rover moves on even when createdomain fails.
        match xen.unpause(DomId(0x7fef)) {
            Err(e) => println!("windsor: domctl failure reported: {}", xen.describe(e)),
            Ok(()) => println!("windsor: unpause of d32751 unexpectedly succeeded"),
        }
        let no_vcpus = CreateConfig {
            max_vcpus: 0,
            ..CreateConfig::default()
        };
        match xen.create(&no_vcpus) {
            Err(e) => println!("windsor: domctl failure reported: {}", xen.describe(e)),
            Ok(d) => {
                println!("windsor: a domain with no vCPUs was unexpectedly created ({d:?})");
                xen.destroy(d).expect("destroydomain");
            }
        }

        let now = xen.now();
        let since_dom0 = now.saturating_sub(boot_time());
        println!(
            "WINDSOR-READY dom0={}.{:03} ms xen={} ms",
            since_dom0.as_micros() / 1000,
            since_dom0.as_micros() % 1000,
            now.as_millis()
        );
        ShutdownReason::Poweroff
    }

    /// Answers the guest's hello on its xenstore ring page (see guest-hello).
    fn answer(ring: &Mapping, i: usize, dom: DomId) {
        let page = ring.rw().expect("writable mapping");
        if page.atomic_u32(HELLO_FLAG).load(Ordering::Acquire) != 1 {
            return;
        }
        let mut msg = [0u8; 64];
        page.read_bytes(0, &mut msg);
        let len = msg.iter().position(|&b| b == 0).unwrap_or(msg.len());
        println!(
            "windsor: module {i}: {dom:?} says {:?} over its xenstore ring",
            core::str::from_utf8(&msg[..len]).unwrap_or("<not UTF-8>")
        );
        let reply = format!("hello {dom:?}, this is dom0\0");
        page.write_bytes(HELLO_REPLY, reply.as_bytes());
        page.atomic_u32(HELLO_FLAG).store(2, Ordering::Release);
    }

    /// Builds module `i` as a guest, runs it until it shuts down, destroys it.
    fn run_guest(xen: &'static Xen, i: usize, dom_exc: windsor_unikernel::xen::EvtchnPort) {
        let kernel = xen.module(i).expect("module in the identity map");
        let cfg = CreateConfig {
            max_mem_kib: 8 * 1024,
            ..CreateConfig::default()
        };
        let dom = xen.create(&cfg).expect("createdomain");
        // Words `guest.X` of our own command line are passed on as `X`.
        let mut cmdline = format!("domid={} module={i}", dom.0);
        for w in xen.cmdline().split_ascii_whitespace() {
            if let Some(arg) = w.strip_prefix("guest.") {
                cmdline.push(' ');
                cmdline.push_str(arg);
            }
        }
        let image = DomainImage {
            kernel,
            cmdline: &cmdline,
            xenstore_domid: DomId::DOM0,
            console_domid: DomId::DOM0,
        };
        let t0 = xen.now();
        let built = match xen.build(dom, &image) {
            Ok(b) => b,
            Err(e) => {
                println!(
                    "windsor: module {i}: build of {dom:?} refused: {e}; {}",
                    xen.describe(e)
                );
                xen.destroy(dom).expect("destroy refused domain");
                return;
            }
        };
        let t_built = xen.now();
        println!(
            "windsor: module {i}: built {dom:?} in {} us (store {:?} {}, console {:?} {})",
            (t_built - t0).as_micros(),
            built.store_gfn,
            built.store_port,
            built.console_gfn,
            built.console_port
        );
        // Before the guest runs: connect to its xenstore port and map its
        // xenstore ring through the reserved grant the builder seeded.
        let store = xen
            .bind_interdomain(dom, built.store_port)
            .expect("bind the guest's xenstore port");
        xen.clear_pending(store).expect("clear");
        let ring = xen
            .map(dom, &[GrantRef::RESERVED_XENSTORE], false)
            .expect("map the guest's xenstore ring grant");
        xen.unpause(dom).expect("unpause");
        let deadline = xen.now() + Duration::from_secs(20);
        let reason = loop {
            if let RunState::Shutdown(r) = xen.info(dom).expect("getdomaininfo").state {
                break Some(r);
            }
            if xen.now() > deadline {
                break None;
            }
            if xen.clear_pending(store).expect("clear") {
                answer(&ring, i, dom);
                xen.notify(store).expect("notify the guest");
            }
            xen.clear_pending(dom_exc).expect("clear");
            let _ = xen.wait(&[dom_exc, store], Some(Duration::from_millis(20)));
        };
        drop(ring);
        xen.close(store).expect("close");
        println!(
            "windsor: module {i}: {dom:?} shut down: {reason:?} after {} us",
            (xen.now() - t_built).as_micros()
        );
        xen.destroy(dom).expect("destroydomain");
        // Destroy returns once Xen has released the domain's memory, ports
        // and grants; then the id is gone.
        let gone = xen.now();
        while xen.info(dom).is_ok() {
            assert!(
                xen.now() - gone < Duration::from_secs(5),
                "{dom:?} still listed after destroy"
            );
            xen.clear_pending(dom_exc).expect("clear");
            let _ = xen.wait(&[dom_exc], Some(Duration::from_millis(5)));
        }
        println!("windsor: module {i}: {dom:?} destroyed and gone");
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
