//! One VIF: a frontend's tx and rx rings, its counters, its rate limit and
//! the queue of frames waiting for its rx buffers.
//!
//! Sans-IO: the service hands in the mapped ring pages (any [`RingMem`]),
//! a [`GrantCopy`] and the time; the VIF answers with frames to switch and
//! whether to notify the frontend. A protocol violation is a [`VifError`]:
//! the service disconnects this VIF (one log line) and every other VIF goes
//! on. Memory is bounded: at most [`RXQ_MAX`] queued frames of at most
//! 64 KiB, and [`TX_BUDGET`] packets per poll.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use windsor_control::VifCounters;
use xen::abi::netif::{
    NetifExtra, NetifExtraInfo, NetifRxRequest, NetifRxResponse, NetifTxRequest, NetifTxResponse,
    NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY, NETIF_RX_ENTRY_SIZE, NETIF_TX_ENTRY_SIZE,
    NETRXF_CSUM_BLANK, NETRXF_DATA_VALIDATED, NETRXF_EXTRA_INFO, NETRXF_MORE_DATA,
    NET_RX_RING_SIZE, NET_TX_RING_SIZE, XEN_NETIF_GSO_TYPE_TCPV4,
};
use xen::{DomId, PAGE_SIZE};
use zerocopy::IntoBytes;

use crate::copy::{CopyError, CopySeg, GrantCopy};
use crate::rate::Credit;
use crate::ring::{BackRing, RingError, RingMem};
use crate::tx::{self, Answers, Gso, Parsed, TxError, ETH_HLEN};

/// Most frames queued for a frontend's rx ring.
pub const RXQ_MAX: usize = 256;
/// Most packets taken from a tx ring per [`Vif::poll_tx`].
pub const TX_BUDGET: usize = 64;

/// A frame in flight between ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The Ethernet frame.
    pub data: Vec<u8>,
    /// The checksum is partial (the sender offloaded it).
    pub csum_blank: bool,
    /// Segmentation offload to do or pass on.
    pub gso: Option<Gso>,
}

impl Frame {
    /// A plain frame.
    pub fn new(data: Vec<u8>) -> Self {
        Frame {
            data,
            csum_blank: false,
            gso: None,
        }
    }
}

/// What the frontend negotiated and the toolstack configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VifConfig {
    /// The frontend domain.
    pub frontend: DomId,
    /// The MTU.
    pub mtu: u16,
    /// The `rate` limit: bytes per microseconds.
    pub rate: Option<(u64, u32)>,
    /// The frontend takes a packet in several rx slots (`feature-sg`).
    pub rx_sg: bool,
    /// The frontend takes TCPv4 GSO packets (`feature-gso-tcpv4`); other
    /// frontends get them segmented ([`crate::gso`]).
    pub rx_gso_tcpv4: bool,
    /// The frontend takes partial checksums (it did not write
    /// `feature-no-csum-offload=1`); other frontends get them completed.
    pub rx_csum_partial: bool,
}

/// The frontend broke the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VifError {
    /// A bad tx packet or tx ring index.
    #[error("tx: {0}")]
    Tx(#[from] TxError),
    /// A bad rx ring index.
    #[error("rx: {0}")]
    Rx(#[from] RingError),
    /// A grant reference we could not copy.
    #[error(transparent)]
    Copy(#[from] CopyError),
}

/// The outcome of a [`Vif::poll_tx`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxPoll {
    /// Packets taken.
    pub packets: usize,
    /// Notify the frontend (tx responses it asked to hear about).
    pub notify: bool,
    /// More requests are waiting (budget spent): poll again.
    pub more: bool,
    /// The rate limit holds packets back until then.
    pub wake_at: Option<Duration>,
}

/// One connected VIF.
#[derive(Debug)]
pub struct Vif {
    cfg: VifConfig,
    tx: BackRing,
    rx: BackRing,
    credit: Option<Credit>,
    rxq: VecDeque<Frame>,
    counters: VifCounters,
}

impl Vif {
    /// A VIF on fresh rings.
    pub fn new(cfg: VifConfig, now: Duration) -> Self {
        Vif {
            cfg,
            tx: BackRing::new(NET_TX_RING_SIZE, NETIF_TX_ENTRY_SIZE),
            rx: BackRing::new(NET_RX_RING_SIZE, NETIF_RX_ENTRY_SIZE),
            credit: cfg.rate.map(|(b, us)| Credit::new(b, us, now)),
            rxq: VecDeque::new(),
            counters: VifCounters::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &VifConfig {
        &self.cfg
    }

    /// The counters.
    pub fn counters(&self) -> VifCounters {
        self.counters
    }

    /// Frames waiting for rx buffers.
    pub fn queued(&self) -> usize {
        self.rxq.len()
    }

    /// Takes up to `budget` packets (at most [`TX_BUDGET`]) off the tx
    /// ring, copies them in and hands each to `out`.
    pub fn poll_tx<M: RingMem + ?Sized, G: GrantCopy + ?Sized>(
        &mut self,
        now: Duration,
        mem: &M,
        gc: &G,
        budget: usize,
        out: &mut impl FnMut(Frame),
    ) -> Result<TxPoll, VifError> {
        let mut res = TxPoll::default();
        let budget = budget.min(TX_BUDGET);
        let mut batch = Vec::new();
        loop {
            if res.packets >= budget {
                res.more = self.tx.unconsumed(mem).map_err(TxError::from)? > 0;
                break;
            }
            if self.tx.unconsumed(mem).map_err(TxError::from)? == 0
                && !self.tx.final_check(mem).map_err(TxError::from)?
            {
                break;
            }
            if let Some(c) = &mut self.credit {
                let first: NetifTxRequest = self.tx.peek(mem, 0);
                if !c.take(now, u64::from(first.size)) {
                    self.counters.rate_limited += 1;
                    res.wake_at = Some(c.next_refill());
                    break;
                }
            }
            res.packets += 1;
            match tx::parse(&mut self.tx, mem, self.cfg.mtu)? {
                Parsed::Packet(p, answers) => batch.push((p, answers)),
                Parsed::Drop(why, answers) => {
                    tracing::trace!(dom = self.cfg.frontend.0, ?why, "tx packet dropped");
                    self.answer(mem, &answers, NETIF_RSP_ERROR);
                    self.counters.tx_dropped += 1;
                }
            }
        }
        // All the packets' bytes in one batch of grant copies.
        let mut bufs: Vec<Vec<u8>> = batch
            .iter()
            .map(|(p, _)| vec![0u8; usize::from(p.size)])
            .collect();
        {
            let mut segs = Vec::with_capacity(batch.len());
            for ((p, _), buf) in batch.iter().zip(bufs.iter_mut()) {
                let mut rest: &mut [u8] = buf;
                for s in &p.slots {
                    // parse() made the slot lengths add up to the size.
                    let (head, tail) = rest.split_at_mut(usize::from(s.len).min(rest.len()));
                    segs.push(CopySeg::FromGrant {
                        dom: self.cfg.frontend,
                        gref: s.gref,
                        offset: s.offset,
                        buf: head,
                    });
                    rest = tail;
                }
            }
            gc.copy_batch(&mut segs)?;
        }
        for ((p, answers), data) in batch.into_iter().zip(bufs) {
            self.answer(mem, &answers, NETIF_RSP_OKAY);
            self.counters.tx_packets += 1;
            self.counters.tx_bytes += u64::from(p.size);
            out(Frame {
                data,
                csum_blank: p.csum_blank,
                gso: p.gso,
            });
        }
        res.notify = self.tx.push_responses(mem);
        Ok(res)
    }

    fn answer<M: RingMem + ?Sized>(&mut self, mem: &M, answers: &Answers, status: i16) {
        for &(id, extra) in &answers.slots {
            let status = if extra { NETIF_RSP_NULL } else { status };
            self.tx.respond(mem, &NetifTxResponse { id, status });
        }
    }

    /// Queues a frame for the frontend, fitted to what it takes: a TCPv4
    /// GSO packet for a frontend without `feature-gso-tcpv4` is segmented
    /// ([`crate::gso`]), a partial checksum for a frontend that wants full
    /// ones is completed. `false` (and counted as dropped) if the queue is
    /// full or the packet cannot be segmented.
    pub fn enqueue(&mut self, mut frame: Frame) -> bool {
        if let Some(g) = frame
            .gso
            .filter(|g| g.gso_type == XEN_NETIF_GSO_TYPE_TCPV4 && !self.cfg.rx_gso_tcpv4)
        {
            let Some(segs) = crate::gso::segment_tcpv4(&frame.data, g.size) else {
                self.counters.rx_dropped += 1;
                return false;
            };
            let mut all = true;
            for s in segs {
                all &= self.push(Frame::new(s));
            }
            return all;
        }
        if frame.csum_blank && !self.cfg.rx_csum_partial {
            crate::csum::complete(&mut frame.data);
            frame.csum_blank = false;
        }
        self.push(frame)
    }

    fn push(&mut self, frame: Frame) -> bool {
        if self.rxq.len() >= RXQ_MAX {
            self.counters.rx_dropped += 1;
            return false;
        }
        self.rxq.push_back(frame);
        true
    }

    /// Copies queued frames into the frontend's rx buffers while it has
    /// posted enough; returns whether to notify it.
    pub fn flush_rx<M: RingMem + ?Sized, G: GrantCopy + ?Sized>(
        &mut self,
        mem: &M,
        gc: &G,
    ) -> Result<bool, VifError> {
        // Plan: which frames go, into which requests (each read once).
        let mut avail = self.rx.unconsumed(mem)? as usize;
        let mut reqs: Vec<NetifRxRequest> = Vec::new();
        let mut planned: Vec<(Frame, Option<Gso>)> = Vec::new();
        while let Some(f) = self.rxq.front() {
            let len = f.data.len();
            let data_slots = len.div_ceil(PAGE_SIZE).max(1);
            let gso = f
                .gso
                .filter(|g| self.cfg.rx_gso_tcpv4 && g.gso_type == XEN_NETIF_GSO_TYPE_TCPV4);
            let unfit = (data_slots > 1 && !self.cfg.rx_sg)
                || (gso.is_none() && len > usize::from(self.cfg.mtu) + usize::from(ETH_HLEN) + 4)
                || len < usize::from(ETH_HLEN);
            if unfit {
                self.rxq.pop_front();
                self.counters.rx_dropped += 1;
                continue;
            }
            let need = data_slots + usize::from(gso.is_some());
            if avail.saturating_sub(reqs.len()) < need {
                // Ask to hear about the next buffer, and look once more.
                if !self.rx.final_check(mem)? {
                    break;
                }
                avail = self.rx.unconsumed(mem)? as usize;
                if avail.saturating_sub(reqs.len()) < need {
                    break;
                }
            }
            for _ in 0..need {
                reqs.push(self.rx.peek(mem, reqs.len() as u32));
            }
            let Some(f) = self.rxq.pop_front() else { break };
            planned.push((f, gso));
        }
        if planned.is_empty() {
            return Ok(self.rx.push_responses(mem));
        }
        // Copy: every chunk of every frame in one batch. A frame's requests
        // are [data 0, (extra), data 1, ...].
        {
            let mut segs = Vec::with_capacity(reqs.len());
            let mut r = 0;
            for (f, gso) in &planned {
                for (i, chunk) in f.data.chunks(PAGE_SIZE).enumerate() {
                    segs.push(CopySeg::ToGrant {
                        dom: self.cfg.frontend,
                        gref: xen::GrantRef(reqs[r].gref),
                        offset: 0,
                        buf: chunk,
                    });
                    r += 1;
                    if i == 0 && gso.is_some() {
                        r += 1;
                    }
                }
            }
            gc.copy_batch(&mut segs)?;
        }
        // Answer, in ring order.
        self.rx.consume(reqs.len() as u32);
        let mut r = 0;
        for (f, gso) in planned {
            let len = f.data.len();
            let data_slots = len.div_ceil(PAGE_SIZE).max(1);
            let mut flags0 = 0u16;
            if f.csum_blank {
                flags0 |= NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED;
            }
            for (i, chunk) in f.data.chunks(PAGE_SIZE).enumerate() {
                let mut flags = if i == 0 { flags0 } else { 0 };
                if i + 1 < data_slots {
                    flags |= NETRXF_MORE_DATA;
                }
                if i == 0 && gso.is_some() {
                    flags |= NETRXF_EXTRA_INFO;
                }
                self.rx.respond(
                    mem,
                    &NetifRxResponse {
                        id: reqs[r].id,
                        offset: 0,
                        flags,
                        status: chunk.len() as i16,
                    },
                );
                r += 1;
                if let (0, Some(g)) = (i, gso) {
                    // The extra-info slot follows the first response.
                    r += 1;
                    let extra = NetifExtraInfo::encode(
                        NetifExtra::Gso {
                            size: g.size,
                            gso_type: g.gso_type,
                            features: 0,
                        },
                        0,
                    );
                    self.rx
                        .respond(mem, &RawSlot(extra.as_bytes().try_into().unwrap_or([0; 8])));
                }
            }
            self.counters.rx_packets += 1;
            self.counters.rx_bytes += len as u64;
        }
        Ok(self.rx.push_responses(mem))
    }
}

/// Eight raw bytes written to an rx ring slot (an extra-info slot).
#[derive(zerocopy::IntoBytes, zerocopy::Immutable)]
#[repr(transparent)]
struct RawSlot([u8; 8]);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestFront;
    use alloc::vec::Vec;
    use xen::abi::netif::{NETIF_RSP_ERROR, NETIF_RSP_OKAY, NETTXF_MORE_DATA};

    const NOW: Duration = Duration::ZERO;

    fn vif() -> Vif {
        Vif::new(
            VifConfig {
                frontend: DomId(5),
                mtu: 1500,
                rate: None,
                rx_sg: true,
                rx_gso_tcpv4: false,
                rx_csum_partial: true,
            },
            NOW,
        )
    }

    fn frame(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
            .collect()
    }

    fn poll(v: &mut Vif, f: &TestFront) -> Result<Vec<Frame>, VifError> {
        let mut out = Vec::new();
        v.poll_tx(NOW, &f.tx, &f.grants, usize::MAX, &mut |fr| out.push(fr))?;
        Ok(out)
    }

    #[test]
    fn tx_packets_are_copied_in_and_answered() {
        let mut v = vif();
        let mut f = TestFront::new();
        let small = frame(60, 1);
        let big = frame(1514, 2);
        f.send(&small, 4096);
        f.send(&big, 500); // 4 slots
        let got = poll(&mut v, &f).unwrap();
        assert_eq!(
            got.iter().map(|f| f.data.clone()).collect::<Vec<_>>(),
            [small, big]
        );
        let rsp = f.tx_responses();
        assert_eq!(rsp.len(), 5);
        assert!(rsp.iter().all(|r| r.status == NETIF_RSP_OKAY));
        assert_eq!(v.counters().tx_packets, 2);
        assert_eq!(v.counters().tx_bytes, 60 + 1514);
    }

    #[test]
    fn rx_frames_fill_posted_buffers() {
        let mut v = vif();
        let mut f = TestFront::new();
        let a = frame(100, 3);
        assert!(v.enqueue(Frame::new(a.clone())));
        assert!(!v.flush_rx(&f.rx, &f.grants).unwrap(), "no buffers yet");
        assert_eq!(v.queued(), 1);
        f.post_rx(4);
        v.flush_rx(&f.rx, &f.grants).unwrap();
        assert_eq!(f.received(), [a]);
        assert_eq!(v.counters().rx_packets, 1);
        // Over the MTU without GSO: dropped.
        v.enqueue(Frame::new(frame(3000, 4)));
        v.flush_rx(&f.rx, &f.grants).unwrap();
        assert_eq!(v.counters().rx_dropped, 1);
        // A full queue drops.
        for _ in 0..RXQ_MAX + 3 {
            v.enqueue(Frame::new(frame(60, 0)));
        }
        assert_eq!(v.queued(), RXQ_MAX);
        assert_eq!(v.counters().rx_dropped, 4);
    }

    #[test]
    fn gso_frames_go_to_gso_frontends_with_their_extra_slot() {
        let mut v = Vif::new(
            VifConfig {
                rx_gso_tcpv4: true,
                ..*vif().config()
            },
            NOW,
        );
        let mut f = TestFront::new();
        f.post_rx(8);
        let data = frame(6000, 9);
        v.enqueue(Frame {
            data: data.clone(),
            csum_blank: true,
            gso: Some(Gso {
                size: 1448,
                gso_type: XEN_NETIF_GSO_TYPE_TCPV4,
            }),
        });
        assert!(v.flush_rx(&f.rx, &f.grants).unwrap());
        let slot = |i: u32| {
            let mut b = [0u8; 8];
            f.rx.read(xen::abi::ring::slot_offset(i, 256, 8), &mut b);
            b
        };
        let r0 = <NetifRxResponse as zerocopy::FromBytes>::read_from_bytes(&slot(0)).unwrap();
        assert_eq!(r0.status, 4096);
        assert_eq!(
            r0.flags,
            NETRXF_MORE_DATA | NETRXF_EXTRA_INFO | NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED
        );
        let e = <NetifExtraInfo as zerocopy::FromBytes>::read_from_bytes(&slot(1)).unwrap();
        assert_eq!(
            e.decode(),
            Some(NetifExtra::Gso {
                size: 1448,
                gso_type: XEN_NETIF_GSO_TYPE_TCPV4,
                features: 0
            })
        );
        let r2 = <NetifRxResponse as zerocopy::FromBytes>::read_from_bytes(&slot(2)).unwrap();
        assert_eq!((r2.status, r2.flags), (6000 - 4096, 0));
        // The bytes: request 0's page, then request 2's.
        let pages = f.grants.pages.borrow();
        let dp = crate::testing::DATA_PAGES;
        assert_eq!(&pages[dp][..], &data[..4096]);
        assert_eq!(&pages[dp + 2][..6000 - 4096], &data[4096..]);
        drop(pages);
        // A frontend without GSO gets it segmented; these bytes are not a
        // TCP frame, so they cannot be: dropped.
        let mut v = vif();
        v.enqueue(Frame {
            data,
            csum_blank: false,
            gso: Some(Gso {
                size: 1448,
                gso_type: XEN_NETIF_GSO_TYPE_TCPV4,
            }),
        });
        v.flush_rx(&f.rx, &f.grants).unwrap();
        assert_eq!(v.counters().rx_dropped, 1);
    }

    #[test]
    fn gso_and_partial_checksums_are_fitted_to_a_plain_frontend() {
        // Ethernet + IPv4 + TCP with 3000 bytes of payload, checksum blank.
        let mut data = alloc::vec![0u8; 54 + 3000];
        data[12..14].copy_from_slice(&[0x08, 0x00]);
        data[14] = 0x45;
        data[16..18].copy_from_slice(&(3040u16).to_be_bytes());
        data[23] = 6;
        data[46] = 5 << 4;
        for (i, b) in data[54..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let mut v = Vif::new(
            VifConfig {
                rx_csum_partial: false,
                ..*vif().config()
            },
            NOW,
        );
        assert!(v.enqueue(Frame {
            data: data.clone(),
            csum_blank: true,
            gso: Some(Gso {
                size: 1448,
                gso_type: XEN_NETIF_GSO_TYPE_TCPV4,
            }),
        }));
        assert_eq!(v.queued(), 3, "segmented");
        assert!(v.rxq.iter().all(|f| !f.csum_blank && f.gso.is_none()));
        let payload: Vec<u8> = v.rxq.iter().flat_map(|f| f.data[54..].to_vec()).collect();
        assert_eq!(payload, data[54..]);
        // A small frame with a blank checksum is completed.
        let mut small = data[..54 + 100].to_vec();
        small[16..18].copy_from_slice(&(140u16).to_be_bytes());
        let mut want = small.clone();
        assert!(crate::csum::complete(&mut want));
        v.enqueue(Frame {
            data: small,
            csum_blank: true,
            gso: None,
        });
        let last = v.rxq.back().unwrap();
        assert!(!last.csum_blank);
        assert_eq!(last.data, want);
    }

    #[test]
    fn nineteen_slots_drop_twenty_one_disconnect() {
        let mut v = vif();
        let mut f = TestFront::new();
        // 19 slots of 60 bytes: dropped, every slot answered with an error.
        f.send(&frame(19 * 60, 5), 60);
        assert!(poll(&mut v, &f).unwrap().is_empty());
        let rsp = f.tx_responses();
        assert_eq!(rsp.len(), 19);
        assert!(rsp.iter().all(|r| r.status == NETIF_RSP_ERROR));
        assert_eq!(v.counters().tx_dropped, 1);
        // The VIF goes on.
        f.send(&frame(60, 6), 4096);
        assert_eq!(poll(&mut v, &f).unwrap().len(), 1);
        // 21 slots: fatal.
        f.send(&frame(21 * 60, 7), 60);
        assert_eq!(poll(&mut v, &f), Err(VifError::Tx(TxError::TooManySlots)));
    }

    #[test]
    fn hostile_requests_are_fatal() {
        let req = |gref, offset, flags, size| xen::abi::netif::NetifTxRequest {
            gref,
            offset,
            flags,
            id: 0,
            size,
        };
        let cases: [(&[_], VifError); 4] = [
            (
                &[req(9999, 0, 0, 60)],
                VifError::Copy(CopyError::bad_ref(xen::GrantRef(9999))),
            ),
            (
                &[req(0, 4090, 0, 60)],
                VifError::Tx(TxError::CrossesPage {
                    offset: 4090,
                    size: 60,
                }),
            ),
            (
                &[req(0, 0, NETTXF_MORE_DATA, 60)],
                VifError::Tx(TxError::MissingSlots(1)),
            ),
            (
                &[req(0, 0, NETTXF_MORE_DATA, 60), req(1, 0, 0, 100)],
                VifError::Tx(TxError::SlotsBiggerThanPacket {
                    slots: 100,
                    size: 60,
                }),
            ),
        ];
        for (reqs, want) in cases {
            let mut v = vif();
            let mut f = TestFront::new();
            f.push_raw(reqs);
            assert_eq!(poll(&mut v, &f), Err(want));
        }
        // Index games: req_prod far ahead.
        let mut v = vif();
        let mut f = TestFront::new();
        f.set_tx_prod(1000);
        assert!(matches!(
            poll(&mut v, &f),
            Err(VifError::Tx(TxError::Ring(_)))
        ));
    }

    #[test]
    fn rate_limit_holds_packets_back() {
        let mut v = Vif::new(
            VifConfig {
                rate: Some((1000, 10_000)),
                ..*vif().config()
            },
            NOW,
        );
        let mut f = TestFront::new();
        for i in 0..5 {
            f.send(&frame(400, i), 4096);
        }
        let mut out = 0;
        let p = v
            .poll_tx(NOW, &f.tx, &f.grants, usize::MAX, &mut |_| out += 1)
            .unwrap();
        assert_eq!(out, 2, "1000 bytes of credit: two 400-byte packets");
        assert_eq!(p.wake_at, Some(Duration::from_millis(10)));
        let p = v
            .poll_tx(
                Duration::from_millis(10),
                &f.tx,
                &f.grants,
                usize::MAX,
                &mut |_| out += 1,
            )
            .unwrap();
        assert_eq!(out, 4);
        assert!(p.wake_at.is_some());
        assert!(v.counters().rate_limited >= 2);
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(
            slots in proptest::collection::vec(proptest::array::uniform12(0u8..), 0..64),
            prod in 0u32..300,
            rx_prod in 0u32..300,
        ) {
            let mut v = vif();
            let f = TestFront::new();
            for (i, s) in slots.iter().enumerate() {
                f.tx.write(xen::abi::ring::slot_offset(i as u32, 256, 12), s);
                f.rx.write(xen::abi::ring::slot_offset(i as u32, 256, 8), &s[..8]);
            }
            f.tx.store_u32(xen::abi::ring::SRING_REQ_PROD_OFFSET, prod, core::sync::atomic::Ordering::Relaxed);
            f.rx.store_u32(xen::abi::ring::SRING_REQ_PROD_OFFSET, rx_prod, core::sync::atomic::Ordering::Relaxed);
            let mut frames = Vec::new();
            for _ in 0..8 {
                match v.poll_tx(NOW, &f.tx, &f.grants, usize::MAX, &mut |fr| frames.push(fr)) {
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            proptest::prop_assert!(frames.len() <= 300);
            for fr in frames {
                proptest::prop_assert!(fr.data.len() <= 65535);
                v.enqueue(fr);
            }
            let _ = v.flush_rx(&f.rx, &f.grants);
            proptest::prop_assert!(v.queued() <= RXQ_MAX);
        }
    }
}
