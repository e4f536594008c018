//! Every hypercall the runtime issues, as a typed wrapper.
//!
//! This is the only module that calls [`crate::arch::hypercall::call`].
//! Argument structures are the `xen::abi` mirrors of the public headers
//! (Xen 4.17), built on the caller's stack: the identity map makes their
//! address the guest-physical address Xen expects. Hypercall failures come
//! back as `xen::Errno`; per-op grant failures as `GrantStatus`.

use crate::arch::hypercall::call;
use crate::start_info::MemRegion;
use xen::abi::console_io::CONSOLEIO_WRITE;
use xen::abi::domctl::XenDomctl;
use xen::abi::event_channel::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindVirq, EvtchnBinding, EvtchnClose,
    EvtchnSend, EvtchnStatus, EVTCHNOP_ALLOC_UNBOUND, EVTCHNOP_BIND_INTERDOMAIN,
    EVTCHNOP_BIND_VIRQ, EVTCHNOP_CLOSE, EVTCHNOP_SEND, EVTCHNOP_STATUS,
};
use xen::abi::grant_table::{
    check_status, GnttabCopy, GnttabMapGrantRef, GnttabUnmapGrantRef, GNTMAP_HOST_MAP,
    GNTMAP_READONLY, GNTTABOP_COPY, GNTTABOP_MAP_GRANT_REF, GNTTABOP_UNMAP_GRANT_REF,
};
use xen::abi::hvm::{XenHvmParam, HVMOP_GET_PARAM, HVMOP_SET_PARAM};
use xen::abi::hypercall::{
    HYPERVISOR_CONSOLE_IO, HYPERVISOR_DOMCTL, HYPERVISOR_EVENT_CHANNEL_OP,
    HYPERVISOR_GRANT_TABLE_OP, HYPERVISOR_HVM_OP, HYPERVISOR_MEMORY_OP, HYPERVISOR_SCHED_OP,
    HYPERVISOR_SYSCTL, HYPERVISOR_XEN_VERSION,
};
use xen::abi::memory::{
    E820Entry, XenAddToPhysmap, XenAddToPhysmapBatch, XenForeignMemoryMap, XenMemoryMap,
    XenMemoryReservation, XenRemoveFromPhysmap, XENMAPSPACE_GMFN_FOREIGN, XENMEM_ADD_TO_PHYSMAP,
    XENMEM_ADD_TO_PHYSMAP_BATCH, XENMEM_MEMORY_MAP, XENMEM_POPULATE_PHYSMAP,
    XENMEM_REMOVE_FROM_PHYSMAP, XENMEM_SET_MEMORY_MAP,
};
use xen::abi::sched::{
    SchedPoll, SchedRemoteShutdown, SchedShutdown, SCHEDOP_POLL, SCHEDOP_REMOTE_SHUTDOWN,
    SCHEDOP_SHUTDOWN,
};
use xen::abi::xen::XENVER_VERSION;
use xen::platform::GrantStatus;
use xen::{DomId, Errno};
use zerocopy::{FromBytes, IntoBytes};

fn ptr<T>(arg: &mut T) -> u64 {
    arg as *mut T as u64
}

/// `console_io(CONSOLEIO_write)`: writes to Xen's console (dom0 only;
/// others get `EPERM`).
pub fn console_write(bytes: &[u8]) -> Result<(), Errno> {
    // SAFETY: Xen reads `len` bytes from the buffer, which is live for the call.
    let r = unsafe {
        call(
            HYPERVISOR_CONSOLE_IO,
            CONSOLEIO_WRITE.into(),
            bytes.len() as u64,
            bytes.as_ptr() as u64,
            0,
            0,
        )
    };
    Errno::check(r).map(drop)
}

/// `SCHEDOP_shutdown`: on success the domain is shut down and this does
/// not return; otherwise the error.
pub fn shutdown(reason: u32) -> Errno {
    let mut arg = SchedShutdown { reason };
    // SAFETY: `arg` is a live `sched_shutdown`.
    let r = unsafe {
        call(
            HYPERVISOR_SCHED_OP,
            SCHEDOP_SHUTDOWN.into(),
            ptr(&mut arg),
            0,
            0,
            0,
        )
    };
    match Errno::check(r) {
        Ok(_) => Errno::EINVAL,
        Err(e) => e,
    }
}

/// `SCHEDOP_remote_shutdown` of another domain (privileged).
pub fn remote_shutdown(dom: u16, reason: u32) -> Result<(), Errno> {
    let mut arg = SchedRemoteShutdown {
        domain_id: dom,
        reason,
        ..Default::default()
    };
    // SAFETY: `arg` is a live `sched_remote_shutdown`.
    let r = unsafe {
        call(
            HYPERVISOR_SCHED_OP,
            SCHEDOP_REMOTE_SHUTDOWN.into(),
            ptr(&mut arg),
            0,
            0,
            0,
        )
    };
    Errno::check(r).map(drop)
}

/// `domctl` (privileged): Xen reads the command and writes results back
/// into `op`.
pub fn domctl(op: &mut XenDomctl) -> Result<(), Errno> {
    // SAFETY: `op` is a live `xen_domctl` carrying the interface version;
    // the payload matches `op.cmd` (built by the caller with
    // `XenDomctl::with_payload`).
    let r = unsafe { call(HYPERVISOR_DOMCTL, ptr(op), 0, 0, 0, 0) };
    Errno::check(r).map(drop)
}

/// `__HYPERVISOR_sysctl` with `op`; Xen writes its results back into it.
pub fn sysctl(op: &mut xen::abi::sysctl::XenSysctl) -> Result<(), Errno> {
    // SAFETY: `op` is a live `xen_sysctl` carrying the interface version;
    // the payload matches `op.cmd` (built with `XenSysctl::with_payload`),
    // and any buffer it names is owned by the caller for the call.
    let r = unsafe { call(HYPERVISOR_SYSCTL, ptr(op), 0, 0, 0, 0) };
    Errno::check(r).map(drop)
}

/// `SCHEDOP_poll`: blocks until one of `ports` is pending or Xen system
/// time reaches `deadline_ns` (0: no deadline).
pub fn poll(ports: &[u32], deadline_ns: u64) -> Result<(), Errno> {
    let mut arg = SchedPoll {
        ports: ports.as_ptr() as u64,
        nr_ports: ports.len() as u32,
        timeout: deadline_ns,
        ..Default::default()
    };
    // SAFETY: `arg` is a live `sched_poll` whose handle points at
    // `ports.len()` ports that stay live for the call.
    let r = unsafe {
        call(
            HYPERVISOR_SCHED_OP,
            SCHEDOP_POLL.into(),
            ptr(&mut arg),
            0,
            0,
            0,
        )
    };
    Errno::check(r).map(drop)
}

/// `xen_version(XENVER_version)`: `(major, minor)`.
pub fn xen_version() -> (u16, u16) {
    // SAFETY: XENVER_version takes no buffer.
    let r = unsafe { call(HYPERVISOR_XEN_VERSION, XENVER_VERSION.into(), 0, 0, 0, 0) };
    ((r >> 16) as u16, r as u16)
}

/// `XENMEM_add_to_physmap`: puts frame `idx` of `space` (of `dom`) at
/// `dom`'s guest frame `gfn`.
pub fn add_to_physmap(dom: u16, space: u32, idx: u64, gfn: u64) -> Result<(), Errno> {
    let mut arg = XenAddToPhysmap {
        domid: dom,
        space,
        idx,
        gpfn: gfn,
        ..Default::default()
    };
    // SAFETY: `arg` is a live `xen_add_to_physmap`.
    let r = unsafe {
        call(
            HYPERVISOR_MEMORY_OP,
            XENMEM_ADD_TO_PHYSMAP.into(),
            ptr(&mut arg),
            0,
            0,
            0,
        )
    };
    Errno::check(r).map(drop)
}

/// `XENMEM_memory_map`: our own e820 into `out`; returns the entry count.
pub fn memory_map(out: &mut [MemRegion]) -> Result<usize, Errno> {
    const MAX: usize = 128;
    let mut raw = [E820Entry::default(); MAX];
    let mut arg = XenMemoryMap {
        nr_entries: MAX.min(out.len()) as u32,
        buffer: raw.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: `arg` is a live `xen_memory_map` whose buffer holds
    // `nr_entries` packed e820 entries.
    let r = unsafe {
        call(
            HYPERVISOR_MEMORY_OP,
            XENMEM_MEMORY_MAP.into(),
            ptr(&mut arg),
            0,
            0,
            0,
        )
    };
    Errno::check(r)?;
    let n = (arg.nr_entries as usize).min(out.len()).min(MAX);
    for (slot, e) in out.iter_mut().zip(&raw).take(n) {
        *slot = MemRegion {
            addr: e.addr(),
            size: e.size(),
            kind: e.ty(),
        };
    }
    Ok(n)
}

/// `XENMEM_populate_physmap` for `dom`: backs each extent of `2^order`
/// pages starting at the frames in `gfns` with fresh memory. Returns how
/// many extents were populated (fewer than asked: out of memory).
pub fn populate_physmap(dom: u16, gfns: &mut [u64], order: u32) -> Result<usize, Errno> {
    let mut arg = XenMemoryReservation {
        extent_start: gfns.as_mut_ptr() as u64,
        nr_extents: gfns.len() as u64,
        extent_order: order,
        domid: dom,
        ..Default::default()
    };
    // SAFETY: `arg` is a live reservation whose extent array holds
    // `nr_extents` frames, live for the call.
    let r = unsafe {
        call(
            HYPERVISOR_MEMORY_OP,
            XENMEM_POPULATE_PHYSMAP.into(),
            ptr(&mut arg),
            0,
            0,
            0,
        )
    };
    Errno::check(r).map(|n| n as usize)
}

/// `XENMEM_add_to_physmap_batch` (space `gmfn_foreign`): maps frames
/// `foreign[i]` of `dom` at our frames `local[i]`. Per-frame errors land
/// in `errs` (0 or `-errno`).
pub fn map_foreign_batch(
    dom: u16,
    foreign: &[u64],
    local: &[u64],
    errs: &mut [i32],
) -> Result<(), Errno> {
    assert!(
        foreign.len() == local.len()
            && local.len() == errs.len()
            && local.len() <= u16::MAX as usize
    );
    let mut arg = XenAddToPhysmapBatch {
        domid: DomId::SELF.0,
        space: XENMAPSPACE_GMFN_FOREIGN as u16,
        size: local.len() as u16,
        foreign_domid: dom,
        idxs: foreign.as_ptr() as u64,
        gpfns: local.as_ptr() as u64,
        errs: errs.as_mut_ptr() as u64,
    };
    // SAFETY: `arg` is a live batch whose three arrays hold `size` entries
    // each and stay live for the call.
    let r = unsafe {
        call(
            HYPERVISOR_MEMORY_OP,
            XENMEM_ADD_TO_PHYSMAP_BATCH.into(),
            ptr(&mut arg),
            0,
            0,
            0,
        )
    };
    Errno::check(r).map(drop)
}

/// `XENMEM_remove_from_physmap` of `dom`'s frame `gfn`.
pub fn remove_from_physmap(dom: u16, gfn: u64) -> Result<(), Errno> {
    let mut arg = XenRemoveFromPhysmap {
        domid: dom,
        gpfn: gfn,
        ..Default::default()
    };
    // SAFETY: `arg` is a live `xen_remove_from_physmap`.
    let r = unsafe {
        call(
            HYPERVISOR_MEMORY_OP,
            XENMEM_REMOVE_FROM_PHYSMAP.into(),
            ptr(&mut arg),
            0,
            0,
            0,
        )
    };
    Errno::check(r).map(drop)
}

/// `XENMEM_set_memory_map` for `dom` (the e820 it reads back with
/// `XENMEM_memory_map`).
pub fn set_memory_map(dom: u16, map: &[MemRegion]) -> Result<(), Errno> {
    const MAX: usize = 128;
    if map.len() > MAX {
        return Err(Errno::E2BIG);
    }
    let mut raw = [E820Entry::default(); MAX];
    for (e, r) in raw.iter_mut().zip(map) {
        *e = E820Entry::new(r.addr, r.size, r.kind);
    }
    let mut arg = XenForeignMemoryMap {
        domid: dom,
        map: XenMemoryMap {
            nr_entries: map.len() as u32,
            buffer: raw.as_mut_ptr() as u64,
            ..Default::default()
        },
        ..Default::default()
    };
    // SAFETY: `arg` is a live `xen_foreign_memory_map` whose buffer holds
    // `nr_entries` packed e820 entries.
    let r = unsafe {
        call(
            HYPERVISOR_MEMORY_OP,
            XENMEM_SET_MEMORY_MAP.into(),
            ptr(&mut arg),
            0,
            0,
            0,
        )
    };
    Errno::check(r).map(drop)
}

/// `HVMOP_set_param` for `dom`.
pub fn set_hvm_param(dom: u16, index: u32, value: u64) -> Result<(), Errno> {
    let mut arg = XenHvmParam {
        domid: dom,
        index,
        value,
        ..Default::default()
    };
    // SAFETY: `arg` is a live `xen_hvm_param`.
    let r = unsafe {
        call(
            HYPERVISOR_HVM_OP,
            HVMOP_SET_PARAM.into(),
            ptr(&mut arg),
            0,
            0,
            0,
        )
    };
    Errno::check(r).map(drop)
}

/// `HVMOP_get_param` for `dom`.
pub fn get_hvm_param(dom: u16, index: u32) -> Result<u64, Errno> {
    let mut arg = XenHvmParam {
        domid: dom,
        index,
        ..Default::default()
    };
    // SAFETY: `arg` is a live `xen_hvm_param`; Xen writes `value`.
    let r = unsafe {
        call(
            HYPERVISOR_HVM_OP,
            HVMOP_GET_PARAM.into(),
            ptr(&mut arg),
            0,
            0,
            0,
        )
    };
    Errno::check(r)?;
    Ok(arg.value)
}

fn evtchn_op<T: IntoBytes + FromBytes>(cmd: u32, arg: &mut T) -> Result<(), Errno> {
    // SAFETY: every caller passes the structure that matches `cmd`.
    let r = unsafe { call(HYPERVISOR_EVENT_CHANNEL_OP, cmd.into(), ptr(arg), 0, 0, 0) };
    Errno::check(r).map(drop)
}

/// `EVTCHNOP_alloc_unbound`: a port of `dom` (ours: `DOMID_SELF`) that
/// `remote` may bind.
pub fn evtchn_alloc_unbound(dom: u16, remote: u16) -> Result<u32, Errno> {
    let mut a = EvtchnAllocUnbound {
        dom,
        remote_dom: remote,
        port: 0,
    };
    evtchn_op(EVTCHNOP_ALLOC_UNBOUND, &mut a)?;
    Ok(a.port)
}

/// `EVTCHNOP_bind_interdomain`.
pub fn evtchn_bind_interdomain(remote: u16, remote_port: u32) -> Result<u32, Errno> {
    let mut a = EvtchnBindInterdomain {
        remote_dom: remote,
        remote_port,
        ..Default::default()
    };
    evtchn_op(EVTCHNOP_BIND_INTERDOMAIN, &mut a)?;
    Ok(a.local_port)
}

/// `EVTCHNOP_bind_virq` on vCPU 0.
pub fn evtchn_bind_virq(virq: u32) -> Result<u32, Errno> {
    let mut a = EvtchnBindVirq {
        virq,
        vcpu: 0,
        port: 0,
    };
    evtchn_op(EVTCHNOP_BIND_VIRQ, &mut a)?;
    Ok(a.port)
}

/// `EVTCHNOP_send`.
pub fn evtchn_send(port: u32) -> Result<(), Errno> {
    evtchn_op(EVTCHNOP_SEND, &mut EvtchnSend { port })
}

/// `EVTCHNOP_close`.
pub fn evtchn_close(port: u32) -> Result<(), Errno> {
    evtchn_op(EVTCHNOP_CLOSE, &mut EvtchnClose { port })
}

/// `EVTCHNOP_status` of one of our ports (`None`: a status Xen 4.17 does
/// not define).
pub fn evtchn_status(port: u32) -> Result<Option<EvtchnBinding>, Errno> {
    let mut a = EvtchnStatus {
        dom: DomId::SELF.0,
        port,
        ..Default::default()
    };
    evtchn_op(EVTCHNOP_STATUS, &mut a)?;
    Ok(a.binding())
}

fn gnttab_op<T: IntoBytes + FromBytes>(cmd: u32, ops: &mut [T]) -> Result<(), Errno> {
    // SAFETY: every caller passes an array of the structure matching `cmd`;
    // the count is the array length.
    let r = unsafe {
        call(
            HYPERVISOR_GRANT_TABLE_OP,
            cmd.into(),
            ops.as_mut_ptr() as u64,
            ops.len() as u64,
            0,
            0,
        )
    };
    Errno::check(r).map(drop)
}

/// `GNTTABOP_map_grant_ref` of one grant at guest-physical `host_addr`:
/// `Ok(Ok(handle))`, or `Ok(Err(status))` when the op itself failed.
pub fn gnttab_map(
    host_addr: u64,
    dom: u16,
    gref: u32,
    readonly: bool,
) -> Result<Result<u32, GrantStatus>, Errno> {
    let flags = GNTMAP_HOST_MAP | if readonly { GNTMAP_READONLY } else { 0 };
    let mut op = [GnttabMapGrantRef {
        host_addr,
        flags,
        r#ref: gref,
        dom,
        ..Default::default()
    }];
    gnttab_op(GNTTABOP_MAP_GRANT_REF, &mut op)?;
    Ok(check_status(op[0].status).map(|()| op[0].handle))
}

/// `GNTTABOP_unmap_grant_ref` of a mapping made by [`gnttab_map`].
pub fn gnttab_unmap(host_addr: u64, handle: u32) -> Result<Result<(), GrantStatus>, Errno> {
    let mut op = [GnttabUnmapGrantRef {
        host_addr,
        handle,
        ..Default::default()
    }];
    gnttab_op(GNTTABOP_UNMAP_GRANT_REF, &mut op)?;
    Ok(check_status(op[0].status))
}

/// `GNTTABOP_copy` of several segments in one call; Xen sets each op's
/// `status` (check it with `xen::abi::grant_table::check_status`).
pub fn gnttab_copy_batch(ops: &mut [GnttabCopy]) -> Result<(), Errno> {
    gnttab_op(GNTTABOP_COPY, ops)
}

/// `GNTTABOP_copy` of one segment.
pub fn gnttab_copy(op: GnttabCopy) -> Result<Result<(), GrantStatus>, Errno> {
    let mut ops = [op];
    gnttab_op(GNTTABOP_COPY, &mut ops)?;
    Ok(check_status(ops[0].status))
}
