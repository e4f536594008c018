//! Byte compatibility of Windsor's `vchan` with Xen's real `libxenvchan`.
//!
//! Xen's own compiled vchan code (`libxenvchan.a` of Debian's `libxen-dev`,
//! Xen 4.17) is linked statically into this test and runs as one peer,
//! inside a simulated domain of `xen-sim`; Windsor's [`vchan::Vchan`] runs
//! as the other peer in another simulated domain. They share real memory
//! through the simulator's grants and signal each other through its event
//! channels; the rendezvous goes through one in-memory xenstore
//! (`MemStore`, with permissions), each side acting as its own domain.
//!
//! What libxenvchan calls below itself (libxengnttab, libxenevtchn,
//! libxenstore) is implemented by `shim/mod.rs` on the simulator, the only
//! module here with raw pointers; read its docs for what it mimics of
//! Linux's drivers.
//!
//! # Plumbing
//!
//! `build.rs` links the archive into this package's tests only (so
//! `cargo build` needs no libxen-dev) and sets `cfg(libxenvchan)`; it
//! renames libxenvchan's one `munmap` call so the shim sees it. Without the
//! library the single test left fails, saying how to get it
//! (`cargo xtask test` installs it), as the project's tests of external
//! tools do. Run: `cargo test -p vchan-interop`.

#[cfg(not(libxenvchan))]
#[test]
fn libxenvchan_is_installed() {
    panic!(
        "libxenvchan.a not found (or objcopy missing) when this test was built: install \
         Debian's libxen-dev (`cargo xtask test` installs it: apt-get install -y libxen-dev) \
         or set LIBXENVCHAN_A to the archive, then rebuild"
    );
}

#[cfg(libxenvchan)]
mod shim;

#[cfg(libxenvchan)]
mod interop {
    use std::sync::Arc;
    use std::thread;
    use std::time::{Duration, Instant};

    use vchan::layout::{field, NOTIFY_WRITE};
    use vchan::{rendezvous, Error, ServerConfig};
    use windsor_xenstore::client::{Access, MemStore, Perm, TxId, XenStore};
    use xen::platform::{CreateConfig, DomainControl, ForeignMapping, GrantTable, Platform};
    use xen::{DomId, GrantRef};
    use xen_sim::{Hypervisor, SimDomain};

    use crate::shim::{self, CDomain};

    type WVchan<'a> = vchan::Vchan<'a, SimDomain>;

    /// One host: domain `c` runs libxenvchan, domain `w` runs Windsor's vchan.
    struct Host {
        hv: Hypervisor,
        dom0: MemStore,
        c: Arc<CDomain>,
        w: SimDomain,
        w_xs: MemStore,
    }

    fn host() -> Host {
        let hv = Hypervisor::new();
        let cfg = CreateConfig {
            max_mem_kib: 64 * 1024,
            ..CreateConfig::default()
        };
        let c = hv.test_domain(&cfg).unwrap();
        let w = hv.test_domain(&cfg).unwrap();
        // What the toolstack does at domain creation: a home owned by the
        // domain, and its `domid` node (libxenvchan's server reads it).
        let dom0 = MemStore::new();
        for d in [c.domid(), w.domid()] {
            let home = format!("/local/domain/{d}");
            dom0.write(
                TxId::NONE,
                &format!("{home}/domid"),
                d.to_string().as_bytes(),
            )
            .unwrap();
            let own = [Perm {
                dom: d,
                access: Access::None,
            }];
            dom0.set_perms(TxId::NONE, &home, &own).unwrap();
            dom0.set_perms(TxId::NONE, &format!("{home}/domid"), &own)
                .unwrap();
        }
        let c = Arc::new(CDomain {
            xs: dom0.connect(c.domid()),
            dom: c,
            wait_limit: Duration::from_secs(10),
        });
        let w_xs = dom0.connect(w.domid());
        Host {
            hv,
            dom0,
            c,
            w,
            w_xs,
        }
    }

    impl Host {
        fn cid(&self) -> DomId {
            self.c.dom.domid()
        }
        fn wid(&self) -> DomId {
            self.w.domid()
        }
        /// Where libxenvchan (in `c`) offers a channel to `w`.
        fn c_path(&self) -> String {
            rendezvous::path(self.cid(), self.wid(), "interop")
        }
        /// Where Windsor (in `w`) offers a channel to `c`.
        fn w_path(&self) -> String {
            rendezvous::path(self.wid(), self.cid(), "interop")
        }
        fn c_server(&self, read_min: usize, write_min: usize) -> shim::Vchan {
            let mut v =
                shim::Vchan::server(&self.c, self.wid(), &self.c_path(), read_min, write_min)
                    .expect("libxenvchan_server_init");
            v.set_blocking(true);
            v
        }
        fn c_client(&self) -> shim::Vchan {
            let mut v = shim::Vchan::client(&self.c, self.wid(), &self.w_path())
                .expect("libxenvchan_client_init");
            v.set_blocking(true);
            v
        }
        fn w_server(&self, read_min: usize, write_min: usize) -> WVchan<'_> {
            let path = self.w_path();
            let cfg = ServerConfig {
                server: self.wid(),
                client: self.cid(),
                path: &path,
                read_min,
                write_min,
            };
            vchan::Vchan::server(&self.w, &self.w_xs, &cfg).unwrap()
        }
        fn w_client(&self) -> WVchan<'_> {
            vchan::Vchan::client(&self.w, &self.w_xs, self.cid(), &self.c_path()).unwrap()
        }
    }

    /// Ring sizes asked of the server and the orders both implementations
    /// must pick: in-page (10/11 either way round) and granted (12..16).
    /// `(read_min, write_min)` asked of the server, `(left, right)` orders.
    type Case = ((usize, usize), (u8, u8));

    const SIZES: &[Case] = &[
        ((1024, 2048), (10, 11)),
        ((2048, 1024), (11, 10)),
        ((1 << 12, 1 << 14), (12, 14)),
        ((1 << 14, 2000), (14, 11)),
        ((1 << 16, 1 << 16), (16, 16)),
    ];

    /// Bytes streamed each way per ring configuration.
    const STREAM: u64 = 3 << 20;

    /// The byte at stream position `i` (so a reader checks every byte).
    fn byte_at(i: u64) -> u8 {
        let x = (i / 8).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((x ^ (x >> 29)) >> ((i % 8) * 8)) as u8
    }

    fn fill(buf: &mut [u8], pos: u64) {
        for (k, b) in buf.iter_mut().enumerate() {
            *b = byte_at(pos + k as u64);
        }
    }

    /// Order-sensitive checksum (FNV-1a, 64 bit).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Sum(u64, u64);

    impl Sum {
        fn new() -> Sum {
            Sum(0xcbf2_9ce4_8422_2325, 0)
        }
        fn add(&mut self, data: &[u8]) {
            for &b in data {
                self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
            }
            self.1 += data.len() as u64;
        }
    }

    /// Deterministic write sizes, 1..=max.
    struct Sizes(u64);

    impl Sizes {
        fn next(&mut self, max: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            1 + (self.0 % max as u64) as usize
        }
    }

    /// Writes `STREAM` bytes in random-sized chunks (up to 1.5 rings, so
    /// writes straddle the ring's end and exceed it) through `write`.
    fn produce(ring: usize, seed: u64, mut write: impl FnMut(&[u8]) -> usize) -> Sum {
        let mut sizes = Sizes(seed);
        let mut sum = Sum::new();
        let mut buf = vec![0u8; ring * 3 / 2];
        let mut pos = 0u64;
        while pos < STREAM {
            let n = sizes.next(buf.len()).min((STREAM - pos) as usize);
            fill(&mut buf[..n], pos);
            let done = write(&buf[..n]);
            assert_eq!(done, n, "blocking write wrote everything");
            sum.add(&buf[..n]);
            pos += n as u64;
        }
        sum
    }

    /// Reads `STREAM` bytes in random-sized reads through `read`, checking
    /// every byte's value.
    fn consume(ring: usize, seed: u64, mut read: impl FnMut(&mut [u8]) -> usize) -> Sum {
        let mut sizes = Sizes(seed);
        let mut sum = Sum::new();
        let mut buf = vec![0u8; ring * 2];
        let mut pos = 0u64;
        while pos < STREAM {
            let want = sizes.next(buf.len()).min((STREAM - pos) as usize);
            let n = read(&mut buf[..want]);
            assert!(n > 0 && n <= want, "read {n} of {want} at {pos}");
            for (k, &b) in buf[..n].iter().enumerate() {
                assert_eq!(b, byte_at(pos + k as u64), "byte at {}", pos + k as u64);
            }
            sum.add(&buf[..n]);
            pos += n as u64;
        }
        sum
    }

    /// Streams both ways between a libxenvchan end and a Windsor end.
    ///
    /// Each thread owns the end it drives, so a failing side drops (closes)
    /// its end while unwinding and the other side, seeing the close,
    /// returns instead of waiting forever.
    fn stream_both_ways<'a>(
        c: shim::Vchan,
        w: WVchan<'a>,
        c_tx_ring: usize,
        c_rx_ring: usize,
    ) -> (shim::Vchan, WVchan<'a>) {
        // libxenvchan → Windsor.
        let (sent, c, (got, w)) = thread::scope(move |s| {
            let mut w = w;
            let mut c = c;
            let reader = s.spawn(move || (consume(c_tx_ring, 7, |b| w.read(b).unwrap()), w));
            let sent = produce(c_tx_ring, 3, |b| c.write(b).expect("libxenvchan_write"));
            (sent, c, reader.join().unwrap())
        });
        assert_eq!(sent, got, "C→Windsor checksum");
        assert_eq!(got.1, STREAM);
        // Windsor → libxenvchan.
        let (sent, w, (got, c)) = thread::scope(move |s| {
            let mut w = w;
            let mut c = c;
            let reader = s.spawn(move || {
                (
                    consume(c_rx_ring, 11, |b| c.read(b).expect("libxenvchan_read")),
                    c,
                )
            });
            let sent = produce(c_rx_ring, 5, |b| w.write(b).unwrap());
            (sent, w, reader.join().unwrap())
        });
        assert_eq!(sent, got, "Windsor→C checksum");
        assert_eq!(got.1, STREAM);
        (c, w)
    }

    #[test]
    fn libxenvchan_server_windsor_client_stream() {
        for &((rmin, wmin), (lo, ro)) in SIZES {
            let start = Instant::now();
            let h = host();
            let mut c = h.c_server(rmin, wmin);
            let w = h.w_client();
            assert_eq!(
                (w.layout().left_order(), w.layout().right_order()),
                (lo, ro)
            );
            assert!(c.is_open() && w.is_open() && w.is_connected());
            // The server reads the left ring and writes the right one.
            let (mut c, w) = stream_both_ways(c, w, 1 << ro, 1 << lo);
            assert!(c.is_open() && w.is_open());
            eprintln!("C server, orders {lo}/{ro}: {:?}", start.elapsed());
        }
    }

    #[test]
    fn windsor_server_libxenvchan_client_stream() {
        for &((rmin, wmin), (lo, ro)) in SIZES {
            let start = Instant::now();
            let h = host();
            let w = h.w_server(rmin, wmin);
            assert_eq!(
                (w.layout().left_order(), w.layout().right_order()),
                (lo, ro)
            );
            let c = h.c_client();
            assert!(w.is_connected(), "libxenvchan's client set cli_live");
            // The client writes the left ring and reads the right one.
            let (mut c, w) = stream_both_ways(c, w, 1 << lo, 1 << ro);
            assert!(c.is_open() && w.is_open());
            eprintln!("C client, orders {lo}/{ro}: {:?}", start.elapsed());
        }
    }

    /// Both directions at once, each end driven by one thread with
    /// non-blocking calls, waiting for an event only when neither direction
    /// can progress: both notify bits in flight at the same time, with no
    /// lost wake-up on either implementation (a lost one fails the C side
    /// after the shim's 10 s `wait_limit`, the Windsor side after 10 s).
    #[test]
    fn full_duplex_with_non_blocking_ends() {
        const TOTAL: u64 = 2 << 20;
        for &((rmin, wmin), (lo, ro)) in [SIZES[0], SIZES[2], SIZES[4]].iter() {
            let h = host();
            let mut c = h.c_server(rmin, wmin);
            let mut w = h.w_client();
            c.set_blocking(false);
            w.set_blocking(false);
            let (c_tx, c_rx) = (1usize << ro, 1usize << lo);
            let w = thread::scope(|s| {
                let wt = s.spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(30);
                    let (mut sent, mut got) = (0u64, 0u64);
                    let (mut out, mut inb) = (vec![0u8; c_rx], vec![0u8; c_tx]);
                    while sent < TOTAL || got < TOTAL {
                        let mut progress = false;
                        if sent < TOTAL {
                            let n = out.len().min((TOTAL - sent) as usize);
                            fill(&mut out[..n], sent);
                            match w.write(&out[..n]) {
                                Ok(k) => (sent, progress) = (sent + k as u64, true),
                                Err(Error::WouldBlock) => {}
                                Err(e) => panic!("Windsor write: {e}"),
                            }
                        }
                        if got < TOTAL {
                            match w.read(&mut inb) {
                                Ok(k) => {
                                    assert!(k > 0, "EOF before the end");
                                    for (i, &b) in inb[..k].iter().enumerate() {
                                        assert_eq!(b, byte_at(got + i as u64));
                                    }
                                    (got, progress) = (got + k as u64, true);
                                }
                                Err(Error::WouldBlock) => {}
                                Err(e) => panic!("Windsor read: {e}"),
                            }
                        }
                        if !progress {
                            assert!(
                                Instant::now() < deadline,
                                "Windsor end stuck at {sent}/{got}"
                            );
                            w.wait(Some(Duration::from_millis(500))).unwrap();
                        }
                    }
                    w
                });
                let (mut sent, mut got) = (0u64, 0u64);
                let (mut out, mut inb) = (vec![0u8; c_tx], vec![0u8; c_rx]);
                while sent < TOTAL || got < TOTAL {
                    let mut progress = false;
                    if sent < TOTAL {
                        let n = out.len().min((TOTAL - sent) as usize);
                        fill(&mut out[..n], sent);
                        let k = c.write(&out[..n]).expect("libxenvchan_write");
                        (sent, progress) = (sent + k as u64, k > 0);
                    }
                    if got < TOTAL {
                        let k = c.read(&mut inb).expect("libxenvchan_read");
                        for (i, &b) in inb[..k].iter().enumerate() {
                            assert_eq!(b, byte_at(got + i as u64));
                        }
                        got += k as u64;
                        progress |= k > 0;
                    }
                    if !progress {
                        c.wait().expect("libxenvchan_wait: no lost wake-up");
                    }
                }
                wt.join().unwrap()
            });
            assert!(c.is_open() && w.is_open());
        }
    }

    /// Packet `i` of `n` bytes: its index, then a pattern.
    fn packet(i: usize, n: usize) -> Vec<u8> {
        (0..n)
            .map(|k| (i * 31 + k * 7) as u8 ^ (k >> 8) as u8)
            .collect()
    }

    fn packet_sizes(count: usize, max: usize) -> Vec<usize> {
        let mut s = Sizes(0x1234_5678);
        (0..count).map(|_| s.next(max)).collect()
    }

    #[test]
    fn packets_keep_boundaries_both_ways() {
        for &((rmin, wmin), (lo, ro)) in &SIZES[..3] {
            let h = host();
            let mut c = h.c_server(rmin, wmin);
            let mut w = h.w_client();
            let (c_tx, c_rx) = (1usize << ro, 1usize << lo);
            // libxenvchan_send → Windsor recv, each packet whole.
            let sizes = packet_sizes(1500, c_tx);
            // (Each thread owns its end: see `stream_both_ways`.)
            let (mut c, mut w) = thread::scope(|s| {
                let sz = &sizes;
                let r = s.spawn(move || {
                    let mut buf = vec![0u8; c_tx];
                    for (i, &n) in sz.iter().enumerate() {
                        w.recv(&mut buf[..n]).unwrap();
                        assert_eq!(buf[..n], packet(i, n)[..], "packet {i}");
                    }
                    w
                });
                for (i, &n) in sz.iter().enumerate() {
                    assert_eq!(c.send(&packet(i, n)), Ok(n), "libxenvchan_send {i}");
                }
                (c, r.join().unwrap())
            });
            // Windsor send → libxenvchan_recv.
            let sizes = packet_sizes(1500, c_rx);
            let (mut c, mut w) = thread::scope(|s| {
                let sz = &sizes;
                let r = s.spawn(move || {
                    let mut buf = vec![0u8; c_rx];
                    for (i, &n) in sz.iter().enumerate() {
                        assert_eq!(c.recv(&mut buf[..n]), Ok(n), "libxenvchan_recv {i}");
                        assert_eq!(buf[..n], packet(i, n)[..], "packet {i}");
                    }
                    c
                });
                for (i, &n) in sz.iter().enumerate() {
                    w.send(&packet(i, n)).unwrap();
                }
                (r.join().unwrap(), w)
            });
            // Larger than the ring: refused whole by both.
            assert!(c.send(&vec![1; c_tx + 1]).is_err());
            assert!(matches!(
                w.send(&vec![1; c_rx + 1]),
                Err(Error::TooLarge { .. })
            ));

            // All or nothing: n - 1 bytes there is not a packet of n.
            c.set_blocking(false);
            w.set_blocking(false);
            let n = 100;
            w.write(&packet(9, n)[..n - 1]).unwrap();
            let mut buf = vec![0u8; n];
            assert_eq!(
                c.recv(&mut buf),
                Ok(0),
                "non-blocking libxenvchan_recv waits for the whole packet"
            );
            assert_eq!(c.data_ready(), n - 1, "nothing consumed");
            w.write(&packet(9, n)[n - 1..]).unwrap();
            assert_eq!(c.recv(&mut buf), Ok(n));
            assert_eq!(buf, packet(9, n));
            c.write(&packet(4, n)[..n - 1]).unwrap();
            assert_eq!(w.recv(&mut buf), Err(Error::WouldBlock));
            assert_eq!(w.data_ready().unwrap(), n - 1);
            c.write(&packet(4, n)[n - 1..]).unwrap();
            w.recv(&mut buf).unwrap();
            assert_eq!(buf, packet(4, n));
        }
    }

    #[test]
    fn data_ready_and_buffer_space_agree() {
        for &((rmin, wmin), (lo, ro)) in &SIZES[2..4] {
            let h = host();
            let mut c = h.c_server(rmin, wmin);
            let mut w = h.w_client();
            c.set_blocking(false);
            w.set_blocking(false);
            let (c_tx, c_rx) = (1usize << ro, 1usize << lo);
            let ring = c.ring_addr();
            let notify_bits = |off| shim::peek_u8(ring, off).unwrap();

            // Notification bits across implementations. The client's
            // connect kicked the server (both implementations do).
            assert_eq!(c.wait(), Ok(()));
            // libxenvchan asks (in cli_notify) to hear of writes; Windsor's
            // write clears the request and kicks.
            assert_eq!(c.data_ready(), 0);
            assert_eq!(notify_bits(field::CLI_NOTIFY) & NOTIFY_WRITE, NOTIFY_WRITE);
            w.write(b"ping").unwrap();
            assert_eq!(notify_bits(field::CLI_NOTIFY) & NOTIFY_WRITE, 0);
            assert_eq!(c.wait(), Ok(()), "libxenvchan woken by Windsor's kick");
            let mut four = [0u8; 4];
            assert_eq!(c.read(&mut four), Ok(4));
            assert_eq!(&four, b"ping");
            // And the other way round, in srv_notify.
            assert_eq!(w.data_ready().unwrap(), 0);
            assert_eq!(notify_bits(field::SRV_NOTIFY) & NOTIFY_WRITE, NOTIFY_WRITE);
            assert_eq!(c.write(b"pong"), Ok(4));
            assert_eq!(notify_bits(field::SRV_NOTIFY) & NOTIFY_WRITE, 0);
            assert!(
                w.wait(Some(Duration::from_secs(5))).unwrap(),
                "Windsor woken by libxenvchan's kick"
            );
            assert_eq!(w.read(&mut four).unwrap(), 4);
            assert_eq!(&four, b"pong");

            assert_eq!(c.buffer_space(), c_tx);
            assert_eq!(w.buffer_space().unwrap(), c_rx);
            assert_eq!((c.data_ready(), w.data_ready().unwrap()), (0, 0));
            assert_eq!((w.read_ring_size(), w.write_ring_size()), (c_tx, c_rx));

            // Windsor writes k bytes, C reads j of them.
            let k = c_rx / 2 + 123;
            assert_eq!(w.write(&vec![5; k]).unwrap(), k);
            assert_eq!(c.data_ready(), k);
            assert_eq!(w.buffer_space().unwrap(), c_rx - k);
            let mut buf = vec![0u8; 1000];
            assert_eq!(c.read(&mut buf), Ok(1000));
            assert_eq!(c.data_ready(), k - 1000);
            assert_eq!(w.buffer_space().unwrap(), c_rx - k + 1000);
            // Fill to the brim: a non-blocking write takes what fits.
            assert_eq!(w.write(&vec![6; c_rx]).unwrap(), c_rx - k + 1000);
            assert_eq!(w.buffer_space().unwrap(), 0);
            assert_eq!(c.data_ready(), c_rx);
            assert_eq!(w.write(&[1]), Err(Error::WouldBlock));

            // The other way.
            let k = c_tx - 7;
            assert_eq!(c.write(&vec![7; k]), Ok(k));
            assert_eq!(w.data_ready().unwrap(), k);
            assert_eq!(c.buffer_space(), 7);
            assert_eq!(w.read(&mut buf).unwrap(), 1000);
            assert_eq!(w.data_ready().unwrap(), k - 1000);
            assert_eq!(c.buffer_space(), 1007);
            assert_eq!(
                c.write(&vec![8; 5000]),
                Ok(1007),
                "non-blocking libxenvchan_write"
            );
            assert_eq!(c.write(&[1]), Ok(0));
        }
    }

    /// Sends `msg` from one end, closes it, and checks the other end reads
    /// the message, then sees the close.
    #[test]
    fn close_by_either_side_is_observed() {
        let msg = b"last words";
        let mut buf = [0u8; 64];
        for (sizes, _) in [SIZES[0], SIZES[4]] {
            // libxenvchan server closes; Windsor client reads to EOF.
            let h = host();
            let mut c = h.c_server(sizes.0, sizes.1);
            let mut w = h.w_client();
            assert_eq!(c.write(msg), Ok(msg.len()));
            assert!(shim::live_regions(&h.c) > 0);
            drop(c);
            assert_eq!(shim::live_regions(&h.c), 0, "page and rings all unshared");
            assert_eq!(w.read(&mut buf).unwrap(), msg.len());
            assert_eq!(&buf[..msg.len()], msg);
            assert_eq!(w.read(&mut buf).unwrap(), 0, "EOF after libxenvchan_close");
            assert!(!w.is_open());
            assert_eq!(w.write(b"x"), Err(Error::Closed));
            // libxenvchan_close removed its xenstore entry.
            assert!(h.dom0.read(TxId::NONE, &h.c_path()).is_err());

            // Windsor client closes; the libxenvchan server sees it.
            let h = host();
            let mut c = h.c_server(sizes.0, sizes.1);
            let mut w = h.w_client();
            w.write(msg).unwrap();
            assert!(c.is_open());
            drop(w);
            assert!(!c.is_open(), "libxenvchan_is_open after the client closed");
            assert_eq!(c.read(&mut buf), Ok(msg.len()));
            assert_eq!(&buf[..msg.len()], msg);
            assert!(
                c.read(&mut buf).is_err(),
                "then libxenvchan_read reports the close"
            );

            // Windsor server closes; the libxenvchan client sees it.
            let h = host();
            let mut w = h.w_server(sizes.0, sizes.1);
            let mut c = h.c_client();
            w.write(msg).unwrap();
            assert!(c.is_open());
            w.close_and_withdraw(&h.w_xs).unwrap();
            assert!(!c.is_open(), "libxenvchan_is_open after the server closed");
            assert_eq!(c.read(&mut buf), Ok(msg.len()));
            assert!(c.read(&mut buf).is_err());
            assert!(c.write(b"x").is_err());

            // libxenvchan client closes; the Windsor server sees it.
            let h = host();
            let mut w = h.w_server(sizes.0, sizes.1);
            let mut c = h.c_client();
            assert_eq!(c.write(msg), Ok(msg.len()));
            drop(c);
            assert_eq!(shim::live_regions(&h.c), 0, "page and rings all unmapped");
            assert_eq!(w.read(&mut buf).unwrap(), msg.len());
            assert_eq!(w.read(&mut buf).unwrap(), 0);
            assert!(!w.is_open());
        }
    }

    /// A blocked reader on each side is woken by the other side's close
    /// (the close notifies the port unconditionally).
    #[test]
    fn close_wakes_a_blocked_reader() {
        let h = host();
        let mut c = h.c_server(1 << 12, 1 << 12);
        let w = h.w_client();
        thread::scope(|s| {
            let r = s.spawn(move || {
                let mut buf = [0u8; 8];
                c.read(&mut buf)
            });
            thread::sleep(Duration::from_millis(50));
            drop(w);
            assert!(
                r.join().unwrap().is_err(),
                "libxenvchan_read woke and saw the close"
            );
        });
        let h = host();
        let c = h.c_server(1 << 12, 1 << 12);
        let mut w = h.w_client();
        let start = Instant::now();
        thread::scope(|s| {
            let r = s.spawn(move || {
                let mut buf = [0u8; 8];
                w.read(&mut buf)
            });
            thread::sleep(Duration::from_millis(50));
            drop(c);
            assert_eq!(r.join().unwrap(), Ok(0));
        });
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    /// The domain running libxenvchan dies without closing: a Windsor end
    /// blocked in `read` reports the death (its port stops being
    /// interdomain) instead of waiting forever.
    #[test]
    fn death_of_the_libxenvchan_domain_is_observed() {
        let h = host();
        let c = h.c_server(1 << 12, 1 << 12);
        let mut w = h.w_client();
        w.set_liveness_poll(Duration::from_millis(20));
        let start = Instant::now();
        thread::scope(|s| {
            let r = s.spawn(move || {
                let mut buf = [0u8; 8];
                w.read(&mut buf)
            });
            thread::sleep(Duration::from_millis(50));
            let dom = h.cid();
            h.hv.kill(dom).unwrap();
            h.hv.dom0().destroy(dom).unwrap();
            assert_eq!(r.join().unwrap(), Err(Error::PeerDied));
        });
        assert!(start.elapsed() < Duration::from_secs(10));
        // libxenvchan's own clean-up in a dead domain fails quietly.
        drop(c);
    }

    /// The 24-byte header and grant list of a server's shared page.
    fn header_of_c(v: &shim::Vchan) -> Vec<u8> {
        (0..field::GRANTS)
            .map(|o| shim::peek_u8(v.ring_addr(), o).unwrap())
            .collect()
    }

    #[test]
    fn servers_publish_the_same_xenstore_nodes_and_page() {
        let (rmin, wmin) = (1 << 13, 1 << 12);
        let h = host();
        let c = h.c_server(rmin, wmin);
        let w = h.w_server(rmin, wmin);

        let nodes = |base: &str| {
            let mut names = h.dom0.directory(TxId::NONE, base).unwrap();
            names.sort();
            names
                .into_iter()
                .map(|n| {
                    let p = format!("{base}/{n}");
                    let v = h.dom0.read(TxId::NONE, &p).unwrap();
                    let perms = h.dom0.get_perms(TxId::NONE, &p).unwrap();
                    (n, v, perms)
                })
                .collect::<Vec<_>>()
        };
        let (cn, wn) = (nodes(&h.c_path()), nodes(&h.w_path()));
        let names =
            |v: &[(String, Vec<u8>, Vec<Perm>)]| v.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
        assert_eq!(names(&cn), ["event-channel", "ring-ref"]);
        assert_eq!(names(&cn), names(&wn));
        for ((_, cv, cp), (_, wv, wp)) in cn.iter().zip(&wn) {
            // Plain decimal, no NUL, no sign, no padding, non-zero.
            for v in [cv, wv] {
                let s = std::str::from_utf8(v).unwrap();
                assert!(
                    !s.is_empty() && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit()),
                    "{s:?}"
                );
            }
            // Owner: the server, no access for others; read for the client.
            let perm = |dom, access| Perm { dom, access };
            assert_eq!(
                cp,
                &[perm(h.cid(), Access::None), perm(h.wid(), Access::Read)]
            );
            assert_eq!(
                wp,
                &[perm(h.wid(), Access::None), perm(h.cid(), Access::Read)]
            );
        }
        // The base directory itself: both created it implicitly by writing.
        let base_perms = |p: &str| h.dom0.get_perms(TxId::NONE, p).unwrap();
        assert_eq!(base_perms(&h.c_path())[0].dom, h.cid());
        assert_eq!(base_perms(&h.w_path())[0].dom, h.wid());
        let num = |v: &[u8]| std::str::from_utf8(v).unwrap().parse::<u32>().unwrap();
        assert_eq!(
            num(&cn[0].1),
            c.port(),
            "event-channel is libxenvchan's port"
        );

        // The shared pages agree: orders, live and notify bytes (grant
        // values differ, the count does not). Map Windsor's page as the
        // client domain would.
        let w_ref = GrantRef(num(&wn[1].1));
        let m = h.c.dom.map(h.wid(), &[w_ref], true).unwrap();
        let w_header: Vec<u8> = (0..field::GRANTS)
            .map(|o| m.ro().load_u8(o, std::sync::atomic::Ordering::SeqCst))
            .collect();
        let c_header = header_of_c(&c);
        assert_eq!(
            c_header[16..],
            w_header[16..],
            "orders, cli_live, srv_live, notify bytes"
        );
        assert_eq!(&c_header[16..20], &[13, 0, 12, 0]);
        assert_eq!(&c_header[20..24], &[2, 1, NOTIFY_WRITE, 0]);
        assert_eq!(c_header[..16], [0; 16], "indices start at 0");
        assert_eq!(w_header[..16], [0; 16]);
        let grants = |get: &dyn Fn(usize) -> u32| (0..3).map(get).filter(|&g| g != 0).count();
        let cg = grants(&|i| shim::peek_u32(c.ring_addr(), field::GRANTS + 4 * i).unwrap());
        let wg = grants(&|i| {
            m.ro()
                .load_u32(field::GRANTS + 4 * i, std::sync::atomic::Ordering::SeqCst)
        });
        assert_eq!((cg, wg), (3, 3), "2 + 1 ring pages listed");
        drop(m);

        // Closing removes the whole entry, on both.
        drop(c);
        w.close_and_withdraw(&h.w_xs).unwrap();
        assert!(h.dom0.read(TxId::NONE, &h.c_path()).is_err());
        assert!(h.dom0.read(TxId::NONE, &h.w_path()).is_err());
    }
}
