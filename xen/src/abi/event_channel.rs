//! Event channel operations (`xen/include/public/event_channel.h`, Xen 4.17).
//!
//! Produced by every domain's runtime (`HYPERVISOR_event_channel_op(cmd,
//! &arg)`): the toolstack allocates unbound ports for new domains' xenstore
//! and console rings, backends bind to frontends' ports, everyone sends and
//! unmasks. Consumed by Xen (and by the simulated hypervisor in host mode).
//!
//! ```text
//! evtchn_alloc_unbound      0: dom u16  2: remote_dom u16  4: port u32 (OUT)   (8)
//! evtchn_bind_interdomain   0: remote_dom u16  4: remote_port  8: local_port   (12)
//! evtchn_bind_virq          0: virq  4: vcpu  8: port (OUT)                     (12)
//! evtchn_close / send / unmask   0: port                                        (4)
//! evtchn_status             0: dom u16  4: port  8: status  12: vcpu
//!                          16: u (8-byte union: unbound.dom | interdomain.{dom,port}
//!                                 | pirq | virq)                                (24)
//! evtchn_op                 0: cmd  4: u (union of the above, 24 bytes)         (28)
//! ```
//!
//! The `status` union is kept as its 8 raw bytes; [`EvtchnStatus::binding`]
//! decodes it according to `status` into [`EvtchnBinding`].

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `EVTCHNOP_bind_interdomain`: [`EvtchnBindInterdomain`].
pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
/// `EVTCHNOP_bind_virq`: [`EvtchnBindVirq`].
pub const EVTCHNOP_BIND_VIRQ: u32 = 1;
/// `EVTCHNOP_bind_pirq`: [`EvtchnBindPirq`].
pub const EVTCHNOP_BIND_PIRQ: u32 = 2;
/// `EVTCHNOP_close`: [`EvtchnClose`].
pub const EVTCHNOP_CLOSE: u32 = 3;
/// `EVTCHNOP_send`: [`EvtchnSend`].
pub const EVTCHNOP_SEND: u32 = 4;
/// `EVTCHNOP_status`: [`EvtchnStatus`].
pub const EVTCHNOP_STATUS: u32 = 5;
/// `EVTCHNOP_alloc_unbound`: [`EvtchnAllocUnbound`].
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
/// `EVTCHNOP_bind_ipi`: [`EvtchnBindIpi`].
pub const EVTCHNOP_BIND_IPI: u32 = 7;
/// `EVTCHNOP_bind_vcpu`: [`EvtchnBindVcpu`].
pub const EVTCHNOP_BIND_VCPU: u32 = 8;
/// `EVTCHNOP_unmask`: [`EvtchnUnmask`].
pub const EVTCHNOP_UNMASK: u32 = 9;
/// `EVTCHNOP_reset`: [`EvtchnReset`].
pub const EVTCHNOP_RESET: u32 = 10;
/// `EVTCHNOP_init_control`: [`EvtchnInitControl`] (FIFO ABI).
pub const EVTCHNOP_INIT_CONTROL: u32 = 11;
/// `EVTCHNOP_expand_array`: [`EvtchnExpandArray`] (FIFO ABI).
pub const EVTCHNOP_EXPAND_ARRAY: u32 = 12;
/// `EVTCHNOP_set_priority`: [`EvtchnSetPriority`] (FIFO ABI).
pub const EVTCHNOP_SET_PRIORITY: u32 = 13;

/// `struct evtchn_alloc_unbound`: allocate a port in `dom` that `remote_dom`
/// may bind to.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnAllocUnbound {
    /// IN: the domain that gets the port (`DOMID_SELF` or, privileged, any).
    pub dom: u16,
    /// IN: the only domain allowed to bind to it.
    pub remote_dom: u16,
    /// OUT: the new port.
    pub port: u32,
}

/// `struct evtchn_bind_interdomain`: connect to a remote unbound port.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnBindInterdomain {
    /// IN: the domain that allocated the unbound port.
    pub remote_dom: u16,
    /// Implicit C padding.
    pub _pad0: u16,
    /// IN: the remote port.
    pub remote_port: u32,
    /// OUT: the local end.
    pub local_port: u32,
}

/// `struct evtchn_bind_virq`: bind a virtual IRQ (`VIRQ_*`) to a port.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnBindVirq {
    /// IN: a `VIRQ_*` number (see [`super::xen`]).
    pub virq: u32,
    /// IN: the vCPU to deliver to.
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: u32,
}

/// `BIND_PIRQ__WILL_SHARE`: the physical IRQ may be shared.
pub const BIND_PIRQ_WILL_SHARE: u32 = 1;

/// `struct evtchn_bind_pirq`: bind a physical IRQ to a port.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnBindPirq {
    /// IN: the physical IRQ.
    pub pirq: u32,
    /// IN: `BIND_PIRQ__*` flags.
    pub flags: u32,
    /// OUT: the new port.
    pub port: u32,
}

/// `struct evtchn_bind_ipi`: allocate an inter-vCPU port.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnBindIpi {
    /// IN: the vCPU to notify.
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: u32,
}

/// `struct evtchn_close`: close a port (both ends become unbound/closed).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnClose {
    /// IN: the local port.
    pub port: u32,
}

/// `struct evtchn_send`: notify the other end of a port.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnSend {
    /// IN: the local port.
    pub port: u32,
}

/// `EVTCHNSTAT_closed`: the port is not in use.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
/// `EVTCHNSTAT_unbound`: waiting for an interdomain connection.
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
/// `EVTCHNSTAT_interdomain`: connected to a remote domain.
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
/// `EVTCHNSTAT_pirq`: bound to a physical IRQ.
pub const EVTCHNSTAT_PIRQ: u32 = 3;
/// `EVTCHNSTAT_virq`: bound to a virtual IRQ.
pub const EVTCHNSTAT_VIRQ: u32 = 4;
/// `EVTCHNSTAT_ipi`: bound to an inter-vCPU interrupt.
pub const EVTCHNSTAT_IPI: u32 = 5;

/// The `status` field of [`EvtchnStatus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum EvtchnStat {
    /// `EVTCHNSTAT_closed`.
    Closed = EVTCHNSTAT_CLOSED,
    /// `EVTCHNSTAT_unbound`.
    Unbound = EVTCHNSTAT_UNBOUND,
    /// `EVTCHNSTAT_interdomain`.
    Interdomain = EVTCHNSTAT_INTERDOMAIN,
    /// `EVTCHNSTAT_pirq`.
    Pirq = EVTCHNSTAT_PIRQ,
    /// `EVTCHNSTAT_virq`.
    Virq = EVTCHNSTAT_VIRQ,
    /// `EVTCHNSTAT_ipi`.
    Ipi = EVTCHNSTAT_IPI,
}

impl EvtchnStat {
    /// Decodes an `EVTCHNSTAT_*` value; `None` for unknown values.
    pub const fn from_raw(v: u32) -> Option<Self> {
        Some(match v {
            EVTCHNSTAT_CLOSED => Self::Closed,
            EVTCHNSTAT_UNBOUND => Self::Unbound,
            EVTCHNSTAT_INTERDOMAIN => Self::Interdomain,
            EVTCHNSTAT_PIRQ => Self::Pirq,
            EVTCHNSTAT_VIRQ => Self::Virq,
            EVTCHNSTAT_IPI => Self::Ipi,
            _ => return None,
        })
    }
}

/// A decoded [`EvtchnStatus`]: the state and the union member it selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EvtchnBinding {
    /// Not in use.
    Closed,
    /// Waiting for `dom` to bind.
    Unbound {
        /// The domain allowed to bind.
        dom: u16,
    },
    /// Connected to `port` of `dom`.
    Interdomain {
        /// The remote domain.
        dom: u16,
        /// The remote port.
        port: u32,
    },
    /// Bound to a physical IRQ.
    Pirq(u32),
    /// Bound to a virtual IRQ.
    Virq(u32),
    /// Bound to an inter-vCPU interrupt.
    Ipi,
}

/// `struct evtchn_status`: query the state of a port.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnStatus {
    /// IN: the domain owning the port.
    pub dom: u16,
    /// Implicit C padding.
    pub _pad0: u16,
    /// IN: the port.
    pub port: u32,
    /// OUT: an `EVTCHNSTAT_*` value.
    pub status: u32,
    /// OUT: the vCPU the port is bound to.
    pub vcpu: u32,
    /// OUT: the raw union `u` (`unbound.dom` at 0; `interdomain.dom` at 0 and
    /// `.port` at 4; `pirq` or `virq` at 0), in native byte order.
    pub u: [u8; 8],
}

impl EvtchnStatus {
    fn u16_at(&self, off: usize) -> u16 {
        u16::from_ne_bytes([self.u[off], self.u[off + 1]])
    }

    fn u32_at(&self, off: usize) -> u32 {
        u32::from_ne_bytes([
            self.u[off],
            self.u[off + 1],
            self.u[off + 2],
            self.u[off + 3],
        ])
    }

    /// Decodes `status` and the union it selects; `None` for an unknown status.
    pub fn binding(&self) -> Option<EvtchnBinding> {
        Some(match EvtchnStat::from_raw(self.status)? {
            EvtchnStat::Closed => EvtchnBinding::Closed,
            EvtchnStat::Unbound => EvtchnBinding::Unbound {
                dom: self.u16_at(0),
            },
            EvtchnStat::Interdomain => EvtchnBinding::Interdomain {
                dom: self.u16_at(0),
                port: self.u32_at(4),
            },
            EvtchnStat::Pirq => EvtchnBinding::Pirq(self.u32_at(0)),
            EvtchnStat::Virq => EvtchnBinding::Virq(self.u32_at(0)),
            EvtchnStat::Ipi => EvtchnBinding::Ipi,
        })
    }

    /// Fills `status` and the union from a decoded binding (what a
    /// hypervisor, e.g. the simulated one, writes back).
    pub fn set_binding(&mut self, b: EvtchnBinding) {
        let mut u = [0u8; 8];
        let status = match b {
            EvtchnBinding::Closed => EVTCHNSTAT_CLOSED,
            EvtchnBinding::Unbound { dom } => {
                u[..2].copy_from_slice(&dom.to_ne_bytes());
                EVTCHNSTAT_UNBOUND
            }
            EvtchnBinding::Interdomain { dom, port } => {
                u[..2].copy_from_slice(&dom.to_ne_bytes());
                u[4..].copy_from_slice(&port.to_ne_bytes());
                EVTCHNSTAT_INTERDOMAIN
            }
            EvtchnBinding::Pirq(p) => {
                u[..4].copy_from_slice(&p.to_ne_bytes());
                EVTCHNSTAT_PIRQ
            }
            EvtchnBinding::Virq(v) => {
                u[..4].copy_from_slice(&v.to_ne_bytes());
                EVTCHNSTAT_VIRQ
            }
            EvtchnBinding::Ipi => EVTCHNSTAT_IPI,
        };
        self.status = status;
        self.u = u;
    }
}

/// `struct evtchn_bind_vcpu`: change the vCPU a port notifies.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnBindVcpu {
    /// IN: the port.
    pub port: u32,
    /// IN: the new vCPU.
    pub vcpu: u32,
}

/// `struct evtchn_unmask`: unmask a port (and deliver a pending event).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnUnmask {
    /// IN: the port.
    pub port: u32,
}

/// `struct evtchn_reset`: close every port of a domain.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnReset {
    /// IN: the domain (`DOMID_SELF` or, privileged, any).
    pub dom: u16,
}

/// `struct evtchn_init_control`: register a FIFO control block.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnInitControl {
    /// IN: frame of the control block page.
    pub control_gfn: u64,
    /// IN: offset of the control block in that page.
    pub offset: u32,
    /// IN: the vCPU.
    pub vcpu: u32,
    /// OUT: `EVTCHN_FIFO_LINK_BITS`.
    pub link_bits: u8,
    /// Padding.
    pub _pad: [u8; 7],
}

/// `struct evtchn_expand_array`: add a page to the FIFO event array.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnExpandArray {
    /// IN: frame of the new event-array page.
    pub array_gfn: u64,
}

/// `struct evtchn_set_priority`: set a port's FIFO priority.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnSetPriority {
    /// IN: the port.
    pub port: u32,
    /// IN: 0 (highest) to 15 (lowest).
    pub priority: u32,
}

/// Size of the union in [`EvtchnOp`] (its largest member, [`EvtchnStatus`]).
pub const EVTCHN_OP_UNION_SIZE: usize = 24;

/// `struct evtchn_op`: argument of the compat hypercall
/// `__HYPERVISOR_event_channel_op_compat` (`cmd` plus one op struct).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnOp {
    /// An `EVTCHNOP_*` command.
    pub cmd: u32,
    /// The op struct's bytes, zero-padded.
    pub u: [u8; EVTCHN_OP_UNION_SIZE],
}

/// `EVTCHN_FIFO_PRIORITY_MAX`: the highest FIFO priority.
pub const EVTCHN_FIFO_PRIORITY_MAX: u32 = 0;
/// `EVTCHN_FIFO_PRIORITY_DEFAULT`.
pub const EVTCHN_FIFO_PRIORITY_DEFAULT: u32 = 7;
/// `EVTCHN_FIFO_PRIORITY_MIN`: the lowest FIFO priority.
pub const EVTCHN_FIFO_PRIORITY_MIN: u32 = 15;
/// `EVTCHN_FIFO_MAX_QUEUES`.
pub const EVTCHN_FIFO_MAX_QUEUES: usize = 16;
/// `EVTCHN_FIFO_PENDING`: bit of an event word.
pub const EVTCHN_FIFO_PENDING: u32 = 31;
/// `EVTCHN_FIFO_MASKED`: bit of an event word.
pub const EVTCHN_FIFO_MASKED: u32 = 30;
/// `EVTCHN_FIFO_LINKED`: bit of an event word.
pub const EVTCHN_FIFO_LINKED: u32 = 29;
/// `EVTCHN_FIFO_BUSY`: bit of an event word.
pub const EVTCHN_FIFO_BUSY: u32 = 28;
/// `EVTCHN_FIFO_LINK_BITS`.
pub const EVTCHN_FIFO_LINK_BITS: u32 = 17;
/// `EVTCHN_FIFO_LINK_MASK`.
pub const EVTCHN_FIFO_LINK_MASK: u32 = (1 << EVTCHN_FIFO_LINK_BITS) - 1;
/// `EVTCHN_FIFO_NR_CHANNELS`.
pub const EVTCHN_FIFO_NR_CHANNELS: u32 = 1 << EVTCHN_FIFO_LINK_BITS;

/// `struct evtchn_fifo_control_block`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct EvtchnFifoControlBlock {
    /// Bitmap of queues with events.
    pub ready: u32,
    /// Reserved.
    pub _rsvd: u32,
    /// Head port of each priority queue.
    pub head: [u32; EVTCHN_FIFO_MAX_QUEUES],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_event_channel_h() {
        assert_layout!(EvtchnAllocUnbound, size 8, align 4, dom @ 0, remote_dom @ 2, port @ 4);
        assert_layout!(EvtchnBindInterdomain, size 12, align 4,
            remote_dom @ 0, remote_port @ 4, local_port @ 8);
        assert_layout!(EvtchnBindVirq, size 12, align 4, virq @ 0, vcpu @ 4, port @ 8);
        assert_layout!(EvtchnBindPirq, size 12, align 4, pirq @ 0, flags @ 4, port @ 8);
        assert_layout!(EvtchnBindIpi, size 8, align 4, vcpu @ 0, port @ 4);
        assert_layout!(EvtchnClose, size 4, align 4, port @ 0);
        assert_layout!(EvtchnSend, size 4, align 4, port @ 0);
        assert_layout!(EvtchnStatus, size 24, align 4,
            dom @ 0, port @ 4, status @ 8, vcpu @ 12, u @ 16);
        assert_layout!(EvtchnBindVcpu, size 8, align 4, port @ 0, vcpu @ 4);
        assert_layout!(EvtchnUnmask, size 4, align 4, port @ 0);
        assert_layout!(EvtchnReset, size 2, align 2, dom @ 0);
        assert_layout!(EvtchnInitControl, size 24, align 8,
            control_gfn @ 0, offset @ 8, vcpu @ 12, link_bits @ 16, _pad @ 17);
        assert_layout!(EvtchnExpandArray, size 8, align 8, array_gfn @ 0);
        assert_layout!(EvtchnSetPriority, size 8, align 4, port @ 0, priority @ 4);
        assert_layout!(EvtchnOp, size 28, align 4, cmd @ 0, u @ 4);
        assert_layout!(EvtchnFifoControlBlock, size 72, align 4, ready @ 0, _rsvd @ 4, head @ 8);
    }

    #[test]
    fn status_union_round_trips() {
        let cases = [
            EvtchnBinding::Closed,
            EvtchnBinding::Unbound { dom: 7 },
            EvtchnBinding::Interdomain {
                dom: 0x7FF0,
                port: 0xDEAD_BEEF,
            },
            EvtchnBinding::Pirq(33),
            EvtchnBinding::Virq(3),
            EvtchnBinding::Ipi,
        ];
        for b in cases {
            let mut st = EvtchnStatus::default();
            st.set_binding(b);
            let back = EvtchnStatus::read_from_bytes(st.as_bytes()).unwrap();
            assert_eq!(back.binding(), Some(b));
        }
        let bad = EvtchnStatus {
            status: 6,
            ..Default::default()
        };
        assert_eq!(bad.binding(), None);
        assert_eq!(EvtchnStat::from_raw(2), Some(EvtchnStat::Interdomain));
    }

    #[test]
    fn interdomain_member_offsets() {
        // `interdomain.port` is the second u32 of the union: byte 20 of the struct.
        let mut st = EvtchnStatus::default();
        st.set_binding(EvtchnBinding::Interdomain { dom: 1, port: 9 });
        assert_eq!(&st.as_bytes()[20..24], &9u32.to_ne_bytes());
        assert_eq!(&st.as_bytes()[16..18], &1u16.to_ne_bytes());
    }
}
