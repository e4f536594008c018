//! dom0 as console backend (xenconsoled's job) in Xen mode.
//!
//! For each guest whose console dom0 serves, a [`Console`] maps the
//! guest's console page through the guest's reserved grant entry 0
//! (`GNTTAB_RESERVED_CONSOLE`, which the builder filled for dom0 with the
//! frame of `HVM_PARAM_CONSOLE_PFN`: how xenconsoled maps it), binds the
//! guest's console port, and runs the `windsor-console` core over it: lines come
//! out on dom0's serial log as `[name] text`, bounded and rate-limited per
//! guest, a garbage ring disconnects that guest's console only.
//!
//! dom0's serial log is slow (every line is a `console_io` hypercall and
//! Xen's UART), so Xen mode takes less from each guest than host mode:
//! [`XEN_MODE_LIMITS`], a 32 KiB burst (a Linux boot log arrives at once)
//! then 4 KiB/s (a guest over its budget waits: Linux's printk spins on a
//! full ring, so the burst must cover a boot log). A guest writing faster only fills its own ring and
//! waits; at detach its last words (at most one ring) are taken whatever
//! the rate, and dom0 prints how much it took from the guest.

use alloc::format;
use alloc::string::String;
use core::time::Duration;
use windsor_console::{GuestConsole, Limits};
use windsor_unikernel::xen::platform::{
    BuiltDomain, Clock, EventChannel, ForeignMapping, GrantTable,
};
use windsor_unikernel::xen::{DomId, EvtchnPort, GrantRef};
use windsor_unikernel::{println, Mapping, Xen};

/// The bounds dom0 applies to each guest's console in Xen mode.
pub const XEN_MODE_LIMITS: Limits = Limits {
    history_bytes: 16 * 1024,
    max_line: 512,
    rate_bytes_per_sec: 4 * 1024,
    burst_bytes: 32 * 1024,
};

/// One guest's console, served by dom0.
pub struct Console {
    /// The guest.
    pub dom: DomId,
    page: Mapping,
    port: EvtchnPort,
    core: GuestConsole,
    reported: bool,
    lines: u64,
    attached: Duration,
}

impl Console {
    /// Maps `dom`'s console page (grant entry 0) and binds its console port.
    pub fn attach(
        xen: &'static Xen,
        dom: DomId,
        name: &str,
        built: &BuiltDomain,
    ) -> Result<Self, String> {
        Self::attach_port(xen, dom, name, built.console_port)
    }

    /// As [`attach`](Self::attach), with the guest's console port (its
    /// `HVM_PARAM_CONSOLE_EVTCHN`).
    pub fn attach_port(
        xen: &'static Xen,
        dom: DomId,
        name: &str,
        console_port: EvtchnPort,
    ) -> Result<Self, String> {
        let page = xen
            .map(dom, &[GrantRef::RESERVED_CONSOLE], false)
            .map_err(|e| format!("map its console grant (entry 0): {}", xen.describe(e)))?;
        let port = xen
            .bind_interdomain(dom, console_port)
            .map_err(|e| format!("bind the console port: {}", xen.describe(e)))?;
        // A fresh binding is left pending; the first pump reads anyway.
        let _ = xen.clear_pending(port);
        Ok(Console {
            dom,
            page,
            port,
            core: GuestConsole::new(name, XEN_MODE_LIMITS),
            reported: false,
            lines: 0,
            attached: xen.now(),
        })
    }

    /// The local port the guest notifies on output.
    pub fn port(&self) -> EvtchnPort {
        self.port
    }

    /// Whether the console was disconnected (garbage in the ring).
    pub fn disconnected(&self) -> bool {
        self.core.error().is_some()
    }

    /// Bytes taken from the guest so far.
    pub fn total_bytes(&self) -> u64 {
        self.core.total_bytes()
    }

    /// Lines taken so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// The kept output from byte offset `from` on (see
    /// [`GuestConsole::history_since`]).
    pub fn history_since(&self, from: u64) -> (u64, String) {
        self.core.history_since(from)
    }

    /// Reads what the guest wrote, prints its lines, tells the guest there
    /// is room again. Returns whether a line containing `watch` appeared.
    pub fn pump(&mut self, xen: &'static Xen, watch: Option<&str>) -> bool {
        let _ = xen.clear_pending(self.port);
        let mut seen = false;
        let Some(mem) = self.page.rw() else {
            return false;
        };
        let lines = &mut self.lines;
        match self.core.poll(xen.now(), &mem, |name, line| {
            *lines += 1;
            println!("[{name}] {line}");
            if watch.is_some_and(|w| line.contains(w)) {
                seen = true;
            }
        }) {
            Ok(p) if p.bytes > 0 => {
                let _ = xen.notify(self.port);
            }
            Ok(_) => {}
            Err(e) if !self.reported => {
                self.reported = true;
                println!(
                    "windsor dom0: guest {:?} d{}: {e}",
                    self.core.name(),
                    self.dom
                );
            }
            Err(_) => {}
        }
        seen
    }

    /// Takes the guest's last words (whatever the rate), prints a last
    /// partial line and what was taken from the guest, closes the port;
    /// the mapping goes when `self` is dropped (before the domain is
    /// destroyed). Returns the core, whose history stays readable.
    pub fn detach(mut self, xen: &'static Xen) -> GuestConsole {
        let lines = &mut self.lines;
        if let Some(mem) = self.page.rw() {
            let _ = self.core.drain(&mem, |name, line| {
                *lines += 1;
                println!("[{name}] {line}");
            });
        }
        self.core.flush(|name, line| {
            *lines += 1;
            println!("[{name}] {line}");
        });
        let secs = (xen.now() - self.attached).as_millis();
        println!(
            "windsor dom0: guest {:?} d{}: console closed: {} lines, {} bytes taken in {}.{:03} s",
            self.core.name(),
            self.dom,
            self.lines,
            self.core.total_bytes(),
            secs / 1000,
            secs % 1000
        );
        let _ = xen.close(self.port);
        self.core
    }
}

/// Pumps every console in `consoles` until `done` says stop or `timeout`
/// passes, waiting on their ports (and `also`) between rounds. Returns
/// whether `done` said stop.
pub fn pump_until(
    xen: &'static Xen,
    consoles: &mut [&mut Console],
    also: &[EvtchnPort],
    timeout: Duration,
    mut done: impl FnMut(&mut [&mut Console]) -> bool,
) -> bool {
    let deadline = xen.now() + timeout;
    let mut ports: alloc::vec::Vec<EvtchnPort> = consoles.iter().map(|c| c.port()).collect();
    ports.extend_from_slice(also);
    loop {
        if done(consoles) {
            return true;
        }
        let now = xen.now();
        if now > deadline {
            return false;
        }
        for &p in also {
            let _ = xen.clear_pending(p);
        }
        let _ = xen.wait(
            &ports,
            Some((deadline - now).min(Duration::from_millis(50))),
        );
    }
}
