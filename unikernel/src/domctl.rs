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
//!
//! Every failure is first an [`OpError`] naming the domctl (or
//! `SCHEDOP_remote_shutdown`), the domain and the code; the trait methods
//! record it ([`Xen::last_error`]) and return its code as the platform
//! error.

use crate::error::OpError;
use crate::hypercall;
use crate::runtime::Xen;
use xen::abi::domctl::{
    xen_domctl_grant_version, XenArchDomainconfig, XenDomctl, XenDomctlCreatedomain,
    XenDomctlGetdomaininfo, XenDomctlMaxMem, XenDomctlMaxVcpus, XEN_DOMCTL_CDF_HAP,
    XEN_DOMCTL_CDF_HVM, XEN_DOMCTL_CREATEDOMAIN, XEN_DOMCTL_DESTROYDOMAIN,
    XEN_DOMCTL_GETDOMAININFO, XEN_DOMCTL_MAX_MEM, XEN_DOMCTL_MAX_VCPUS, XEN_DOMCTL_PAUSEDOMAIN,
    XEN_DOMCTL_UNPAUSEDOMAIN, XEN_DOMINF_DYING, XEN_DOMINF_PAUSED, XEN_X86_EMU_LAPIC,
};
use xen::platform::{CreateConfig, DomainControl, DomainInfo, Result, RunState, ShutdownReason};
use xen::{DomId, Errno};

/// Issues `op`; a failure names its command and domain.
fn domctl(mut op: XenDomctl) -> core::result::Result<XenDomctl, OpError> {
    hypercall::domctl(&mut op).map_err(|errno| OpError::Domctl {
        cmd: op.cmd,
        dom: DomId(op.domain),
        errno,
    })?;
    Ok(op)
}

fn simple(cmd: u32, dom: DomId) -> core::result::Result<(), OpError> {
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
fn info_from(dom: DomId) -> core::result::Result<XenDomctlGetdomaininfo, OpError> {
    let op = domctl(XenDomctl::new(XEN_DOMCTL_GETDOMAININFO, dom.0))?;
    Ok(op.payload())
}

impl Xen {
    fn create_domain(&self, cfg: &CreateConfig) -> core::result::Result<DomId, OpError> {
        let cd = XenDomctlCreatedomain {
            handle: cfg.handle,
            flags: XEN_DOMCTL_CDF_HVM | XEN_DOMCTL_CDF_HAP,
            max_vcpus: cfg.max_vcpus,
            max_evtchn_port: cfg.max_evtchn_port,
            max_grant_frames: i32::try_from(cfg.max_grant_frames)
                .map_err(|_| OpError::InvalidArgument("max_grant_frames above i32::MAX"))?,
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
        let setup = max_vcpus(dom, cfg.max_vcpus).and_then(|()| max_mem(dom, cfg.max_mem_kib));
        if let Err(e) = setup {
            // Do not leak a half-made domain.
            let _ = simple(XEN_DOMCTL_DESTROYDOMAIN, dom);
            return Err(e);
        }
        Ok(dom)
    }

    fn list_domains(
        &self,
        start: DomId,
        out: &mut [DomainInfo],
    ) -> core::result::Result<usize, OpError> {
        let mut n = 0;
        let mut next = start.0;
        while n < out.len() && next < DomId::FIRST_RESERVED.0 {
            let i = match info_from(DomId(next)) {
                Ok(i) => i,
                Err(OpError::Domctl {
                    errno: Errno::ESRCH,
                    ..
                }) => break,
                Err(e) => return Err(e),
            };
            out[n] = decode(&i);
            n += 1;
            next = i.domain + 1;
        }
        Ok(n)
    }
}

/// `getdomaininfo` of exactly `dom`.
pub(crate) fn domain_info(dom: DomId) -> core::result::Result<DomainInfo, OpError> {
    let i = info_from(dom)?;
    if i.domain != dom.0 {
        // Xen reported the next domain: `dom` does not exist.
        return Err(OpError::Domctl {
            cmd: XEN_DOMCTL_GETDOMAININFO,
            dom,
            errno: Errno::ESRCH,
        });
    }
    Ok(decode(&i))
}

fn max_vcpus(dom: DomId, n: u32) -> core::result::Result<(), OpError> {
    let p = XenDomctlMaxVcpus { max: n };
    domctl(XenDomctl::with_payload(XEN_DOMCTL_MAX_VCPUS, dom.0, &p)).map(drop)
}

fn max_mem(dom: DomId, kib: u64) -> core::result::Result<(), OpError> {
    let p = XenDomctlMaxMem { max_memkb: kib };
    domctl(XenDomctl::with_payload(XEN_DOMCTL_MAX_MEM, dom.0, &p)).map(drop)
}

impl DomainControl for Xen {
    fn create(&self, cfg: &CreateConfig) -> Result<DomId> {
        self.note(self.create_domain(cfg))
    }

    fn set_max_vcpus(&self, dom: DomId, n: u32) -> Result<()> {
        self.note(max_vcpus(dom, n))
    }

    fn set_max_mem(&self, dom: DomId, kib: u64) -> Result<()> {
        self.note(max_mem(dom, kib))
    }

    fn pause(&self, dom: DomId) -> Result<()> {
        self.note(simple(XEN_DOMCTL_PAUSEDOMAIN, dom))
    }

    fn unpause(&self, dom: DomId) -> Result<()> {
        self.note(simple(XEN_DOMCTL_UNPAUSEDOMAIN, dom))
    }

    fn shutdown(&self, dom: DomId, reason: ShutdownReason) -> Result<()> {
        self.note(
            hypercall::remote_shutdown(dom.0, reason as u32)
                .map_err(|errno| OpError::RemoteShutdown { dom, errno }),
        )
    }

    fn destroy(&self, dom: DomId) -> Result<()> {
        // Xen restarts the hypercall itself (continuation) while the
        // domain's memory is being freed.
        self.note(simple(XEN_DOMCTL_DESTROYDOMAIN, dom))
    }

    fn info(&self, dom: DomId) -> Result<DomainInfo> {
        self.note(domain_info(dom))
    }

    fn list(&self, start: DomId, out: &mut [DomainInfo]) -> Result<usize> {
        self.note(self.list_domains(start, out))
    }
}
