//! Plain in-process memory for the ring tests: the shared page's control
//! fields as `core` atomics, ring bytes as `AtomicU8`s (relaxed byte copies,
//! so no `unsafe` is needed; the ring's own Acquire/Release orders the data).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering::Relaxed};

use crate::layout::{LIVE_CONNECTED, LIVE_WAITING, NOTIFY_WRITE};
use crate::ring::{Flag, Idx, Page};
use crate::sync::{RingBuf, RingBufMut};

/// The control fields of a vchan page.
#[derive(Default)]
pub struct HeapPage {
    idx: [AtomicU32; 4],
    flags: [AtomicU8; 4],
}

impl HeapPage {
    /// A page as a server initialises it (orders are kept by the caller).
    pub fn new_server(_left: u8, _right: u8) -> HeapPage {
        let p = HeapPage::default();
        p.flag(Flag::CliLive).store(LIVE_WAITING, Relaxed);
        p.flag(Flag::SrvLive).store(LIVE_CONNECTED, Relaxed);
        p.flag(Flag::CliNotify).store(NOTIFY_WRITE, Relaxed);
        p
    }
}

impl Page for HeapPage {
    type A32 = AtomicU32;
    type A8 = AtomicU8;
    fn idx(&self, i: Idx) -> &AtomicU32 {
        &self.idx[i as usize]
    }
    fn flag(&self, f: Flag) -> &AtomicU8 {
        &self.flags[f as usize]
    }
}

/// Ring bytes.
pub struct HeapBuf(Vec<AtomicU8>);

impl HeapBuf {
    /// `len` zero bytes.
    pub fn new(len: usize) -> HeapBuf {
        HeapBuf((0..len).map(|_| AtomicU8::new(0)).collect())
    }
}

impl RingBuf for HeapBuf {
    fn size(&self) -> usize {
        self.0.len()
    }
    fn read(&self, off: usize, dst: &mut [u8]) {
        let n = dst.len();
        for (d, s) in dst.iter_mut().zip(&self.0[off..off + n]) {
            *d = s.load(Relaxed);
        }
    }
}

impl RingBufMut for HeapBuf {
    fn write(&self, off: usize, src: &[u8]) {
        for (s, d) in src.iter().zip(&self.0[off..off + src.len()]) {
            d.store(*s, Relaxed);
        }
    }
}
