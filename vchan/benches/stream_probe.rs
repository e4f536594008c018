//! Probe (not run by `cargo xtask bench`): the stream figures of
//! `benches/vchan.rs` under two payload patterns, to see where the
//! vchan/socketpair ratio comes from. JSON lines, best of `RUNS` and the
//! range over runs, for each transport:
//!
//! * `cold`: a `VCHAN_PROBE_MIB` (default 512) MiB payload, larger than
//!   the caches, copied into a destination of the same size (the pattern
//!   of `benches/vchan.rs`);
//! * `hot`: the same number of bytes, but the writer sends one 64 KiB
//!   buffer over and over and the reader reads into one 64 KiB buffer
//!   (what `iperf`-style tools do; no DRAM traffic for the payload).
//!
//! Transports: single-thread `memcpy` (64 KiB blocks), vchan (order-16
//! ring, two domains on `xen-sim`, 64 KiB writes), Unix `socketpair`
//! (64 KiB writes). Run with `cargo bench -p vchan --bench stream_probe`;
//! `VCHAN_PROBE_CHUNK` changes the write size.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Instant;

use common::{cfg, TestStore};
use vchan::{rendezvous, ServerConfig, Vchan};
use xen::platform::Platform;
use xen_sim::Hypervisor;

/// Write size (`VCHAN_PROBE_CHUNK` bytes, default 64 KiB); the payload is
/// a whole number of chunks.
fn chunk() -> usize {
    static C: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *C.get_or_init(|| {
        std::env::var("VCHAN_PROBE_CHUNK")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&c: &usize| (64..=1 << 20).contains(&c))
            .unwrap_or(64 << 10)
    })
}
const RUNS: usize = 5;
const GIB: f64 = (1u64 << 30) as f64;

/// Where the writer takes chunk `i` from and the reader puts it.
#[derive(Clone, Copy, PartialEq)]
enum Pattern {
    Cold,
    Hot,
}

fn rate(bytes: usize, start: Instant) -> f64 {
    bytes as f64 / GIB / start.elapsed().as_secs_f64()
}

fn memcpy(p: Pattern, src: &[u8], dst: &mut [u8]) -> f64 {
    let start = Instant::now();
    match p {
        Pattern::Cold => {
            for (d, s) in dst.chunks_mut(chunk()).zip(src.chunks(chunk())) {
                d.copy_from_slice(black_box(s));
            }
        }
        Pattern::Hot => {
            let (s, d) = (&src[..chunk()], &mut dst[..chunk()]);
            for _ in 0..src.len() / chunk() {
                d.copy_from_slice(black_box(s));
                black_box(&mut *d);
            }
        }
    }
    black_box(&mut *dst);
    rate(src.len(), start)
}

/// Runs `send(chunk)` for every chunk on one thread and `recv(buf) -> n`
/// on another until `total` bytes arrived.
fn pump(
    p: Pattern,
    src: &[u8],
    dst: &mut [u8],
    mut send: impl FnMut(&[u8]) + Send,
    mut recv: impl FnMut(&mut [u8]) -> usize,
) -> f64 {
    let total = src.len();
    let start = Instant::now();
    thread::scope(|s| {
        s.spawn(move || {
            for i in 0..total / chunk() {
                let off = if p == Pattern::Cold { i * chunk() } else { 0 };
                send(&src[off..off + chunk()]);
            }
        });
        let mut got = 0;
        while got < total {
            let off = if p == Pattern::Cold {
                got
            } else {
                got % chunk()
            };
            let end = (off + chunk()).min(dst.len()).min(off + (total - got));
            got += recv(&mut dst[off..end]);
        }
    });
    rate(total, start)
}

fn socketpair(p: Pattern, src: &[u8], dst: &mut [u8]) -> f64 {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    pump(
        p,
        src,
        dst,
        |c| a.write_all(c).unwrap(),
        |d| b.read(d).unwrap(),
    )
}

fn vchan(p: Pattern, src: &[u8], dst: &mut [u8]) -> f64 {
    let hv = Hypervisor::new();
    let (sd, cd) = (
        hv.test_domain(&cfg()).unwrap(),
        hv.test_domain(&cfg()).unwrap(),
    );
    let xs = TestStore::default();
    let path = rendezvous::path(sd.domid(), cd.domid(), "probe");
    let c = ServerConfig {
        server: sd.domid(),
        client: cd.domid(),
        path: &path,
        read_min: 1 << 16,
        write_min: 1 << 16,
    };
    let mut srv = Vchan::server(&sd, &xs, &c).unwrap();
    let mut cli = Vchan::client(&cd, &xs, sd.domid(), &path).unwrap();
    assert_eq!(srv.layout().right_order(), 16);
    pump(
        p,
        src,
        dst,
        |c| {
            srv.write(c).unwrap();
        },
        |d| cli.read(d).unwrap(),
    )
}

fn main() {
    let mib: usize = std::env::var("VCHAN_PROBE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let len = (mib << 20) / chunk() * chunk();
    let src: Vec<u8> = (0..len).map(|i| (i * 7 + (i >> 12)) as u8).collect();
    let mut dst = vec![0u8; src.len()];
    type Run = fn(Pattern, &[u8], &mut [u8]) -> f64;
    let transports: [(&str, Run); 3] = [
        ("memcpy", memcpy),
        ("vchan", vchan),
        ("socketpair", socketpair),
    ];
    for (pname, p) in [("cold", Pattern::Cold), ("hot", Pattern::Hot)] {
        let mut res = vec![Vec::new(); transports.len()];
        for _ in 0..RUNS {
            for (k, (_, f)) in transports.iter().enumerate() {
                dst.fill(0);
                res[k].push(f(p, &src, &mut dst));
                if p == Pattern::Cold {
                    assert!(dst == src, "{} corrupted the stream", transports[k].0);
                } else {
                    assert!(dst[..chunk()] == src[..chunk()]);
                }
            }
        }
        for (k, (name, _)) in transports.iter().enumerate() {
            let best = res[k].iter().copied().fold(0.0, f64::max);
            let worst = res[k].iter().copied().fold(f64::INFINITY, f64::min);
            println!(
                "{{\"chunk\":{},\"pattern\":\"{pname}\",\"transport\":\"{name}\",\"best\":{best:.3},\"worst\":{worst:.3},\"unit\":\"GiB/s\"}}",
                chunk()
            );
        }
    }
}
