//! Every hypercall the runtime issues, as a typed wrapper.
//!
//! This is the only module that calls [`crate::arch::hypercall::call`].
//! Argument structures live on the caller's stack (identity-mapped, so
//! their virtual address is the guest-physical address Xen expects) and are
//! `#[repr(C)]` mirrors of the public headers (see [`crate::abi_local`]).
//! Results come back as `xen::Errno` (hypercall errors) or the raw
//! `GNTST_*` status for grant operations.

use crate::abi_local::{evtchn, gnttab, memory, nr, sched, CONSOLEIO_WRITE, XENVER_VERSION};
use crate::arch::hypercall::call;
use xen::Errno;

fn ptr<T>(arg: &mut T) -> u64 {
    arg as *mut T as u64
}

/// `console_io(CONSOLEIO_write)`: writes to Xen's console (dom0 only;
/// others get `EPERM`).
pub fn console_write(bytes: &[u8]) -> Result<(), Errno> {
    // SAFETY: Xen reads `len` bytes from the buffer, which is live for the call.
    let r = unsafe {
        call(
            nr::CONSOLE_IO,
            CONSOLEIO_WRITE,
            bytes.len() as u64,
            bytes.as_ptr() as u64,
            0,
            0,
        )
    };
    Errno::check(r).map(drop)
}

/// `SCHEDOP_shutdown`: on success the domain is shut down and this does
/// not return.
pub fn shutdown(reason: u32) -> Errno {
    let mut arg = sched::Shutdown { reason };
    // SAFETY: `arg` is a live `sched_shutdown`.
    let r = unsafe { call(nr::SCHED_OP, sched::SHUTDOWN, ptr(&mut arg), 0, 0, 0) };
    match Errno::check(r) {
        Ok(_) => Errno::EINVAL,
        Err(e) => e,
    }
}

/// `SCHEDOP_poll`: blocks until one of `ports` is pending or Xen system
/// time reaches `deadline_ns` (0: no deadline).
pub fn poll(ports: &[u32], deadline_ns: u64) -> Result<(), Errno> {
    let mut arg = sched::Poll {
        ports: ports.as_ptr() as u64,
        nr_ports: ports.len() as u32,
        timeout: deadline_ns,
    };
    // SAFETY: `arg` is a live `sched_poll` whose handle points at
    // `ports.len()` ports that stay live for the call.
    let r = unsafe { call(nr::SCHED_OP, sched::POLL, ptr(&mut arg), 0, 0, 0) };
    Errno::check(r).map(drop)
}

/// `xen_version(XENVER_version)`: `(major, minor)`.
pub fn xen_version() -> (u16, u16) {
    // SAFETY: XENVER_version takes no buffer.
    let r = unsafe { call(nr::XEN_VERSION, XENVER_VERSION, 0, 0, 0, 0) };
    ((r >> 16) as u16, r as u16)
}

/// `XENMEM_add_to_physmap` for `DOMID_SELF`: puts frame `idx` of `space`
/// at guest frame `gfn`.
pub fn add_to_physmap(space: u32, idx: u64, gfn: u64) -> Result<(), Errno> {
    let mut arg = memory::AddToPhysmap {
        domid: xen::DomId::SELF.0,
        size: 0,
        space,
        idx,
        gpfn: gfn,
    };
    // SAFETY: `arg` is a live `xen_add_to_physmap`.
    let r = unsafe {
        call(
            nr::MEMORY_OP,
            memory::ADD_TO_PHYSMAP,
            ptr(&mut arg),
            0,
            0,
            0,
        )
    };
    Errno::check(r).map(drop)
}

/// `XENMEM_memory_map`: our own e820 into `out`; returns the entry count.
pub fn memory_map(out: &mut [crate::start_info::MemRegion]) -> Result<usize, Errno> {
    const MAX: usize = 128;
    let mut raw = [0u8; MAX * memory::E820_ENTRY];
    let mut arg = memory::MemoryMap {
        nr_entries: MAX.min(out.len()) as u32,
        buffer: raw.as_mut_ptr() as u64,
    };
    // SAFETY: `arg` is a live `xen_memory_map` whose buffer holds
    // `nr_entries` packed e820 entries.
    let r = unsafe { call(nr::MEMORY_OP, memory::MEMORY_MAP, ptr(&mut arg), 0, 0, 0) };
    Errno::check(r)?;
    let n = (arg.nr_entries as usize).min(out.len()).min(MAX);
    for (slot, e) in out
        .iter_mut()
        .zip(raw.chunks_exact(memory::E820_ENTRY))
        .take(n)
    {
        let word = |o: usize| u64::from_le_bytes(e[o..o + 8].try_into().expect("8 bytes"));
        *slot = crate::start_info::MemRegion {
            addr: word(0),
            size: word(8),
            kind: u32::from_le_bytes(e[16..20].try_into().expect("4 bytes")),
        };
    }
    Ok(n)
}

fn evtchn_op<T>(cmd: u64, arg: &mut T) -> Result<(), Errno> {
    // SAFETY: every caller passes the structure that matches `cmd`.
    let r = unsafe { call(nr::EVENT_CHANNEL_OP, cmd, ptr(arg), 0, 0, 0) };
    Errno::check(r).map(drop)
}

/// `EVTCHNOP_alloc_unbound` for a port of ours that `remote` may bind.
pub fn evtchn_alloc_unbound(remote: u16) -> Result<u32, Errno> {
    let mut a = evtchn::AllocUnbound {
        dom: xen::DomId::SELF.0,
        remote_dom: remote,
        port: 0,
    };
    evtchn_op(evtchn::ALLOC_UNBOUND, &mut a)?;
    Ok(a.port)
}

/// `EVTCHNOP_bind_interdomain`.
pub fn evtchn_bind_interdomain(remote: u16, remote_port: u32) -> Result<u32, Errno> {
    let mut a = evtchn::BindInterdomain {
        remote_dom: remote,
        remote_port,
        local_port: 0,
    };
    evtchn_op(evtchn::BIND_INTERDOMAIN, &mut a)?;
    Ok(a.local_port)
}

/// `EVTCHNOP_bind_virq` on vCPU 0.
pub fn evtchn_bind_virq(virq: u32) -> Result<u32, Errno> {
    let mut a = evtchn::BindVirq {
        virq,
        vcpu: 0,
        port: 0,
    };
    evtchn_op(evtchn::BIND_VIRQ, &mut a)?;
    Ok(a.port)
}

/// `EVTCHNOP_send`.
pub fn evtchn_send(port: u32) -> Result<(), Errno> {
    evtchn_op(evtchn::SEND, &mut evtchn::Port { port })
}

/// `EVTCHNOP_close`.
pub fn evtchn_close(port: u32) -> Result<(), Errno> {
    evtchn_op(evtchn::CLOSE, &mut evtchn::Port { port })
}

/// `EVTCHNOP_status` of one of our ports: `(status, u)`.
pub fn evtchn_status(port: u32) -> Result<(u32, [u32; 2]), Errno> {
    let mut a = evtchn::Status {
        dom: xen::DomId::SELF.0,
        port,
        status: 0,
        vcpu: 0,
        u: [0; 2],
    };
    evtchn_op(evtchn::STATUS, &mut a)?;
    Ok((a.status, a.u))
}

fn gnttab_op<T>(cmd: u64, ops: &mut [T]) -> Result<(), Errno> {
    // SAFETY: every caller passes an array of the structure matching `cmd`;
    // the count is the array length.
    let r = unsafe {
        call(
            nr::GRANT_TABLE_OP,
            cmd,
            ops.as_mut_ptr() as u64,
            ops.len() as u64,
            0,
            0,
        )
    };
    Errno::check(r).map(drop)
}

/// `GNTTABOP_map_grant_ref` of one grant at guest-physical `host_addr`:
/// `Ok(Ok(handle))`, or `Ok(Err(GNTST_*))` when the op itself failed.
pub fn gnttab_map(
    host_addr: u64,
    dom: u16,
    gref: u32,
    readonly: bool,
) -> Result<Result<u32, i16>, Errno> {
    let mut flags = gnttab::GNTMAP_HOST_MAP;
    if readonly {
        flags |= gnttab::GNTMAP_READONLY;
    }
    let mut op = [gnttab::MapGrantRef {
        host_addr,
        flags,
        gref,
        dom,
        status: 0,
        handle: 0,
        dev_bus_addr: 0,
    }];
    gnttab_op(gnttab::MAP_GRANT_REF, &mut op)?;
    Ok(if op[0].status == 0 {
        Ok(op[0].handle)
    } else {
        Err(op[0].status)
    })
}

/// `GNTTABOP_unmap_grant_ref` of a mapping made by [`gnttab_map`].
pub fn gnttab_unmap(host_addr: u64, handle: u32) -> Result<Result<(), i16>, Errno> {
    let mut op = [gnttab::UnmapGrantRef {
        host_addr,
        dev_bus_addr: 0,
        handle,
        status: 0,
    }];
    gnttab_op(gnttab::UNMAP_GRANT_REF, &mut op)?;
    Ok(if op[0].status == 0 {
        Ok(())
    } else {
        Err(op[0].status)
    })
}

/// `GNTTABOP_copy` of one segment.
pub fn gnttab_copy(op: gnttab::Copy) -> Result<Result<(), i16>, Errno> {
    let mut ops = [op];
    gnttab_op(gnttab::COPY, &mut ops)?;
    Ok(if ops[0].status == 0 {
        Ok(())
    } else {
        Err(ops[0].status)
    })
}
