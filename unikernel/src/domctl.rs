//! Domain control for the privileged toolstack: `XEN_DOMCTL_*` (interface
//! version 0x15, `domctl.h` of Xen 4.17) and `SCHEDOP_remote_shutdown`.
//!
//! Every call builds one `xen_domctl` with `XenDomctl::with_payload` and
//! reads the result back from the same structure. Domains are created the
//! way XEN-BOOT-NOTES verified for PVH guests: `HVM | HAP`, LAPIC-only
//! emulation, grant table v1, then `max_vcpus` (required in 4.17 before
//! anything reads the HVM context) and `max_mem`.
//!
//! `XEN_DOMCTL_getdomaininfo` in 4.17 reports the first domain whose id is
//! *at least* the one asked for; [`DomainControl::info`] checks the id and
//! [`DomainControl::list`] walks with it.

use crate::hypercall;
use crate::runtime::Xen;
use xen::abi::domctl::{
    xen_domctl_grant_version, XenArchDomainconfig, XenDomctl, XenDomctlCreatedomain,
    XenDomctlGetdomaininfo, XenDomctlMaxMem, XenDomctlMaxVcpus, XEN_DOMCTL_CDF_HAP,
    XEN_DOMCTL_CDF_HVM, XEN_DOMCTL_CREATEDOMAIN, XEN_DOMCTL_DESTROYDOMAIN,
    XEN_DOMCTL_GETDOMAININFO, XEN_DOMCTL_MAX_MEM, XEN_DOMCTL_MAX_VCPUS, XEN_DOMCTL_PAUSEDOMAIN,
    XEN_DOMCTL_UNPAUSEDOMAIN, XEN_DOMINF_DYING, XEN_DOMINF_PAUSED, XEN_X86_EMU_LAPIC,
};
use xen::platform::{
    CreateConfig, DomainControl, DomainInfo, Error, Result, RunState, ShutdownReason,
};
use xen::{DomId, Errno};

fn domctl(mut op: XenDomctl) -> Result<XenDomctl> {
    hypercall::domctl(&mut op)?;
    Ok(op)
}

fn simple(cmd: u32, dom: DomId) -> Result<()> {
    domctl(XenDomctl::new(cmd, dom.0)).map(drop)
}

/// Decodes `getdomaininfo` into the platform's view.
fn decode(i: &XenDomctlGetdomaininfo) -> DomainInfo {
    let state = if i.flags & XEN_DOMINF_DYING != 0 {
        RunState::Dying
    } else if let Some(code) = i.shutdown_reason() {
        RunState::Shutdown(ShutdownReason::from_raw(code).unwrap_or(ShutdownReason::Crash))
    } else if i.flags & XEN_DOMINF_PAUSED != 0 {
        RunState::Paused
    } else {
        RunState::Running
    };
    DomainInfo {
        domid: DomId(i.domain),
        state,
        handle: i.handle,
        tot_pages: i.tot_pages,
        max_mem_kib: i.max_pages.saturating_mul(4),
        max_vcpus: i.max_vcpu_id.wrapping_add(1),
        cpu_time_ns: i.cpu_time,
        // getdomaininfo has no privilege flag; only dom0 is privileged here.
        privileged: i.domain == 0,
    }
}

/// `getdomaininfo` from `dom` upwards (4.17 semantics).
fn info_from(dom: DomId) -> Result<XenDomctlGetdomaininfo> {
    let op = domctl(XenDomctl::new(XEN_DOMCTL_GETDOMAININFO, dom.0))?;
    Ok(op.payload())
}

impl DomainControl for Xen {
    fn create(&self, cfg: &CreateConfig) -> Result<DomId> {
        let cd = XenDomctlCreatedomain {
            handle: cfg.handle,
            flags: XEN_DOMCTL_CDF_HVM | XEN_DOMCTL_CDF_HAP,
            max_vcpus: cfg.max_vcpus,
            max_evtchn_port: cfg.max_evtchn_port,
            max_grant_frames: i32::try_from(cfg.max_grant_frames)
                .map_err(|_| Error::Errno(Errno::EINVAL))?,
            // -1: Xen's default (`gnttab_max_maptrack_frames`).
            max_maptrack_frames: -1,
            grant_opts: xen_domctl_grant_version(1),
            arch: XenArchDomainconfig {
                emulation_flags: XEN_X86_EMU_LAPIC,
                misc_flags: 0,
            },
            ..Default::default()
        };
        // Domain 0 in the request: let Xen pick the id.
        let op = domctl(XenDomctl::with_payload(XEN_DOMCTL_CREATEDOMAIN, 0, &cd))?;
        let dom = DomId(op.domain);
        let setup = self
            .set_max_vcpus(dom, cfg.max_vcpus)
            .and_then(|()| self.set_max_mem(dom, cfg.max_mem_kib));
        if let Err(e) = setup {
            // Do not leak a half-made domain.
            let _ = self.destroy(dom);
            return Err(e);
        }
        Ok(dom)
    }

    fn set_max_vcpus(&self, dom: DomId, n: u32) -> Result<()> {
        let p = XenDomctlMaxVcpus { max: n };
        domctl(XenDomctl::with_payload(XEN_DOMCTL_MAX_VCPUS, dom.0, &p)).map(drop)
    }

    fn set_max_mem(&self, dom: DomId, kib: u64) -> Result<()> {
        let p = XenDomctlMaxMem { max_memkb: kib };
        domctl(XenDomctl::with_payload(XEN_DOMCTL_MAX_MEM, dom.0, &p)).map(drop)
    }

    fn pause(&self, dom: DomId) -> Result<()> {
        simple(XEN_DOMCTL_PAUSEDOMAIN, dom)
    }

    fn unpause(&self, dom: DomId) -> Result<()> {
        simple(XEN_DOMCTL_UNPAUSEDOMAIN, dom)
    }

    fn shutdown(&self, dom: DomId, reason: ShutdownReason) -> Result<()> {
        Ok(hypercall::remote_shutdown(dom.0, reason as u32)?)
    }

    fn destroy(&self, dom: DomId) -> Result<()> {
        // Xen restarts the hypercall itself (continuation) while the
        // domain's memory is being freed.
        simple(XEN_DOMCTL_DESTROYDOMAIN, dom)
    }

    fn info(&self, dom: DomId) -> Result<DomainInfo> {
        let i = info_from(dom)?;
        if i.domain != dom.0 {
            return Err(Error::Errno(Errno::ESRCH));
        }
        Ok(decode(&i))
    }

    fn list(&self, start: DomId, out: &mut [DomainInfo]) -> Result<usize> {
        let mut n = 0;
        let mut next = start.0;
        while n < out.len() && next < DomId::FIRST_RESERVED.0 {
            let i = match info_from(DomId(next)) {
                Ok(i) => i,
                Err(Error::Errno(Errno::ESRCH)) => break,
                Err(e) => return Err(e),
            };
            out[n] = decode(&i);
            n += 1;
            next = i.domain + 1;
        }
        Ok(n)
    }
}
