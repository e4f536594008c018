//! vchan benchmarks against their peers in the same run, as JSON lines
//! `{"name","value","unit","baseline","ratio"}`:
//!
//! * `stream_64k_order16_vs_memcpy`: GiB/s moving a payload buffer
//!   (`VCHAN_BENCH_MIB`, default 512 MiB, larger than the L3) into a
//!   destination buffer with 64 KiB writes through an order-16 vchan (two
//!   domains on `xen-sim`, one thread each), against one thread
//!   `memcpy`ing the same payload buffer to the same destination in 64 KiB
//!   blocks (goal ≥ 0.7);
//! * `stream_64k_order16_vs_memcpy_hot64k`: the same vchan figure against
//!   the strictest baseline, `memcpy` of one cache-hot 64 KiB block over and
//!   over (no memory traffic at all);
//! * `stream_64k_order16_vs_socketpair`: the same transfer over a Unix
//!   `socketpair` with 64 KiB writes (goal ≥ 4);
//! * `pingpong_64b_vs_socketpair`: µs per 64-byte round trip (packet
//!   send/recv, default adaptive spin-then-block waiting) against the same over a
//!   `socketpair` (goal ≤ 0.1).
//!
//! Each figure is the best of 5 runs, for vchan and its baselines alike
//! (the bench machines are shared: a median measures the neighbours' load
//! as much as the code; runs interleave vchan and baselines so both see the
//! same conditions). Run with
//! `cargo bench -p vchan --bench vchan`. `VCHAN_SPIN_US` overrides the
//! vchan spin time (default `vchan::channel::DEFAULT_SPIN`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{cfg, TestStore};
use vchan::{rendezvous, ServerConfig, Vchan};
use xen::platform::Platform;
use xen_sim::{Hypervisor, SimDomain};

const CHUNK: usize = 64 << 10;
const RUNS: usize = 5;
const GIB: f64 = (1u64 << 30) as f64;

fn best_rate(v: Vec<f64>) -> f64 {
    v.into_iter().fold(0.0, f64::max)
}

fn best_time(v: Vec<f64>) -> f64 {
    v.into_iter().fold(f64::INFINITY, f64::min)
}

fn line(name: &str, value: f64, unit: &str, baseline: f64) {
    println!(
        "{{\"name\":\"{name}\",\"value\":{value:.3},\"unit\":\"{unit}\",\"baseline\":{baseline:.3},\"ratio\":{:.3}}}",
        value / baseline
    );
}

/// One thread copies `src` to `dst` in 64 KiB `memcpy`s.
fn memcpy_gibs(src: &[u8], dst: &mut [u8]) -> f64 {
    let start = Instant::now();
    for (d, s) in dst.chunks_mut(CHUNK).zip(src.chunks(CHUNK)) {
        d.copy_from_slice(black_box(s));
    }
    black_box(&mut *dst);
    src.len() as f64 / GIB / start.elapsed().as_secs_f64()
}

/// One thread copies the same 64 KiB block `total / 64 KiB` times (both
/// buffers stay in cache: the strictest baseline).
fn memcpy_hot_gibs(total: u64) -> f64 {
    let src = vec![0x5au8; CHUNK];
    let mut dst = vec![0u8; CHUNK];
    let start = Instant::now();
    let mut done = 0;
    while done < total {
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
        done += CHUNK as u64;
    }
    total as f64 / GIB / start.elapsed().as_secs_f64()
}

fn socketpair_gibs(src: &[u8], dst: &mut [u8]) -> f64 {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let start = Instant::now();
    thread::scope(|s| {
        s.spawn(move || {
            for c in src.chunks(CHUNK) {
                a.write_all(c).unwrap();
            }
        });
        let mut got = 0;
        while got < dst.len() {
            let end = (got + CHUNK).min(dst.len());
            got += b.read(&mut dst[got..end]).unwrap();
        }
    });
    src.len() as f64 / GIB / start.elapsed().as_secs_f64()
}

struct Pair {
    _hv: Hypervisor,
    srv: SimDomain,
    cli: SimDomain,
    xs: TestStore,
}

impl Pair {
    fn new() -> Pair {
        let hv = Hypervisor::new();
        let srv = hv.test_domain(&cfg()).unwrap();
        let cli = hv.test_domain(&cfg()).unwrap();
        Pair {
            _hv: hv,
            srv,
            cli,
            xs: TestStore::default(),
        }
    }

    fn connect(&self, order_bytes: usize) -> (Vchan<'_, SimDomain>, Vchan<'_, SimDomain>) {
        let path = rendezvous::path(self.srv.domid(), self.cli.domid(), "bench");
        let c = ServerConfig {
            server: self.srv.domid(),
            client: self.cli.domid(),
            path: &path,
            read_min: order_bytes,
            write_min: order_bytes,
        };
        let mut s = Vchan::server(&self.srv, &self.xs, &c).unwrap();
        let mut c = Vchan::client(&self.cli, &self.xs, self.srv.domid(), &path).unwrap();
        if let Some(us) = std::env::var("VCHAN_SPIN_US")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            s.set_spin(Duration::from_micros(us));
            c.set_spin(Duration::from_micros(us));
        }
        (s, c)
    }
}

fn vchan_gibs(src: &[u8], dst: &mut [u8]) -> f64 {
    let p = Pair::new();
    let (mut srv, mut cli) = p.connect(1 << 16);
    assert_eq!(srv.layout().right_order(), 16);
    let start = Instant::now();
    thread::scope(|s| {
        s.spawn(move || {
            for c in src.chunks(CHUNK) {
                srv.write(c).unwrap();
            }
        });
        let mut got = 0;
        while got < dst.len() {
            let end = (got + CHUNK).min(dst.len());
            got += cli.read(&mut dst[got..end]).unwrap();
        }
    });
    src.len() as f64 / GIB / start.elapsed().as_secs_f64()
}

fn socketpair_rtt_us(iters: u32) -> f64 {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    thread::scope(|s| {
        s.spawn(move || {
            let mut m = [0u8; 64];
            for _ in 0..iters {
                b.read_exact(&mut m).unwrap();
                b.write_all(&m).unwrap();
            }
        });
        let mut m = [1u8; 64];
        let start = Instant::now();
        for _ in 0..iters {
            a.write_all(&m).unwrap();
            a.read_exact(&mut m).unwrap();
        }
        start.elapsed().as_secs_f64() * 1e6 / f64::from(iters)
    })
}

fn vchan_rtt_us(iters: u32) -> f64 {
    let p = Pair::new();
    let (mut srv, mut cli) = p.connect(1 << 12);
    thread::scope(|s| {
        s.spawn(move || {
            let mut m = [0u8; 64];
            for _ in 0..iters {
                srv.recv(&mut m).unwrap();
                srv.send(&m).unwrap();
            }
        });
        let mut m = [1u8; 64];
        let start = Instant::now();
        for _ in 0..iters {
            cli.send(&m).unwrap();
            cli.recv(&mut m).unwrap();
        }
        start.elapsed().as_secs_f64() * 1e6 / f64::from(iters)
    })
}

fn main() {
    // `cargo bench` passes `--bench`; filters are not supported.
    let mib: usize = std::env::var("VCHAN_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let src: Vec<u8> = (0..mib << 20).map(|i| (i * 7 + (i >> 12)) as u8).collect();
    let mut dst = vec![0u8; src.len()];

    let mut mem = Vec::new();
    let mut hot = Vec::new();
    let mut vch = Vec::new();
    let mut sock = Vec::new();
    for _ in 0..RUNS {
        mem.push(memcpy_gibs(&src, &mut dst));
        hot.push(memcpy_hot_gibs(src.len() as u64));
        dst.fill(0);
        vch.push(vchan_gibs(&src, &mut dst));
        assert!(dst == src, "vchan corrupted the stream");
        sock.push(socketpair_gibs(&src, &mut dst));
    }
    let vch = best_rate(vch);
    line("stream_64k_order16_vs_memcpy", vch, "GiB/s", best_rate(mem));
    line(
        "stream_64k_order16_vs_memcpy_hot64k",
        vch,
        "GiB/s",
        best_rate(hot),
    );
    line(
        "stream_64k_order16_vs_socketpair",
        vch,
        "GiB/s",
        best_rate(sock),
    );
    drop((src, dst));

    let mut v_rtt = Vec::new();
    let mut s_rtt = Vec::new();
    for _ in 0..RUNS {
        v_rtt.push(vchan_rtt_us(50_000));
        s_rtt.push(socketpair_rtt_us(10_000));
    }
    line(
        "pingpong_64b_vs_socketpair",
        best_time(v_rtt),
        "us",
        best_time(s_rtt),
    );
}
