//! Event channels over `EVTCHNOP_*` and the 2-level bitmaps of
//! `shared_info`.
//!
//! Producer of pending bits: Xen (on a peer's `EVTCHNOP_send`, a VIRQ);
//! consumer: this domain's event loop. The `evtchn_pending` and
//! `evtchn_mask` arrays (64 × u64 each, `xen.h`) are read and changed with
//! atomic RMW operations through the `shared_info` view, as Xen itself
//! does. Delivery is by `SCHEDOP_poll` (see the crate doc): upcalls stay
//! masked, so the mask bit here is purely the trait's notion ("a masked
//! port does not end a wait").

use crate::hypercall;
use crate::runtime::Xen;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use core::time::Duration;
use xen::abi::event_channel::EvtchnBinding;
use xen::abi::xen::{evtchn_mask_word_offset, evtchn_pending_word_offset, EVTCHN_2L_NR_CHANNELS};
use xen::platform::{Clock, Error, EventChannel, PortStatus, Result, Virq};
use xen::{DomId, Errno, EvtchnPort};

/// `(pending word offset, mask word offset, bit)` of a 2-level port.
fn word_bit(port: EvtchnPort) -> Result<(usize, usize, u64)> {
    if port.0 as usize >= EVTCHN_2L_NR_CHANNELS {
        return Err(Error::Errno(Errno::EINVAL));
    }
    Ok((
        evtchn_pending_word_offset(port.0),
        evtchn_mask_word_offset(port.0),
        1u64 << (port.0 % 64),
    ))
}

impl Xen {
    fn is_pending(&self, port: EvtchnPort) -> bool {
        word_bit(port)
            .is_ok_and(|(p, _, b)| self.shared.ro().load_u64(p, Ordering::Acquire) & b != 0)
    }

    fn is_masked(&self, port: EvtchnPort) -> bool {
        word_bit(port)
            .is_ok_and(|(_, m, b)| self.shared.ro().load_u64(m, Ordering::Acquire) & b != 0)
    }
}

fn virq_from(v: u32) -> Option<Virq> {
    Some(match v {
        0 => Virq::Timer,
        1 => Virq::Debug,
        2 => Virq::Console,
        3 => Virq::DomExc,
        _ => return None,
    })
}

impl EventChannel for Xen {
    fn alloc_unbound(&self, remote: DomId) -> Result<EvtchnPort> {
        Ok(EvtchnPort(hypercall::evtchn_alloc_unbound(
            DomId::SELF.0,
            remote.0,
        )?))
    }

    fn bind_interdomain(&self, remote: DomId, remote_port: EvtchnPort) -> Result<EvtchnPort> {
        Ok(EvtchnPort(hypercall::evtchn_bind_interdomain(
            remote.0,
            remote_port.0,
        )?))
    }

    fn bind_virq(&self, virq: Virq) -> Result<EvtchnPort> {
        Ok(EvtchnPort(hypercall::evtchn_bind_virq(virq as u32)?))
    }

    fn notify(&self, port: EvtchnPort) -> Result<()> {
        Ok(hypercall::evtchn_send(port.0)?)
    }

    fn mask(&self, port: EvtchnPort) -> Result<()> {
        let (_, m, b) = word_bit(port)?;
        self.shared.atomic_u64(m).fetch_or(b, Ordering::AcqRel);
        Ok(())
    }

    fn unmask(&self, port: EvtchnPort) -> Result<()> {
        // With upcalls off there is nobody to re-raise for: clearing the
        // bit is enough; a pending event ends the next `wait`.
        let (_, m, b) = word_bit(port)?;
        self.shared.atomic_u64(m).fetch_and(!b, Ordering::AcqRel);
        Ok(())
    }

    fn close(&self, port: EvtchnPort) -> Result<()> {
        Ok(hypercall::evtchn_close(port.0)?)
    }

    fn status(&self, port: EvtchnPort) -> Result<PortStatus> {
        let binding = hypercall::evtchn_status(port.0)?;
        Ok(match binding {
            Some(EvtchnBinding::Closed) => PortStatus::Closed,
            Some(EvtchnBinding::Unbound { dom }) => PortStatus::Unbound { remote: DomId(dom) },
            Some(EvtchnBinding::Interdomain { dom, port }) => PortStatus::Interdomain {
                dom: DomId(dom),
                port: EvtchnPort(port),
            },
            Some(EvtchnBinding::Virq(v)) => {
                PortStatus::Virq(virq_from(v).ok_or(Error::Errno(Errno::EINVAL))?)
            }
            // pirq / ipi ports are never created by Windsor; unknown
            // statuses cannot be represented.
            _ => return Err(Error::Errno(Errno::EINVAL)),
        })
    }

    fn clear_pending(&self, port: EvtchnPort) -> Result<bool> {
        let (p, _, b) = word_bit(port)?;
        let old = self.shared.atomic_u64(p).fetch_and(!b, Ordering::AcqRel);
        Ok(old & b != 0)
    }

    fn wait(&self, ports: &[EvtchnPort], timeout: Option<Duration>) -> Result<bool> {
        let deadline =
            timeout.map(|t| (self.now() + t).as_nanos().min(u128::from(u64::MAX)) as u64);
        loop {
            let mut live = Vec::with_capacity(ports.len());
            for &p in ports {
                word_bit(p)?;
                if !self.is_masked(p) {
                    if self.is_pending(p) {
                        return Ok(true);
                    }
                    live.push(p.0);
                }
            }
            let now = self.now().as_nanos() as u64;
            if deadline.is_some_and(|d| now >= d) {
                return Ok(false);
            }
            // Xen wakes a poller whose port turns pending, or at the
            // deadline; a wake-up for a masked port just loops.
            hypercall::poll(&live, deadline.unwrap_or(0))?;
        }
    }
}
