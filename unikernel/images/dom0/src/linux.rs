//! Guests that report on their console: other people's kernels (Debian's
//! Linux first), which never write Windsor's `data/state = running`.
//!
//! A planned guest with `ready_console` is handled here instead of by the
//! `data/state` path of `main.rs`:
//!
//! 1. **start** ([`start_all`]): create (its vCPUs and memory), build with
//!    its ramdisk (`PV_ramdisk`, `hvm_start_info` module 0) and command line
//!    exactly as written (`PV_args`: nothing appended, Linux would pass
//!    unknown words to init), make `/local/domain/<id>` (owned by the guest:
//!    `name`, `domid`, `control/`, `data/`, `cpu/<n>/availability`),
//!    `XS_INTRODUCE`, attach dom0's
//!    console backend ([`crate::console`]), unpause; then serve every
//!    console until each shows its `ready_console` text (bounded by the
//!    plan's `domain_ready_ms`). The time from unpause to that line is
//!    printed (`unpause -> init`).
//! 2. **control protocol** ([`stop_all`]), Linux's own xenbus handler
//!    (`drivers/xen/manage.c`) on the other side:
//!    * `control/sysrq = h`: the guest acknowledges by clearing the node
//!      and prints its sysrq help on the console;
//!    * for guests named in dom0's `reboot=<name>,<name>` word:
//!      `control/shutdown = reboot`, wait for `SHUTDOWN_reboot`, tear the
//!      domain down and build it again (a new domain id), wait for its
//!      init line a second time;
//!    * `control/shutdown = poweroff`, wait (`shutdown_ms`) for
//!      `SHUTDOWN_poweroff`; a guest that ignores it is **hard-stopped**
//!      (destroyed) and counted as failed;
//!    * release from xenstore, destroy, wait until Xen no longer lists it.
//!
//! For the tests, dom0's `console-garbage=<name>,...` word appends
//! `windsor.console=garbage` to those guests' command lines: the test
//! initramfs then writes a garbage `out_prod` into its own console ring,
//! and dom0's console backend must disconnect that console alone (the
//! guest's later console writes may then wedge it, in which case it is
//! hard-stopped at shutdown). `console-flood=<name>,...` appends
//! `windsor.console=flood`: the initramfs then writes console lines as
//! fast as it can, and dom0 must hold it to its rate while the other
//! guests go on. `ignore-shutdown=<name>,...` appends
//! `windsor.shutdown=ignore`: the initramfs's `/sbin/poweroff` and
//! `/sbin/reboot` then do nothing, and dom0 must hard-stop the guest.
//!
//! Every step prints one `windsor dom0:` line; failures are counted and
//! returned for `WINDSOR-DONE failed=`.

use crate::console::{pump_until, Console};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;
use windsor_boot_config::{BootPlan, Bundle, PlanDomain};
use windsor_unikernel::xen::platform::{
    BuiltDomain, Clock, CreateConfig, DomainControl, DomainImage, EventChannel, Platform, RunState,
    ShutdownReason,
};
use windsor_unikernel::xen::{DomId, Errno, EvtchnPort};
use windsor_unikernel::{println, Xen};
use windsor_xenstore::client::{Access, ClientError, Perm, TxId, XenStore};
use windsor_xenstore::xenbus::XenbusClient;

use crate::drivers::Drivers;
use windsor_toolstack::Engine;

type Xs<'a> = XenbusClient<'a, Xen>;
const T: TxId = TxId::NONE;

/// The toolstack engine and the driver domains: a guest's devices
/// (`windsor.net=` on its command line) are plugged at launch and
/// unplugged at teardown (`crate::drivers`).
pub type Devices<'e, 'p> = (&'e mut Engine, &'e mut Drivers<'p>);

/// A running console-reporting guest.
pub struct ConsoleGuest<'p> {
    plan: &'p PlanDomain,
    dom: DomId,
    console: Console,
    unpaused: Duration,
    ready: Option<Duration>,
}

impl ConsoleGuest<'_> {
    /// The guest's console (a serving host reads it in its loop).
    pub fn console_mut(&mut self) -> &mut Console {
        &mut self.console
    }
}

fn ms(d: Duration) -> String {
    format!("{}.{:03}", d.as_micros() / 1000, d.as_micros() % 1000)
}

/// Whether dom0's `<word>=<name>,...` command-line word names guest `name`.
fn named_in(xen: &'static Xen, word: &str, name: &str) -> bool {
    xen.cmdline()
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix(word)?.strip_prefix('='))
        .flat_map(|l| l.split(','))
        .any(|n| n == name)
}

/// Whether dom0's `console-garbage=` word names guest `name`.
fn garbage_requested(xen: &'static Xen, name: &str) -> bool {
    named_in(xen, "console-garbage", name)
}

/// Creates, builds and announces `d`, attaches its console; the caller
/// unpauses it ([`unpause`]).
fn launch<'p>(
    xen: &'static Xen,
    xs: &Xs<'_>,
    devs: &mut Devices<'_, '_>,
    bundle: &Bundle<'_>,
    d: &'p PlanDomain,
    xsdom: DomId,
) -> Result<ConsoleGuest<'p>, String> {
    let kernel = bundle
        .entry(d.module as usize)
        .ok_or_else(|| format!("bundle has no entry {}", d.module))?;
    let ramdisk = match &d.ramdisk {
        Some(r) => Some(
            bundle
                .entry(r.module as usize)
                .ok_or_else(|| format!("bundle has no ramdisk entry {}", r.module))?,
        ),
        None => None,
    };
    let cfg = CreateConfig {
        max_mem_kib: u64::from(d.memory_mib) * 1024,
        max_vcpus: d.vcpus.max(1),
        ..CreateConfig::default()
    };
    let t0 = xen.now();
    let dom = xen.create(&cfg).map_err(|e| xen.describe(e))?;
    // Tests: dom0's `console-garbage=<name>,...` makes the test initramfs
    // of those guests write garbage into their console ring.
    let mut cmdline = String::from(d.cmdline.trim());
    if garbage_requested(xen, &d.name) {
        cmdline.push_str(" windsor.console=garbage");
    }
    if named_in(xen, "console-flood", &d.name) {
        cmdline.push_str(" windsor.console=flood");
    }
    if named_in(xen, "ignore-shutdown", &d.name) {
        cmdline.push_str(" windsor.shutdown=ignore");
    }
    let image = DomainImage {
        kernel,
        cmdline: &cmdline,
        xenstore_domid: xsdom,
        console_domid: DomId::DOM0,
    };
    let built: BuiltDomain = match xen.build_with_ramdisk(dom, &image, ramdisk) {
        Ok(b) => b,
        Err(e) => {
            let why = xen.describe(e);
            let _ = xen.destroy(dom);
            return Err(format!(
                "refused by the builder: {why} (domain d{dom} destroyed)"
            ));
        }
    };
    println!(
        "windsor dom0: built guest {:?} as d{dom}: kernel {} KiB, ramdisk {} KiB, {} MiB, \
         {} vCPU(s), in {} ms",
        d.name,
        kernel.len() / 1024,
        ramdisk.map_or(0, <[u8]>::len) / 1024,
        d.memory_mib,
        d.vcpus,
        ms(xen.now() - t0)
    );
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
        // As libxl does: Linux's xen cpu-hotplug driver reads these.
        for v in 0..d.vcpus.max(1) {
            xs.write(T, &format!("{path}/cpu/{v}/availability"), b"online")?;
        }
        xs.introduce(dom, built.store_gfn.0, built.store_port)
    })();
    if let Err(e) = prep {
        let _ = xen.destroy(dom);
        return Err(format!("d{dom}: xenstore set-up failed: {e}"));
    }
    let (eng, drivers) = devs;
    if let Err(e) = drivers.attach_console_guest(xs, eng, xen.now().as_secs(), d, dom) {
        drivers.unplug(xs, dom);
        let _ = xs.release(dom);
        let _ = xs.rm(T, &path);
        let _ = xen.destroy(dom);
        return Err(format!("d{dom}: devices: {e}"));
    }
    let console = match Console::attach(xen, dom, &d.name, &built) {
        Ok(c) => c,
        Err(e) => {
            let _ = xs.release(dom);
            let _ = xen.destroy(dom);
            return Err(format!("d{dom}: console: {e}"));
        }
    };
    Ok(ConsoleGuest {
        plan: d,
        dom,
        console,
        unpaused: xen.now(),
        ready: None,
    })
}

/// Unpauses a built guest and notes when.
fn unpause(xen: &'static Xen, g: &mut ConsoleGuest<'_>) -> Result<(), String> {
    xen.unpause(g.dom)
        .map_err(|e| format!("unpause d{}: {}", g.dom, xen.describe(e)))?;
    g.unpaused = xen.now();
    Ok(())
}

/// Serves the consoles of `guests` until each not yet ready shows its
/// `ready_console` text, crashes, or `timeout` passes. Returns failures.
fn wait_ready(
    xen: &'static Xen,
    guests: &mut [ConsoleGuest<'_>],
    dom_exc: EvtchnPort,
    timeout: Duration,
) -> u32 {
    let deadline = xen.now() + timeout;
    loop {
        let mut pending = 0;
        let mut ports = Vec::new();
        for g in guests.iter_mut().filter(|g| g.ready.is_none()) {
            let marker = g.plan.ready_console.as_deref();
            if g.console.pump(xen, marker) {
                let dt = xen.now() - g.unpaused;
                g.ready = Some(dt);
                println!(
                    "windsor dom0: guest {:?} d{}: console shows {:?}: unpause -> init {} ms \
                     ({} console bytes)",
                    g.plan.name,
                    g.dom,
                    marker.unwrap_or_default(),
                    ms(dt),
                    g.console.total_bytes()
                );
                continue;
            }
            if let Ok(RunState::Shutdown(r)) = xen.info(g.dom).map(|i| i.state) {
                g.console.pump(xen, None);
                println!(
                    "windsor dom0: guest {:?} d{} shut down while starting: {r:?}{}",
                    g.plan.name,
                    g.dom,
                    if r == ShutdownReason::Crash {
                        " (crashed)"
                    } else {
                        ""
                    }
                );
                g.ready = Some(Duration::MAX);
                continue;
            }
            pending += 1;
            ports.push(g.console.port());
        }
        if pending == 0 {
            break;
        }
        let now = xen.now();
        if now > deadline {
            break;
        }
        ports.push(dom_exc);
        let _ = xen.clear_pending(dom_exc);
        let _ = xen.wait(
            &ports,
            Some((deadline - now).min(Duration::from_millis(50))),
        );
    }
    let mut failed = 0;
    for g in guests.iter_mut() {
        match g.ready {
            Some(Duration::MAX) => failed += 1,
            Some(_) => {}
            None => {
                failed += 1;
                println!(
                    "windsor dom0: guest {:?} d{}: no {:?} on its console within {} ms",
                    g.plan.name,
                    g.dom,
                    g.plan.ready_console.as_deref().unwrap_or_default(),
                    timeout.as_millis()
                );
            }
        }
    }
    failed
}

/// Builds and starts every guest of `list`, waits for their init lines.
/// Returns the guests that came up and the number of failures.
#[allow(clippy::too_many_arguments)]
pub fn start_all<'p>(
    xen: &'static Xen,
    xs: &Xs<'_>,
    mut devs: Devices<'_, '_>,
    bundle: &Bundle<'_>,
    plan: &BootPlan,
    list: &[&'p PlanDomain],
    xsdom: DomId,
    dom_exc: EvtchnPort,
) -> (Vec<ConsoleGuest<'p>>, u32) {
    let mut failed = 0;
    let mut guests = Vec::new();
    // Build them all first, then start them together: a running guest
    // would compete with the builder for the CPU.
    for d in list {
        match launch(xen, xs, &mut devs, bundle, d, xsdom) {
            Ok(g) => guests.push(g),
            Err(e) => {
                failed += 1;
                println!("windsor dom0: guest {:?} not started: {e}", d.name);
            }
        }
    }
    for g in &mut guests {
        if let Err(e) = unpause(xen, g) {
            // Counted by `wait_ready` with the other guests that failed.
            println!("windsor dom0: guest {:?}: {e}", g.plan.name);
            g.ready = Some(Duration::MAX);
        }
    }
    let timeout = Duration::from_millis(plan.dom0.timeouts.domain_ready_ms.into());
    failed += wait_ready(xen, &mut guests, dom_exc, timeout);
    let (up, down): (Vec<_>, Vec<_>) = guests
        .into_iter()
        .partition(|g| g.ready.is_some_and(|r| r != Duration::MAX));
    for g in down {
        teardown(xen, xs, devs.1, g, dom_exc);
    }
    (up, failed)
}

/// Writes `control/<key> = value` and serves the console until `done`
/// (given the guest's run state and whether `watch` appeared) or timeout.
// The boot's shared handles plus the request: grouping them would only
// rename the same arguments.
#[allow(clippy::too_many_arguments)]
fn request(
    xen: &'static Xen,
    xs: &Xs<'_>,
    g: &mut ConsoleGuest<'_>,
    key: &str,
    value: &str,
    watch: Option<&str>,
    timeout: Duration,
    dom_exc: EvtchnPort,
    mut done: impl FnMut(Option<RunState>, bool) -> bool,
) -> Result<Duration, String> {
    let node = format!("/local/domain/{}/control/{key}", g.dom.0);
    let t0 = xen.now();
    xs.write(T, &node, value.as_bytes())
        .map_err(|e| format!("cannot write control/{key}: {e}"))?;
    let dom = g.dom;
    let mut seen = false;
    let ok = pump_until(xen, &mut [&mut g.console], &[dom_exc], timeout, |c| {
        seen |= c[0].pump(xen, watch);
        done(xen.info(dom).ok().map(|i| i.state), seen)
    });
    if ok {
        Ok(xen.now() - t0)
    } else {
        Err(format!(
            "no effect of control/{key} = {value} within {} ms",
            timeout.as_millis()
        ))
    }
}

/// Releases the guest from xenstore, destroys it, waits until it is gone.
fn teardown(
    xen: &'static Xen,
    xs: &Xs<'_>,
    drivers: &mut Drivers<'_>,
    g: ConsoleGuest<'_>,
    dom_exc: EvtchnPort,
) -> bool {
    let dom = g.dom;
    drivers.unplug(xs, dom);
    g.console.detach(xen);
    let path = format!("/local/domain/{}", dom.0);
    let _ = xs.release(dom);
    let _ = xs.rm(T, &path);
    let gone = matches!(xs.read(T, &path), Err(ClientError::Store(Errno::ENOENT)));
    let _ = xen.destroy(dom);
    let t0 = xen.now();
    while xen.info(dom).is_ok() {
        if xen.now() - t0 > Duration::from_secs(5) {
            println!("windsor dom0: d{dom} still listed 5 s after destroy");
            return false;
        }
        let _ = xen.clear_pending(dom_exc);
        let _ = xen.wait(&[dom_exc], Some(Duration::from_millis(5)));
    }
    gone
}

/// Runs the control protocol on every guest (see the module doc) and
/// tears them down. `reboot` names the guests to reboot once first.
/// Returns the number of failures.
#[allow(clippy::too_many_arguments)]
pub fn stop_all(
    xen: &'static Xen,
    xs: &Xs<'_>,
    mut devs: Devices<'_, '_>,
    bundle: &Bundle<'_>,
    plan: &BootPlan,
    guests: Vec<ConsoleGuest<'_>>,
    reboot: &[&str],
    xsdom: DomId,
    dom_exc: EvtchnPort,
) -> u32 {
    let mut failed = 0;
    let stop = Duration::from_millis(plan.dom0.timeouts.shutdown_ms.into());
    let ready = Duration::from_millis(plan.dom0.timeouts.domain_ready_ms.into());
    for mut g in guests {
        let name = g.plan.name.clone();
        // sysrq: acknowledged by clearing the node, help on the console.
        let node = format!("/local/domain/{}/control/sysrq", g.dom.0);
        let acked = |xs: &Xs<'_>| xs.read(T, &node).is_ok_and(|v| v.is_empty());
        if garbage_requested(xen, &name) {
            // Serve it until its garbage is seen (as for a fuzz target's
            // `misbehave=` crash, dom0 waits for the misbehaviour).
            let gone = pump_until(xen, &mut [&mut g.console], &[], stop, |c| {
                c[0].pump(xen, None);
                c[0].disconnected()
            });
            if !gone {
                failed += 1;
                println!(
                    "windsor dom0: guest {name:?} d{}: console still connected {} ms after \
                     it was told to write garbage",
                    g.dom,
                    stop.as_millis()
                );
            }
        }
        g.console.pump(xen, None);
        if g.console.disconnected() {
            println!(
                "windsor dom0: guest {name:?} d{}: console disconnected, sysrq not checked",
                g.dom
            );
        } else {
            let sysrq = request(
                xen,
                xs,
                &mut g,
                "sysrq",
                "h",
                Some("sysrq: HELP"),
                stop,
                dom_exc,
                |_, seen| seen,
            );
            match sysrq {
                Ok(dt) => println!(
                    "windsor dom0: guest {name:?} d{}: control/sysrq = h handled in {} ms \
                     (sysrq help on its console, node {})",
                    g.dom,
                    ms(dt),
                    if acked(xs) { "cleared" } else { "NOT cleared" }
                ),
                Err(e) => {
                    failed += 1;
                    println!("windsor dom0: guest {name:?} d{}: {e}", g.dom);
                }
            }
        }
        if reboot.contains(&name.as_str()) {
            let r = request(
                xen,
                xs,
                &mut g,
                "shutdown",
                "reboot",
                None,
                stop,
                dom_exc,
                |s, _| matches!(s, Some(RunState::Shutdown(_))),
            );
            let how = xen.info(g.dom).map(|i| i.state);
            match (r, how) {
                (Ok(dt), Ok(RunState::Shutdown(ShutdownReason::Reboot))) => println!(
                    "windsor dom0: guest {name:?} d{} rebooting on control/shutdown after {} ms",
                    g.dom,
                    ms(dt)
                ),
                (r, how) => {
                    failed += 1;
                    println!(
                        "windsor dom0: guest {name:?} d{}: reboot request failed ({:?}, {how:?})",
                        g.dom,
                        r.err()
                    );
                }
            }
            let d = g.plan;
            teardown(xen, xs, devs.1, g, dom_exc);
            g = match launch(xen, xs, &mut devs, bundle, d, xsdom)
                .and_then(|mut g| unpause(xen, &mut g).map(|()| g))
            {
                Ok(g) => g,
                Err(e) => {
                    failed += 1;
                    println!("windsor dom0: guest {name:?} not rebuilt after reboot: {e}");
                    continue;
                }
            };
            let mut one = [g];
            let f = wait_ready(xen, &mut one, dom_exc, ready);
            let [g2] = one;
            g = g2;
            if f > 0 {
                failed += f;
                teardown(xen, xs, devs.1, g, dom_exc);
                continue;
            }
            println!(
                "windsor dom0: guest {name:?} booted again as d{} after reboot",
                g.dom
            );
        }
        let r = request(
            xen,
            xs,
            &mut g,
            "shutdown",
            "poweroff",
            None,
            stop,
            dom_exc,
            |s, _| matches!(s, Some(RunState::Shutdown(_))),
        );
        let how = xen.info(g.dom).map(|i| i.state);
        match (r, how) {
            (Ok(dt), Ok(RunState::Shutdown(ShutdownReason::Poweroff))) => println!(
                "windsor dom0: guest {name:?} d{} powered off on control/shutdown after {} ms",
                g.dom,
                ms(dt)
            ),
            (Err(e), _) => {
                failed += 1;
                println!(
                    "windsor dom0: guest {name:?} d{} ignored control/shutdown ({e}): \
                     hard-stopping it",
                    g.dom
                );
            }
            (Ok(_), how) => {
                failed += 1;
                println!(
                    "windsor dom0: guest {name:?} d{} went down as {how:?}, not poweroff",
                    g.dom
                );
            }
        }
        let dom = g.dom;
        if teardown(xen, xs, devs.1, g, dom_exc) {
            println!(
                "windsor dom0: guest {name:?} d{dom} cleaned up: xenstore nodes gone, domain gone"
            );
        } else {
            failed += 1;
        }
    }
    failed
}
