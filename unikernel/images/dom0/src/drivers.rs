//! Driver domains in Xen mode: the service domains that serve guests'
//! devices (netback for VIFs; blkback for VBDs), started by dom0 from the
//! boot bundle and driven over their `windsor-control` channel, as host
//! mode does (`windsor/src/drivers.rs`).
//!
//! For every `[[services]]` entry of a driver kind in the plan, [`start`]:
//!
//! 1. creates and builds the domain from its bundle entry (command line
//!    plus `domid=<id>`; xenstore served by the xenstore domain);
//! 2. gives it a home it owns, `/local/domain/<id>` (`name`, `domid`,
//!    `data/`): the service offers its control vchan under
//!    `data/vchan/0/control`, and its backend directories
//!    (`backend/<kind>/<guest>/<n>`, written by the toolstack) inherit
//!    that ownership;
//! 3. introduces it to xenstore (`XS_INTRODUCE`), unpauses it and connects
//!    to the control channel it offers (`Hello`, bounded by the plan's
//!    `domain_ready_ms`).
//!
//! Devices follow the toolstack engine: the VM records carry the devices
//! ([`Drivers::add_devices`]: a guest whose command line has
//! `windsor.net=<ip>/<len>[,...]` gets VIF 0 on the host's network, its
//! address in `other_config:ip`, which the engine writes as the backend's
//! `ip`; one with `windsor.disk=<name>` gets the blkback domain's disk
//! `<name>` as `xvda`: a VDI of the blkback SR whose `sm_config:path` is
//! the name, which the engine writes as the backend's `params`, and a
//! read-write VBD); the engine's domain tree writes them in the standard
//! backend/frontend layout at `VM.start` (for guests started outside the
//! engine's tree, [`Drivers::attach_console_guest`] commits just the
//! device part of it); then [`Drivers::plug`] sends `Plug` for each to
//! the driver domain serving its kind, before the guest runs. At teardown
//! [`Drivers::unplug`] reports the device's counters, sends `Unplug` and
//! removes the backend directories. [`Drivers::stop`] asks each service to
//! stop (`Restart`: it answers, leaves its loop and powers off) and
//! destroys its domain.
//!
//! The module is generic over the device kind: a driver domain serves the
//! kind of its plan entry ([`serves`]); a kind with no driver domain in
//! the plan keeps the engine's default backend (dom0) and nothing is
//! plugged for it.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;
use windsor_boot_config::{BootPlan, Bundle, DomainKind, PlanDomain};
use windsor_control::endpoint::Client;
use windsor_control::{
    DeviceCounters, DeviceId, DeviceKind, DeviceParams, Request, Response, VbdParams, VifParams,
};
use windsor_toolstack::action::{
    Action, Class, NetworkRecord, NewRecord, Record, Ref, Reply, SrRecord, VbdRecord, VdiRecord,
    VifRecord, VmRecord,
};
use windsor_toolstack::effect::{commit, XsOp, XsTransaction};
use windsor_toolstack::{Engine, Handled, Settings};
use windsor_unikernel::xen::platform::{
    Clock, CreateConfig, DomainControl, DomainImage, EventChannel, RunState, ShutdownReason,
};
use windsor_unikernel::xen::{DomId, EvtchnPort};
use windsor_unikernel::{println, Xen};
use windsor_xenstore::client::{Access, ClientError, Perm, TxId, XenStore};
use windsor_xenstore::xenbus::XenbusClient;

type Xs<'a> = XenbusClient<'a, Xen>;
const T: TxId = TxId::NONE;

/// How long one control call may take (TCG on a loaded machine).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping service domain may take to power off.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The command-line word that gives a guest a network interface.
pub const NET_WORD: &str = "windsor.net=";

/// The device kind a driver domain of plan kind `k` serves, if `k` is a
/// driver kind.
pub fn serves(k: DomainKind) -> Option<DeviceKind> {
    match k {
        DomainKind::Netback => Some(DeviceKind::Vif),
        DomainKind::Blkback => Some(DeviceKind::Vbd),
        _ => None,
    }
}

/// The command-line word that gives a guest a disk: `windsor.disk=<name>`
/// attaches the blkback domain's disk `<name>` (one of its
/// `disk=<name>:<MiB>` words) as the guest's first disk, `xvda`.
pub const DISK_WORD: &str = "windsor.disk=";

/// The disk name of a `windsor.disk=<name>` word of `cmdline`.
pub fn disk_name(cmdline: &str) -> Option<&str> {
    cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix(DISK_WORD))
        .filter(|n| !n.is_empty())
}

/// The address of a `windsor.net=<ip>/<len>[,<more>]` word of `cmdline`.
pub fn net_address(cmdline: &str) -> Option<&str> {
    let w = cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix(NET_WORD))?;
    let ip = w.split(',').next()?;
    (!ip.is_empty()).then_some(ip)
}

/// `aa:bb:cc:dd:ee:ff`.
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut it = s.split(':');
    for b in &mut mac {
        let h = it.next()?;
        if h.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(h, 16).ok()?;
    }
    it.next().is_none().then_some(mac)
}

fn ms(d: Duration) -> String {
    format!("{}.{:03}", d.as_micros() / 1000, d.as_micros() % 1000)
}

/// One running driver domain.
struct DriverDomain<'p> {
    plan: &'p PlanDomain,
    dom: DomId,
    serves: DeviceKind,
    control: Client<'static, Xen>,
}

/// The running driver domains and the devices plugged into them.
pub struct Drivers<'p> {
    domains: Vec<DriverDomain<'p>>,
    /// The host's one network (created with the first VIF).
    network: Option<Ref>,
    /// The SR of the blkback domain's disks (created with the first VBD).
    sr: Option<Ref>,
    /// VM records of guests started outside the engine's tree, by name.
    console_vms: Vec<(String, Ref)>,
    /// Plugged devices: the driver domain's index and the device.
    plugged: Vec<(usize, DeviceId)>,
}

/// Starts every driver domain of the plan (see the module doc). Returns
/// them and the number that failed to start.
pub fn start<'p>(
    xen: &'static Xen,
    xs: &Xs<'_>,
    bundle: &Bundle<'_>,
    plan: &'p BootPlan,
    xsdom: DomId,
    dom_exc: EvtchnPort,
) -> (Drivers<'p>, u32) {
    let mut failed = 0;
    let mut domains = Vec::new();
    for d in &plan.domains {
        let Some(kind) = serves(d.kind) else { continue };
        match launch(xen, xs, bundle, plan, d, kind, xsdom, dom_exc) {
            Ok(dd) => domains.push(dd),
            Err(e) => {
                failed += 1;
                println!(
                    "windsor dom0: {} domain {:?} not started: {e}",
                    d.kind, d.name
                );
            }
        }
    }
    let drivers = Drivers {
        domains,
        network: None,
        sr: None,
        console_vms: Vec::new(),
        plugged: Vec::new(),
    };
    (drivers, failed)
}

/// Creates, builds, houses, introduces and starts one driver domain, and
/// connects to its control channel.
// The boot's shared handles plus the domain: grouping them would only
// rename the same arguments.
#[allow(clippy::too_many_arguments)]
fn launch<'p>(
    xen: &'static Xen,
    xs: &Xs<'_>,
    bundle: &Bundle<'_>,
    plan: &BootPlan,
    d: &'p PlanDomain,
    kind: DeviceKind,
    xsdom: DomId,
    dom_exc: EvtchnPort,
) -> Result<DriverDomain<'p>, String> {
    let t0 = xen.now();
    let kernel = bundle
        .entry(d.module as usize)
        .ok_or_else(|| format!("bundle has no entry {}", d.module))?;
    let cfg = CreateConfig {
        max_mem_kib: u64::from(d.memory_mib) * 1024,
        max_vcpus: d.vcpus.max(1),
        ..CreateConfig::default()
    };
    let dom = xen.create(&cfg).map_err(|e| xen.describe(e))?;
    let destroy = |why: String| {
        let _ = xs.release(dom);
        let _ = xs.rm(T, &format!("/local/domain/{}", dom.0));
        let _ = xen.destroy(dom);
        format!("{why} (domain d{dom} destroyed)")
    };
    let cmdline = format!("{} domid={}", d.cmdline.trim(), dom.0);
    let image = DomainImage {
        kernel,
        cmdline: cmdline.trim(),
        xenstore_domid: xsdom,
        console_domid: DomId::DOM0,
    };
    let built = match xen.build_with_ramdisk(dom, &image, None) {
        Ok(b) => b,
        Err(e) => {
            return Err(destroy(format!(
                "refused by the builder: {}",
                xen.describe(e)
            )))
        }
    };
    let home = format!("/local/domain/{}", dom.0);
    let prep = (|| -> Result<(), ClientError> {
        xs.mkdir(T, &home)?;
        xs.set_perms(
            T,
            &home,
            &[Perm {
                dom,
                access: Access::None,
            }],
        )?;
        xs.write(T, &format!("{home}/name"), d.name.as_bytes())?;
        xs.write(T, &format!("{home}/domid"), format!("{}", dom.0).as_bytes())?;
        xs.mkdir(T, &format!("{home}/data"))?;
        xs.introduce(dom, built.store_gfn.0, built.store_port)
    })();
    if let Err(e) = prep {
        return Err(destroy(format!("xenstore set-up failed: {e}")));
    }
    if let Err(e) = xen.unpause(dom) {
        return Err(destroy(format!("unpause: {}", xen.describe(e))));
    }
    let deadline = xen.now() + Duration::from_millis(plan.dom0.timeouts.domain_ready_ms.into());
    let (control, service) = loop {
        match Client::connect(xen, xs, dom, DomId::DOM0, CALL_TIMEOUT) {
            Ok(c) => break c,
            Err(e) => {
                if let Ok(RunState::Shutdown(r)) = xen.info(dom).map(|i| i.state) {
                    return Err(destroy(format!("shut down while starting: {r:?}")));
                }
                if xen.now() > deadline {
                    return Err(destroy(format!("no control channel in time: {e}")));
                }
                // Each try reads xenstore: not too often.
                let _ = xen.clear_pending(dom_exc);
                let _ = xen.wait(&[dom_exc], Some(Duration::from_millis(50)));
            }
        }
    };
    println!(
        "windsor dom0: {} domain {:?} d{dom} up: control channel to service {service:?}, \
         serving {}s ({} ms after build start)",
        d.kind,
        d.name,
        kind.as_str(),
        ms(xen.now() - t0)
    );
    Ok(DriverDomain {
        plan: d,
        dom,
        serves: kind,
        control,
    })
}

/// Whether a transaction op touches a device directory of `dom`: its
/// frontend side or any backend side.
fn device_op(op: &XsOp, dom: DomId) -> bool {
    let p = match op {
        XsOp::Write(p, _) | XsOp::SetPerms(p, _) | XsOp::Rm(p) => p,
    };
    let id = format!("{}", dom.0);
    let mut parts = p.split('/');
    p.starts_with(&format!("/local/domain/{id}/device/"))
        || (parts.nth(4) == Some("backend") && parts.nth(1) == Some(id.as_str()))
}

impl<'p> Drivers<'p> {
    /// The domain serving devices of `kind`, if there is one.
    pub fn backend(&self, kind: DeviceKind) -> Option<DomId> {
        self.domains
            .iter()
            .find(|d| d.serves == kind)
            .map(|d| d.dom)
    }

    /// `s` with the backend domains of the running driver domains.
    pub fn settings(&self, s: Settings) -> Settings {
        Settings {
            backend_domid: self.backend(DeviceKind::Vif).unwrap_or(s.backend_domid),
            vbd_backend_domid: self.backend(DeviceKind::Vbd).or(s.vbd_backend_domid),
            ..s
        }
    }

    /// Gives VM `vm` the devices its command line asks for (see the module
    /// doc). Call it while the VM is halted, before `VM.start`.
    pub fn add_devices(
        &mut self,
        eng: &mut Engine,
        now: u64,
        vm: &Ref,
        cmdline: &str,
    ) -> Result<(), String> {
        if let Some(name) = disk_name(cmdline) {
            self.add_disk(eng, now, vm, name)?;
        }
        let Some(ip) = net_address(cmdline) else {
            return Ok(());
        };
        if self.backend(DeviceKind::Vif).is_none() {
            return Err(format!(
                "{NET_WORD}{ip} asks for a network, but the host has no netback domain"
            ));
        }
        let network = match &self.network {
            Some(n) => n.clone(),
            None => {
                let rec = NetworkRecord {
                    name_label: "windsor-net0".into(),
                    name_description: "the guests' network, switched by netback".into(),
                    bridge: "xenbr0".into(),
                    ..NetworkRecord::default()
                };
                let n = created(eng.handle(Action::Create(NewRecord::Network(rec)), now))?;
                self.network = Some(n.clone());
                n
            }
        };
        let mut vif = VifRecord {
            device: "0".into(),
            network,
            vm: vm.clone(),
            ..VifRecord::default()
        };
        vif.other_config.insert("ip".into(), ip.into());
        created(eng.handle(Action::Create(NewRecord::Vif(vif)), now))?;
        Ok(())
    }

    /// Gives VM `vm` the blkback domain's disk `name` as its first disk:
    /// a VDI of the blkback SR (`sm_config:path` = the disk's name, which
    /// the engine writes as the backend's `params`) and a VBD (`xvda`,
    /// read-write).
    fn add_disk(&mut self, eng: &mut Engine, now: u64, vm: &Ref, name: &str) -> Result<(), String> {
        if self.backend(DeviceKind::Vbd).is_none() {
            return Err(format!(
                "{DISK_WORD}{name} asks for a disk, but the host has no blkback domain"
            ));
        }
        let sr = match &self.sr {
            Some(s) => s.clone(),
            None => {
                let rec = SrRecord {
                    name_label: "windsor-ram".into(),
                    name_description: "the blkback domain's RAM disks".into(),
                    ty: "ram".into(),
                    ..SrRecord::default()
                };
                let s = created(eng.handle(Action::Create(NewRecord::Sr(rec)), now))?;
                self.sr = Some(s.clone());
                s
            }
        };
        let mut vdi = VdiRecord {
            name_label: name.into(),
            SR: sr,
            ..VdiRecord::default()
        };
        vdi.sm_config.insert("path".into(), name.into());
        let vdi = created(eng.handle(Action::Create(NewRecord::Vdi(vdi)), now))?;
        let vbd = VbdRecord {
            vm: vm.clone(),
            VDI: vdi,
            device: "xvda".into(),
            userdevice: "0".into(),
            mode: "RW".into(),
            ..VbdRecord::default()
        };
        created(eng.handle(Action::Create(NewRecord::Vbd(vbd)), now))?;
        Ok(())
    }

    /// Asks the driver domains to serve VM `v`'s devices in domain `dom`
    /// (the engine's tree with them is committed; the guest is not running
    /// yet). Returns how many were plugged.
    pub fn plug(&mut self, eng: &Engine, v: &VmRecord, dom: DomId) -> Result<usize, String> {
        let mut n = 0;
        for p in eng.vif_plugs(v) {
            let mac = parse_mac(&p.mac).ok_or_else(|| format!("bad MAC {:?}", p.mac))?;
            let mtu = u16::try_from(p.mtu).map_err(|_| format!("bad MTU {}", p.mtu))?;
            let device = DeviceId {
                kind: DeviceKind::Vif,
                frontend: dom.0,
                devid: p.devid,
            };
            let params = DeviceParams::Vif(VifParams {
                mac,
                mtu,
                rate: None,
            });
            self.plug_device(device, params)?;
            println!(
                "windsor dom0: vif d{dom}/{} (mac {}) plugged into netback d{}",
                p.devid,
                p.mac,
                self.backend(DeviceKind::Vif).map_or(0, |d| d.0)
            );
            n += 1;
        }
        for p in eng.vbd_plugs(v) {
            let device = DeviceId {
                kind: DeviceKind::Vbd,
                frontend: dom.0,
                devid: p.devid,
            };
            self.plug_device(
                device,
                DeviceParams::Vbd(VbdParams {
                    params: p.params.clone(),
                    readonly: p.readonly,
                }),
            )?;
            println!(
                "windsor dom0: vbd d{dom}/{} (disk {:?}, {}) plugged into blkback d{}",
                p.devid,
                p.params,
                if p.readonly {
                    "read-only"
                } else {
                    "read-write"
                },
                self.backend(DeviceKind::Vbd).map_or(0, |d| d.0)
            );
            n += 1;
        }
        Ok(n)
    }

    /// Sends `Plug` for one device to the driver domain serving its kind.
    pub fn plug_device(&mut self, device: DeviceId, params: DeviceParams) -> Result<(), String> {
        let i = self
            .domains
            .iter()
            .position(|d| d.serves == device.kind)
            .ok_or_else(|| format!("no driver domain serves {}s", device.kind.as_str()))?;
        let dd = &mut self.domains[i];
        match dd
            .control
            .call(Request::Plug { device, params }, CALL_TIMEOUT)
        {
            Ok(Response::Ok) => {
                self.plugged.push((i, device));
                Ok(())
            }
            Ok(r) => Err(format!(
                "{} d{} refused the plug: {r:?}",
                dd.plan.name, dd.dom
            )),
            Err(e) => Err(format!("control call to {} d{}: {e}", dd.plan.name, dd.dom)),
        }
    }

    /// The devices of a guest started outside the engine's tree (its
    /// `/local/domain/<id>` made by the caller): its VM record (made once
    /// per name, with the devices its command line asks for), the device
    /// part of the engine's domain tree for `dom`, then [`Drivers::plug`].
    pub fn attach_console_guest(
        &mut self,
        xs: &Xs<'_>,
        eng: &mut Engine,
        now: u64,
        d: &PlanDomain,
        dom: DomId,
    ) -> Result<usize, String> {
        if net_address(&d.cmdline).is_none() && disk_name(&d.cmdline).is_none() {
            return Ok(0);
        }
        let vm = match self.console_vms.iter().find(|(n, _)| *n == d.name) {
            Some((_, r)) => r.clone(),
            None => {
                let rec = VmRecord {
                    name_label: d.name.clone(),
                    PV_kernel: d.image.clone(),
                    PV_args: d.cmdline.clone(),
                    ..VmRecord::default()
                };
                let r = created(eng.handle(Action::Create(NewRecord::Vm(rec)), now))?;
                self.add_devices(eng, now, &r, &d.cmdline)?;
                self.console_vms.push((d.name.clone(), r.clone()));
                r
            }
        };
        let uuid = windsor_toolstack::action::uuid_of(&vm).unwrap_or_default();
        let v = match eng.record(Class::Vm, uuid) {
            Some(Record::Vm(v)) => v.clone(),
            _ => return Err(format!("VM record of {:?} is gone", d.name)),
        };
        // `attach` marks the VM's devices attached (the engine writes and
        // plugs only attached devices) and gives its domain tree.
        let tree = eng.attach(&v, dom);
        let devices = XsTransaction {
            ops: tree
                .ops
                .into_iter()
                .filter(|op| device_op(op, dom))
                .collect(),
        };
        commit(xs, &devices).map_err(|e| format!("writing the devices of d{dom}: {e}"))?;
        self.plug(eng, &v, dom)
    }

    /// Reports the counters of `dom`'s devices, unplugs them and removes
    /// their backend directories (call it at the guest's teardown; the
    /// frontend side goes with `/local/domain/<dom>`).
    pub fn unplug(&mut self, xs: &Xs<'_>, dom: DomId) {
        let mine: Vec<(usize, DeviceId)> = self
            .plugged
            .iter()
            .copied()
            .filter(|(_, dev)| dev.frontend == dom.0)
            .collect();
        self.plugged.retain(|(_, dev)| dev.frontend != dom.0);
        for (i, device) in mine {
            let dd = &mut self.domains[i];
            let kind = device.kind.as_str();
            match dd.control.call(
                Request::Counters {
                    device: Some(device),
                },
                CALL_TIMEOUT,
            ) {
                Ok(Response::Counters(list)) => {
                    for (_, c) in list {
                        match c {
                            DeviceCounters::Vif(c) => println!(
                                "windsor dom0: vif d{dom}/{} counters from {} d{}: \
                                 tx {} packets {} bytes {} dropped, rx {} packets {} bytes \
                                 {} dropped",
                                device.devid,
                                dd.plan.name,
                                dd.dom,
                                c.tx_packets,
                                c.tx_bytes,
                                c.tx_dropped,
                                c.rx_packets,
                                c.rx_bytes,
                                c.rx_dropped
                            ),
                            DeviceCounters::Vbd(c) => println!(
                                "windsor dom0: vbd d{dom}/{} counters from {} d{}: {c:?}",
                                device.devid, dd.plan.name, dd.dom
                            ),
                        }
                    }
                }
                r => println!(
                    "windsor dom0: {kind} d{dom}/{}: no counters from {} d{}: {r:?}",
                    device.devid, dd.plan.name, dd.dom
                ),
            }
            match dd.control.call(Request::Unplug { device }, CALL_TIMEOUT) {
                Ok(Response::Ok) => {}
                r => println!(
                    "windsor dom0: {kind} d{dom}/{}: unplug from {} d{}: {r:?}",
                    device.devid, dd.plan.name, dd.dom
                ),
            }
            let dir = format!("/local/domain/{}/backend/{kind}/{}", dd.dom.0, dom.0);
            match xs.rm(T, &dir) {
                Ok(()) | Err(ClientError::Store(windsor_unikernel::xen::Errno::ENOENT)) => {}
                Err(e) => println!("windsor dom0: removing {dir}: {e}"),
            }
        }
    }

    /// Stops every driver domain: `Restart` over the control channel (the
    /// service answers, leaves its loop and powers off), then release,
    /// destroy, and wait until Xen no longer lists it. Returns failures.
    pub fn stop(self, xen: &'static Xen, xs: &Xs<'_>, dom_exc: EvtchnPort) -> u32 {
        let mut failed = 0;
        for mut dd in self.domains {
            let dom = dd.dom;
            let asked = dd.control.call(Request::Restart, CALL_TIMEOUT);
            drop(dd.control);
            let t0 = xen.now();
            let down = loop {
                match xen.info(dom).map(|i| i.state) {
                    Ok(RunState::Shutdown(r)) => break Some(r),
                    Err(_) => break None,
                    _ => {}
                }
                if xen.now() - t0 > STOP_TIMEOUT {
                    break None;
                }
                let _ = xen.clear_pending(dom_exc);
                let _ = xen.wait(&[dom_exc], Some(Duration::from_millis(10)));
            };
            let _ = xs.release(dom);
            let _ = xs.rm(T, &format!("/local/domain/{}", dom.0));
            let _ = xen.destroy(dom);
            let t1 = xen.now();
            while xen.info(dom).is_ok() && xen.now() - t1 < STOP_TIMEOUT {
                let _ = xen.clear_pending(dom_exc);
                let _ = xen.wait(&[dom_exc], Some(Duration::from_millis(5)));
            }
            let gone = xen.info(dom).is_err();
            match (asked, down) {
                // Powered off on request; its answer may have gone with it.
                (Ok(Response::Ok) | Err(_), Some(ShutdownReason::Poweroff)) if gone => println!(
                    "windsor dom0: {} domain {:?} d{dom} stopped on request (Poweroff) and destroyed",
                    dd.plan.kind, dd.plan.name
                ),
                (asked, down) => {
                    failed += 1;
                    println!(
                        "windsor dom0: {} domain {:?} d{dom} did not stop cleanly \
                         (request {asked:?}, shut down {down:?}, gone {gone})",
                        dd.plan.kind, dd.plan.name
                    );
                }
            }
        }
        failed
    }
}

/// The ref of a record `Action::Create` made.
fn created(h: Handled) -> Result<Ref, String> {
    match h {
        Handled::Reply(Ok(Reply::Ref(r))) => Ok(r),
        other => Err(format!("record not created: {other:?}")),
    }
}
