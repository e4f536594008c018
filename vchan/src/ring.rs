//! The ring protocol of libxenvchan: indices, notification bits, live flags.
//!
//! Sans-IO and `no_std`: nothing here blocks, allocates or signals an event
//! channel. Operations return how many bytes moved and a [`Kick`] telling the
//! caller whether the peer asked to be notified; the blocking layer
//! (`crate::channel`) and the loom models (`tests/loom.rs`) drive
//! these same functions.
//!
//! # The protocol (libxenvchan `io.c`, Xen 4.17)
//!
//! Each direction is a single-producer single-consumer byte ring of
//! `2^order` bytes with free-running `u32` indices `prod` and `cons`
//! (`prod - cons` bytes are ready; offsets are `index & (size - 1)`).
//!
//! * Producer: read `cons` (**Acquire**: the consumer's copies out of the
//!   slots happened before we overwrite them), copy the bytes in, store
//!   `prod` (**Release**: our copies happen before the consumer's).
//! * Consumer: read `prod` (**Acquire**), copy out, store `cons` (**Release**).
//! * Notification suppression: an end that is about to wait for data sets
//!   `NOTIFY_WRITE` in the *peer's* notify byte (`fetch_or`, **AcqRel**) and
//!   then re-reads the index; the peer, after publishing its index, clears the
//!   bit (`fetch_and`, **AcqRel**) and signals the event channel only if the
//!   bit was set. `NOTIFY_READ` works the same way for a writer waiting for
//!   space. Both sides do read-modify-writes on the *same byte*, so they are
//!   totally ordered: either the clear sees the request (the peer kicks), or
//!   the request reads from the clear and so acquires the index stored
//!   before it (the re-read sees the new data). No wake-up is lost; the loom
//!   model `notify_bits_never_lose_a_wakeup` checks this. (libxenvchan uses
//!   full barriers around the same accesses, which is compatible: on x86
//!   every locked RMW is a full barrier.)
//!
//! # Untrusted peer
//!
//! The indices *we* own are kept in private memory ([`Endpoint`]) and only
//! ever stored to the page, never read back after [`Endpoint::new`] (which
//! takes them from the page once, so a reconnecting client continues where
//! the last one stopped): a peer scribbling on them only confuses itself. The peer's index is read once per check and
//! validated: it must not move backwards and must not claim more than a
//! ring's worth of bytes. A violation is a [`RingError`]; the caller closes
//! the channel. Copies are bounded by the validated count and split at the
//! ring's end, so no offset ever leaves the ring.
//!
//! # Pipelining
//!
//! A large copy is published in slices of a quarter ring (at least 4 KiB):
//! the index is stored after each slice, so the peer starts copying out (or
//! refilling) behind us instead of waiting for the whole transfer.

use core::sync::atomic::Ordering::{AcqRel, Acquire, Release};

use crate::layout::{field, LIVE_CONNECTED, LIVE_EXITED, LIVE_WAITING, NOTIFY_READ, NOTIFY_WRITE};
use crate::sync::{Atomic32, Atomic8, RingBuf, RingBufMut};

/// A peer broke the ring protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The peer's producer index claims more data than the ring holds, or
    /// moved backwards.
    #[error("peer producer index {prod:#x} invalid (consumer {cons:#x}, ring {size} bytes)")]
    BadProd {
        /// The index read from the page.
        prod: u32,
        /// Our consumer index.
        cons: u32,
        /// Ring size.
        size: u32,
    },
    /// The peer's consumer index is ahead of what we produced, or moved
    /// backwards.
    #[error("peer consumer index {cons:#x} invalid (producer {prod:#x}, ring {size} bytes)")]
    BadCons {
        /// The index read from the page.
        cons: u32,
        /// Our producer index.
        prod: u32,
        /// Ring size.
        size: u32,
    },
}

/// "Signal the peer's event channel": the peer asked to be told about what
/// we just did.
#[must_use = "the peer asked for an event-channel notification"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kick(pub bool);

/// Which end of the channel we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Granted the page; reads the left ring, writes the right ring.
    Server,
    /// Mapped the page; writes the left ring, reads the right ring.
    Client,
}

/// The four ring indices of the shared page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idx {
    /// `left.cons`.
    LeftCons,
    /// `left.prod`.
    LeftProd,
    /// `right.cons`.
    RightCons,
    /// `right.prod`.
    RightProd,
}

/// The four single-byte flags of the shared page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    /// `cli_live`.
    CliLive,
    /// `srv_live`.
    SrvLive,
    /// `cli_notify`.
    CliNotify,
    /// `srv_notify`.
    SrvNotify,
}

impl Idx {
    /// Byte offset in the shared page.
    pub fn offset(self) -> usize {
        match self {
            Idx::LeftCons => field::LEFT_CONS,
            Idx::LeftProd => field::LEFT_PROD,
            Idx::RightCons => field::RIGHT_CONS,
            Idx::RightProd => field::RIGHT_PROD,
        }
    }
}

impl Flag {
    /// Byte offset in the shared page.
    pub fn offset(self) -> usize {
        match self {
            Flag::CliLive => field::CLI_LIVE,
            Flag::SrvLive => field::SRV_LIVE,
            Flag::CliNotify => field::CLI_NOTIFY,
            Flag::SrvNotify => field::SRV_NOTIFY,
        }
    }
}

/// Atomic handles on the control fields of a shared page.
pub trait Page {
    /// Handle type of the indices.
    type A32: Atomic32 + ?Sized;
    /// Handle type of the flags.
    type A8: Atomic8 + ?Sized;
    /// The index `i`.
    fn idx(&self, i: Idx) -> &Self::A32;
    /// The flag `f`.
    fn flag(&self, f: Flag) -> &Self::A8;
}

impl Page for xen::SharedMem<'_> {
    type A32 = core::sync::atomic::AtomicU32;
    type A8 = core::sync::atomic::AtomicU8;
    #[inline]
    fn idx(&self, i: Idx) -> &Self::A32 {
        self.atomic_u32(i.offset())
    }
    #[inline]
    fn flag(&self, f: Flag) -> &Self::A8 {
        self.atomic_u8(f.offset())
    }
}

impl<P: Page + ?Sized> Page for &P {
    type A32 = P::A32;
    type A8 = P::A8;
    #[inline]
    fn idx(&self, i: Idx) -> &Self::A32 {
        (**self).idx(i)
    }
    #[inline]
    fn flag(&self, f: Flag) -> &Self::A8 {
        (**self).flag(f)
    }
}

/// Which fields one end uses.
#[derive(Clone, Copy, Debug)]
struct Fields {
    rx_cons: Idx,
    rx_prod: Idx,
    tx_cons: Idx,
    tx_prod: Idx,
    my_notify: Flag,
    peer_notify: Flag,
    my_live: Flag,
    peer_live: Flag,
}

impl Role {
    fn fields(self) -> Fields {
        match self {
            Role::Server => Fields {
                rx_cons: Idx::LeftCons,
                rx_prod: Idx::LeftProd,
                tx_cons: Idx::RightCons,
                tx_prod: Idx::RightProd,
                my_notify: Flag::SrvNotify,
                peer_notify: Flag::CliNotify,
                my_live: Flag::SrvLive,
                peer_live: Flag::CliLive,
            },
            Role::Client => Fields {
                rx_cons: Idx::RightCons,
                rx_prod: Idx::RightProd,
                tx_cons: Idx::LeftCons,
                tx_prod: Idx::LeftProd,
                my_notify: Flag::CliNotify,
                peer_notify: Flag::SrvNotify,
                my_live: Flag::CliLive,
                peer_live: Flag::SrvLive,
            },
        }
    }
}

/// What the peer's live flag says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// The client has not connected yet (`cli_live == 2`, server side only).
    Waiting,
    /// Connected.
    Connected,
    /// The peer closed (`*_live == 0`).
    Closed,
}

/// Outcome of a non-blocking step that could not make progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stall {
    /// Not enough data or space yet; the peer may still provide it.
    Wait,
    /// The peer closed and what we asked for will never come.
    PeerClosed,
}

/// One end of a vchan: our private indices and the fields we use.
///
/// All methods take the page (and ring buffers) as parameters; the struct
/// holds no reference to shared memory.
#[derive(Debug)]
pub struct Endpoint {
    f: Fields,
    role: Role,
    /// Our consumer index of the receive ring (private copy, authoritative).
    rx_cons: u32,
    /// The peer's producer index as last validated.
    rx_prod: u32,
    rx_mask: u32,
    /// Our producer index of the send ring (private copy, authoritative).
    tx_prod: u32,
    /// The peer's consumer index as last validated.
    tx_cons: u32,
    tx_mask: u32,
}

impl Endpoint {
    /// An end for `role` whose receive ring has `2^rx_order` bytes and whose
    /// send ring has `2^tx_order` bytes (`order < 32`), starting from the
    /// indices currently in `page` (zero for a fresh page; a reconnecting
    /// libxenvchan client continues from what is there).
    pub fn new<P: Page>(role: Role, rx_order: u8, tx_order: u8, page: &P) -> Endpoint {
        assert!(rx_order < 32 && tx_order < 32, "ring order out of range");
        let f = role.fields();
        let rx_cons = page.idx(f.rx_cons).load(Acquire);
        let tx_prod = page.idx(f.tx_prod).load(Acquire);
        Endpoint {
            f,
            role,
            rx_cons,
            rx_prod: rx_cons,
            rx_mask: (1u32 << rx_order) - 1,
            tx_prod,
            tx_cons: tx_prod,
            tx_mask: (1u32 << tx_order) - 1,
        }
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Size of the receive ring in bytes.
    pub fn rx_size(&self) -> u32 {
        self.rx_mask.wrapping_add(1)
    }

    /// Size of the send ring in bytes.
    pub fn tx_size(&self) -> u32 {
        self.tx_mask.wrapping_add(1)
    }

    /// Reads the peer's producer index once and returns the bytes ready.
    pub fn data_ready<P: Page>(&mut self, page: &P) -> Result<u32, RingError> {
        let prod = page.idx(self.f.rx_prod).load(Acquire);
        let ready = prod.wrapping_sub(self.rx_cons);
        let seen = self.rx_prod.wrapping_sub(self.rx_cons);
        if ready > self.rx_size() || ready < seen {
            return Err(RingError::BadProd {
                prod,
                cons: self.rx_cons,
                size: self.rx_size(),
            });
        }
        self.rx_prod = prod;
        Ok(ready)
    }

    /// Reads the peer's consumer index once and returns the free space.
    pub fn buffer_space<P: Page>(&mut self, page: &P) -> Result<u32, RingError> {
        let cons = page.idx(self.f.tx_cons).load(Acquire);
        let used = self.tx_prod.wrapping_sub(cons);
        let seen = self.tx_prod.wrapping_sub(self.tx_cons);
        if used > self.tx_size() || used > seen {
            return Err(RingError::BadCons {
                cons,
                prod: self.tx_prod,
                size: self.tx_size(),
            });
        }
        self.tx_cons = cons;
        Ok(self.tx_size() - used)
    }

    /// Asks the peer to notify us when it writes, then re-reads the data
    /// ready (libxenvchan's `fast_get_data_ready` slow path).
    pub fn arm_data_ready<P: Page>(&mut self, page: &P) -> Result<u32, RingError> {
        page.flag(self.f.peer_notify).fetch_or(NOTIFY_WRITE, AcqRel);
        self.data_ready(page)
    }

    /// Asks the peer to notify us when it reads, then re-reads the space.
    pub fn arm_buffer_space<P: Page>(&mut self, page: &P) -> Result<u32, RingError> {
        page.flag(self.f.peer_notify).fetch_or(NOTIFY_READ, AcqRel);
        self.buffer_space(page)
    }

    /// `data_ready`, and if fewer than `want` bytes are ready, arm the
    /// notification and look again.
    pub fn data_ready_or_arm<P: Page>(&mut self, page: &P, want: u32) -> Result<u32, RingError> {
        let n = self.data_ready(page)?;
        if n >= want {
            return Ok(n);
        }
        self.arm_data_ready(page)
    }

    /// `buffer_space`, and if less than `want` bytes are free, arm the
    /// notification and look again.
    pub fn buffer_space_or_arm<P: Page>(&mut self, page: &P, want: u32) -> Result<u32, RingError> {
        let n = self.buffer_space(page)?;
        if n >= want {
            return Ok(n);
        }
        self.arm_buffer_space(page)
    }

    /// Copies up to `dst.len()` of the bytes last seen ready (by
    /// [`data_ready`](Self::data_ready) and friends) out of the ring,
    /// publishes the new consumer index and says whether to notify the peer.
    pub fn consume<P: Page, B: RingBuf>(
        &mut self,
        page: &P,
        ring: &B,
        dst: &mut [u8],
    ) -> (usize, Kick) {
        let ready = self.rx_prod.wrapping_sub(self.rx_cons) as usize;
        let n = dst.len().min(ready);
        debug_assert!(n == 0 || ring.size() == self.rx_size() as usize);
        let mut done = 0;
        // Publish progress slice by slice so a producer waiting for space
        // can refill behind us while we copy the rest (pipelining).
        while done < n {
            let off = (self.rx_cons & self.rx_mask) as usize;
            let len = (n - done)
                .min(self.rx_size() as usize - off)
                .min(slice(self.rx_size()));
            ring.read(off, &mut dst[done..done + len]);
            done += len;
            self.rx_cons = self.rx_cons.wrapping_add(len as u32);
            page.idx(self.f.rx_cons).store(self.rx_cons, Release);
        }
        if n == 0 {
            return (0, Kick(false));
        }
        // One check after the last slice: a blocked peer wakes once, to the
        // whole transfer, rather than once per slice.
        let prev = page.flag(self.f.my_notify).fetch_and(!NOTIFY_READ, AcqRel);
        (n, Kick(prev & NOTIFY_READ != 0))
    }

    /// Copies up to `src.len()` bytes into the space last seen free (by
    /// [`buffer_space`](Self::buffer_space) and friends), publishes the new
    /// producer index and says whether to notify the peer.
    pub fn produce<P: Page, B: RingBufMut>(
        &mut self,
        page: &P,
        ring: &B,
        src: &[u8],
    ) -> (usize, Kick) {
        let free = (self.tx_size() - self.tx_prod.wrapping_sub(self.tx_cons)) as usize;
        let n = src.len().min(free);
        debug_assert!(n == 0 || ring.size() == self.tx_size() as usize);
        let mut done = 0;
        // Publish slice by slice so the consumer can start copying out while
        // we copy the rest in.
        while done < n {
            let off = (self.tx_prod & self.tx_mask) as usize;
            let len = (n - done)
                .min(self.tx_size() as usize - off)
                .min(slice(self.tx_size()));
            ring.write(off, &src[done..done + len]);
            done += len;
            self.tx_prod = self.tx_prod.wrapping_add(len as u32);
            page.idx(self.f.tx_prod).store(self.tx_prod, Release);
        }
        if n == 0 {
            return (0, Kick(false));
        }
        // One check after the last slice: a blocked peer wakes once, to the
        // whole transfer, rather than once per slice.
        let prev = page.flag(self.f.my_notify).fetch_and(!NOTIFY_WRITE, AcqRel);
        (n, Kick(prev & NOTIFY_WRITE != 0))
    }

    /// What the peer's live flag says (read with Acquire, so data the peer
    /// wrote before closing is visible to a following `data_ready`).
    pub fn peer_state<P: Page>(&self, page: &P) -> PeerState {
        match page.flag(self.f.peer_live).load(Acquire) {
            LIVE_EXITED => PeerState::Closed,
            LIVE_WAITING if self.role == Role::Server => PeerState::Waiting,
            // libxenvchan treats any non-zero value as open.
            _ => PeerState::Connected,
        }
    }

    /// Sets our live flag: `LIVE_CONNECTED` on connect, `LIVE_EXITED` on close.
    pub fn set_live<P: Page>(&self, page: &P, value: u8) {
        page.flag(self.f.my_live).store(value, Release);
    }

    /// Asks the peer to notify us on its next write (the client does this
    /// when it connects, as libxenvchan does).
    pub fn request_write_notify<P: Page>(&self, page: &P) {
        page.flag(self.f.peer_notify).fetch_or(NOTIFY_WRITE, AcqRel);
    }

    /// One non-blocking read step: copies up to `dst.len()` bytes if at
    /// least `min` are ready (`min = 1` for stream reads, `dst.len()` for
    /// packets). With `arm`, a stalled step leaves a notification request
    /// behind, so the caller may block on the event channel afterwards.
    pub fn try_read<P: Page, B: RingBuf>(
        &mut self,
        page: &P,
        ring: &B,
        dst: &mut [u8],
        min: usize,
        arm: bool,
    ) -> Result<Result<(usize, Kick), Stall>, RingError> {
        let min = u32::try_from(min.max(1)).unwrap_or(u32::MAX);
        let mut ready = self.data_ready(page)?;
        if ready < min && arm {
            ready = self.arm_data_ready(page)?;
        }
        if ready < min {
            if self.peer_state(page) == PeerState::Closed {
                // Data written before the close is still delivered.
                if self.data_ready(page)? < min {
                    return Ok(Err(Stall::PeerClosed));
                }
            } else {
                return Ok(Err(Stall::Wait));
            }
        }
        Ok(Ok(self.consume(page, ring, dst)))
    }

    /// One non-blocking write step: copies up to `src.len()` bytes if at
    /// least `min` bytes of space are free (`min = 1` for stream writes,
    /// `src.len()` for packets). With `arm`, a stalled step leaves a
    /// notification request behind.
    pub fn try_write<P: Page, B: RingBufMut>(
        &mut self,
        page: &P,
        ring: &B,
        src: &[u8],
        min: usize,
        arm: bool,
    ) -> Result<Result<(usize, Kick), Stall>, RingError> {
        if self.peer_state(page) == PeerState::Closed {
            return Ok(Err(Stall::PeerClosed));
        }
        let min = u32::try_from(min.max(1)).unwrap_or(u32::MAX);
        let mut space = self.buffer_space(page)?;
        if space < min && arm {
            space = self.arm_buffer_space(page)?;
        }
        if space < min {
            return Ok(Err(Stall::Wait));
        }
        Ok(Ok(self.produce(page, ring, src)))
    }
}

/// Largest copy published at once: a quarter of the ring, at least 4 KiB.
fn slice(ring: u32) -> usize {
    (ring as usize / 4).max(4096)
}

/// Marks the channel connected from the client side (after mapping).
pub fn client_connect<P: Page>(ep: &Endpoint, page: &P) {
    ep.set_live(page, LIVE_CONNECTED);
    ep.request_write_notify(page);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testmem::{HeapBuf, HeapPage};

    fn pair(order: u8) -> (HeapPage, HeapBuf, HeapBuf, Endpoint, Endpoint) {
        let page = HeapPage::new_server(order, order);
        let left = HeapBuf::new(1 << order);
        let right = HeapBuf::new(1 << order);
        let srv = Endpoint::new(Role::Server, order, order, &page);
        let cli = Endpoint::new(Role::Client, order, order, &page);
        client_connect(&cli, &page);
        (page, left, right, srv, cli)
    }

    #[test]
    fn bytes_cross_with_wrap_around() {
        let (page, left, _right, mut srv, mut cli) = pair(4);
        let mut got = [0u8; 16];
        for round in 0..10u8 {
            let msg: [u8; 11] =
                core::array::from_fn(|i| round.wrapping_mul(31).wrapping_add(i as u8));
            let (n, _) = cli
                .try_write(&page, &left, &msg, 1, false)
                .unwrap()
                .unwrap();
            assert_eq!(n, 11);
            let (m, _) = srv
                .try_read(&page, &left, &mut got, 1, false)
                .unwrap()
                .unwrap();
            assert_eq!(&got[..m], &msg[..]);
        }
    }

    #[test]
    fn full_ring_stalls_and_packets_are_all_or_nothing() {
        let (page, left, _right, mut srv, mut cli) = pair(4);
        assert_eq!(
            cli.try_write(&page, &left, &[1; 20], 1, false)
                .unwrap()
                .unwrap()
                .0,
            16
        );
        assert_eq!(
            cli.try_write(&page, &left, &[1; 1], 1, true).unwrap(),
            Err(Stall::Wait)
        );
        let mut buf = [0u8; 10];
        assert_eq!(
            srv.try_read(&page, &left, &mut buf, 10, false)
                .unwrap()
                .unwrap()
                .0,
            10
        );
        assert_eq!(
            cli.try_write(&page, &left, &[2; 11], 11, false).unwrap(),
            Err(Stall::Wait)
        );
        let (n, kick) = cli
            .try_write(&page, &left, &[2; 10], 10, false)
            .unwrap()
            .unwrap();
        assert_eq!((n, kick), (10, Kick(false)));
        let mut big = [0u8; 17];
        assert_eq!(
            srv.try_read(&page, &left, &mut big, 17, false).unwrap(),
            Err(Stall::Wait)
        );
    }

    #[test]
    fn notifications_only_when_asked() {
        let (page, left, _right, mut srv, mut cli) = pair(4);
        // The client asked for write notifications when it connected; the
        // server has not asked the client for anything yet.
        let mut buf = [0u8; 4];
        assert_eq!(
            srv.try_read(&page, &left, &mut buf, 1, true).unwrap(),
            Err(Stall::Wait)
        );
        // Now the server asked (arm): the client's next write kicks, once.
        let (_, k) = cli
            .try_write(&page, &left, b"ab", 1, false)
            .unwrap()
            .unwrap();
        assert_eq!(k, Kick(true));
        let (_, k) = cli
            .try_write(&page, &left, b"cd", 1, false)
            .unwrap()
            .unwrap();
        assert_eq!(k, Kick(false));
        let (_, k) = srv
            .try_read(&page, &left, &mut buf, 1, false)
            .unwrap()
            .unwrap();
        assert_eq!(k, Kick(false), "nobody waits for space");
    }

    #[test]
    fn close_delivers_remaining_data_then_eof() {
        let (page, left, _right, mut srv, mut cli) = pair(4);
        let _ = cli
            .try_write(&page, &left, b"bye", 1, false)
            .unwrap()
            .unwrap();
        cli.set_live(&page, LIVE_EXITED);
        let mut buf = [0u8; 8];
        assert_eq!(
            srv.try_read(&page, &left, &mut buf, 1, true)
                .unwrap()
                .unwrap()
                .0,
            3
        );
        assert_eq!(
            srv.try_read(&page, &left, &mut buf, 1, true).unwrap(),
            Err(Stall::PeerClosed)
        );
        assert_eq!(
            srv.try_write(&page, &left, b"x", 1, true).unwrap(),
            Err(Stall::PeerClosed)
        );
    }

    #[test]
    fn garbage_indices_are_errors() {
        let (page, left, _right, mut srv, mut cli) = pair(4);
        page.idx(Idx::LeftProd).store(17, Release);
        assert!(matches!(
            srv.data_ready(&page),
            Err(RingError::BadProd { prod: 17, .. })
        ));
        page.idx(Idx::LeftProd).store(5, Release);
        assert_eq!(srv.data_ready(&page), Ok(5));
        page.idx(Idx::LeftProd).store(4, Release);
        assert!(
            srv.data_ready(&page).is_err(),
            "producer index moved backwards"
        );
        // Consumer index beyond what the client produced.
        let _ = cli
            .try_write(&page, &left, b"abc", 1, false)
            .unwrap()
            .unwrap();
        page.idx(Idx::LeftCons).store(4, Release);
        assert!(matches!(
            cli.buffer_space(&page),
            Err(RingError::BadCons { cons: 4, .. })
        ));
        page.idx(Idx::LeftCons).store(u32::MAX, Release);
        assert!(cli.buffer_space(&page).is_err());
    }

    mod props {
        use super::*;
        use alloc::collections::VecDeque;
        use alloc::vec;
        use alloc::vec::Vec;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Op {
            Write(usize),
            Read(usize),
            Send(usize),
            Recv(usize),
        }

        fn op(max: usize) -> impl Strategy<Value = Op> {
            prop_oneof![
                (0..=max).prop_map(Op::Write),
                (0..=max).prop_map(Op::Read),
                (0..=max).prop_map(Op::Send),
                (0..=max).prop_map(Op::Recv),
            ]
        }

        proptest! {
            /// Any interleaving of stream and packet reads and writes of any
            /// sizes delivers exactly the bytes sent, in order.
            #[test]
            fn interleavings_transfer_exactly_the_bytes_sent(
                order in 3u8..=12,
                ops in proptest::collection::vec(op(5000), 1..200),
                start in any::<u32>(),
            ) {
                let page = HeapPage::new_server(order, order);
                // Free-running indices start anywhere (e.g. near u32::MAX).
                page.idx(Idx::LeftCons).store(start, Release);
                page.idx(Idx::LeftProd).store(start, Release);
                let ring = HeapBuf::new(1 << order);
                let mut srv = Endpoint::new(Role::Server, order, order, &page);
                let mut cli = Endpoint::new(Role::Client, order, order, &page);
                client_connect(&cli, &page);
                let size = 1usize << order;
                let mut model: VecDeque<u8> = VecDeque::new();
                let mut next = 0u8;
                for op in ops {
                    match op {
                        Op::Write(n) | Op::Send(n) => {
                            let packet = matches!(op, Op::Send(_));
                            let src: Vec<u8> = (0..n).map(|_| { next = next.wrapping_add(1); next }).collect();
                            let min = if packet { n } else { 1 };
                            match cli.try_write(&page, &ring, &src, min, true).unwrap() {
                                Ok((w, _)) => {
                                    prop_assert!(w <= n);
                                    prop_assert!(!packet || w == n);
                                    prop_assert_eq!(w, n.min(size - model.len()));
                                    model.extend(&src[..w]);
                                    next = next.wrapping_sub((n - w) as u8);
                                }
                                Err(Stall::Wait) => {
                                    prop_assert!(n == 0 || size - model.len() < min.max(1));
                                    next = next.wrapping_sub(n as u8);
                                }
                                Err(Stall::PeerClosed) => prop_assert!(false, "peer is live"),
                            }
                        }
                        Op::Read(n) | Op::Recv(n) => {
                            let packet = matches!(op, Op::Recv(_));
                            let mut dst = vec![0u8; n];
                            let min = if packet { n } else { 1 };
                            match srv.try_read(&page, &ring, &mut dst, min, true).unwrap() {
                                Ok((r, _)) => {
                                    prop_assert_eq!(r, n.min(model.len()));
                                    let want: Vec<u8> = model.drain(..r).collect();
                                    prop_assert_eq!(&dst[..r], &want[..]);
                                }
                                Err(Stall::Wait) => prop_assert!(n == 0 || model.len() < min.max(1)),
                                Err(Stall::PeerClosed) => prop_assert!(false, "peer is live"),
                            }
                        }
                    }
                }
                // Drain: what is left is exactly what the model holds.
                let mut rest = vec![0u8; size];
                let left = match srv.try_read(&page, &ring, &mut rest, 1, false).unwrap() {
                    Ok((r, _)) => rest[..r].to_vec(),
                    Err(_) => Vec::new(),
                };
                prop_assert_eq!(left, model.into_iter().collect::<Vec<_>>());
            }

            /// Whatever a hostile peer writes into its index, the end either
            /// accepts a value that is consistent with the ring, or reports
            /// an error; it never reads or writes out of bounds.
            #[test]
            fn garbage_peer_indices_are_detected(
                order in 3u8..=12,
                fill in 0usize..5000,
                garbage in proptest::collection::vec(any::<u32>(), 1..20),
            ) {
                let page = HeapPage::new_server(order, order);
                let ring = HeapBuf::new(1 << order);
                let size = 1u32 << order;
                let mut srv = Endpoint::new(Role::Server, order, order, &page);
                let mut cli = Endpoint::new(Role::Client, order, order, &page);
                client_connect(&cli, &page);
                let src = vec![7u8; fill];
                let _ = cli.try_write(&page, &ring, &src, 1, false).unwrap();
                let prod = page.idx(Idx::LeftProd).load(Acquire);
                // Garbage producer index seen by the server.
                let mut seen = 0u32;
                let cons = 0u32;
                for g in &garbage {
                    page.idx(Idx::LeftProd).store(*g, Release);
                    let valid = g.wrapping_sub(cons) <= size && g.wrapping_sub(cons) >= seen;
                    match srv.data_ready(&page) {
                        Ok(n) => { prop_assert!(valid); prop_assert_eq!(n, g.wrapping_sub(cons)); seen = n; }
                        Err(RingError::BadProd { .. }) => prop_assert!(!valid),
                        Err(e) => prop_assert!(false, "{e}"),
                    }
                }
                let mut dst = vec![0u8; size as usize];
                let (n, _) = srv.consume(&page, &ring, &mut dst);
                prop_assert_eq!(n as u32, seen);
                // Garbage consumer index seen by the client.
                for g in &garbage {
                    page.idx(Idx::LeftCons).store(*g, Release);
                    let used = prod.wrapping_sub(*g);
                    match cli.buffer_space(&page) {
                        Ok(space) => { prop_assert!(used <= size); prop_assert_eq!(space, size - used); }
                        Err(RingError::BadCons { .. }) => {}
                        Err(e) => prop_assert!(false, "{e}"),
                    }
                }
            }
        }
    }
}
