//! blkback through the rings in host mode against `fio` with direct I/O on
//! the same file, in one run. Prints one JSON line per measurement:
//! `{"name","value","unit","baseline","ratio"}` (baseline = fio).
//!
//! `cargo bench -p windsor-blkback --bench blkback` (or `cargo xtask bench
//! blkback`). `BLKBACK_BENCH_SECS` sets the seconds per measurement (3),
//! `BLKBACK_BENCH_DIR` the directory of the test file (the target dir).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use windsor_blkback::service::{self, Config};
use windsor_blkback::xenbus::{plumb, Plumbing};
use windsor_blkfront::driver::{BlkFront, Geometry};
use windsor_blkfront::request::Op;
use windsor_xenstore::client::{MemStore, XenStore};
use xen::abi::blkif::BLKIF_RSP_OKAY;
use xen::platform::{CreateConfig, DomainControl, Platform};
use xen_sim::Hypervisor;

const FILE_MIB: u64 = 512;

fn line(name: &str, value: f64, unit: &str, baseline: f64) {
    println!(
        "{{\"name\":\"{name}\",\"value\":{value:.3},\"unit\":\"{unit}\",\"baseline\":{baseline:.3},\"ratio\":{:.3}}}",
        value / baseline
    );
}

fn secs() -> u64 {
    std::env::var("BLKBACK_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// Runs fio on `file`; returns its JSON job report.
fn fio(file: &Path, name: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new("fio")
        .arg(format!("--name={name}"))
        .arg(format!("--filename={}", file.display()))
        .arg(format!("--size={FILE_MIB}M"))
        .args(["--direct=1", "--time_based", "--output-format=json"])
        .arg(format!("--runtime={}", secs()))
        .args(args)
        .output()
        .expect("fio is needed (cargo xtask setup installs it)");
    assert!(
        out.status.success(),
        "fio: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("fio JSON");
    v["jobs"][0].clone()
}

fn main() {
    let dir = std::env::var("BLKBACK_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/blkback-bench")
        });
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("disk.raw");
    // Lay the whole file out (fio's sequential write, untimed).
    let _ = std::fs::remove_file(&file);
    let st = Command::new("fio")
        .args(["--name=layout", "--rw=write", "--bs=1M", "--direct=1"])
        .arg(format!("--filename={}", file.display()))
        .arg(format!("--size={FILE_MIB}M"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("fio is needed (cargo xtask setup installs it)");
    assert!(st.success());

    // Host mode: a blkback domain and a guest on xen-sim.
    let hv = Hypervisor::new();
    let xs = MemStore::new();
    let mem = CreateConfig {
        max_mem_kib: 256 * 1024,
        ..CreateConfig::default()
    };
    let back = hv.test_domain(&mem).unwrap();
    let bid = back.domid();
    let (b, x) = (back.clone(), xs.clone());
    let cfg = Config {
        workers: 32,
        direct: true,
        ..Config::default()
    };
    let svc = std::thread::spawn(move || {
        let _ = service::run(&b, move || x.connect(bid), &cfg);
    });
    let g = hv.test_domain(&mem).unwrap();
    let gx = xs.connect(g.domid());
    let mut devid = 51712;
    let mut connect = |geo: Geometry| {
        devid += 1;
        plumb(
            &xs,
            &Plumbing {
                backend: bid,
                frontend: g.domid(),
                devid,
                params: file.to_str().unwrap(),
                writable: true,
            },
        )
        .unwrap();
        BlkFront::connect(&g, &gx, devid, geo).unwrap()
    };
    let run_for = Duration::from_secs(secs());

    // 1 MiB sequential write, 8 in flight (indirect requests of 256 segments).
    let f_seq = fio(
        &file,
        "seqwrite",
        &["--rw=write", "--bs=1M", "--ioengine=libaio", "--iodepth=8"],
    );
    let fio_bw = f_seq["write"]["bw_bytes"].as_f64().unwrap();
    let mut f = connect(Geometry {
        queue_depth: 8,
        pages_per_request: 256,
        ring_page_order: 0,
    });
    let sectors = f.disk().sectors;
    let per = 1u64 << 20;
    let mut next = 0u64;
    let start = Instant::now();
    let mut bytes = 0u64;
    for s in 0..8 {
        f.submit(s, Op::Write, next / 512, per as usize).unwrap();
        next = (next + per) % (sectors * 512);
    }
    while start.elapsed() < run_for {
        for (s, st) in f.complete(Duration::from_secs(10)).unwrap() {
            assert_eq!(st, BLKIF_RSP_OKAY);
            bytes += per;
            f.submit(s, Op::Write, next / 512, per as usize).unwrap();
            next = (next + per) % (sectors * 512);
        }
    }
    let ours_bw = bytes as f64 / start.elapsed().as_secs_f64();
    let mut left = 8;
    while left > 0 {
        left -= f.complete(Duration::from_secs(10)).unwrap().len();
    }
    f.close(&gx).unwrap();
    line(
        "blkback_seqwrite_1m_qd8",
        ours_bw / 1e6,
        "MB/s",
        fio_bw / 1e6,
    );

    // 4 KiB random reads, 32 in flight.
    let f_rr = fio(
        &file,
        "randread",
        &[
            "--rw=randread",
            "--bs=4k",
            "--ioengine=libaio",
            "--iodepth=32",
        ],
    );
    let fio_iops = f_rr["read"]["iops"].as_f64().unwrap();
    let mut f = connect(Geometry {
        queue_depth: 32,
        pages_per_request: 1,
        ring_page_order: 0,
    });
    let blocks = sectors / 8;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % blocks
    };
    let start = Instant::now();
    let mut ios = 0u64;
    for s in 0..32 {
        f.submit(s, Op::Read, rnd() * 8, 4096).unwrap();
    }
    while start.elapsed() < run_for {
        let done = f.complete(Duration::from_secs(10)).unwrap_or_else(|e| {
            let be = f.frontend().backend.clone();
            let err = xs.read(windsor_xenstore::client::TxId::NONE, &format!("{be}/error"));
            panic!("{e}: backend error node {err:?}");
        });
        for (s, st) in done {
            assert_eq!(st, BLKIF_RSP_OKAY);
            ios += 1;
            f.submit(s, Op::Read, rnd() * 8, 4096).unwrap();
        }
    }
    let ours_iops = ios as f64 / start.elapsed().as_secs_f64();
    let mut left = 32;
    while left > 0 {
        left -= f.complete(Duration::from_secs(10)).unwrap().len();
    }
    f.close(&gx).unwrap();
    line("blkback_randread_4k_qd32", ours_iops, "IOPS", fio_iops);

    // 4 KiB sequential writes, each followed by a flush (fio: fdatasync=1; a flush is fdatasync).
    let f_sync = fio(
        &file,
        "fsync",
        &["--rw=write", "--bs=4k", "--ioengine=psync", "--fdatasync=1"],
    );
    let fio_sync = f_sync["write"]["iops"].as_f64().unwrap();
    let mut f = connect(Geometry {
        queue_depth: 1,
        pages_per_request: 1,
        ring_page_order: 0,
    });
    let block = vec![0x5au8; 4096];
    let start = Instant::now();
    let mut ios = 0u64;
    while start.elapsed() < run_for {
        f.write((ios % blocks) * 8, &block).unwrap();
        f.flush().unwrap();
        ios += 1;
    }
    let ours_sync = ios as f64 / start.elapsed().as_secs_f64();
    f.close(&gx).unwrap();
    line("blkback_write_4k_fsync", ours_sync, "IOPS", fio_sync);

    hv.kill(bid).unwrap();
    let _ = svc.join();
    let _ = hv.dom0().destroy(bid);
    let _ = std::fs::remove_file(&file);
}
