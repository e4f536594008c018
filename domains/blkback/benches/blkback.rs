//! blkback through the rings in host mode against `fio` with direct I/O on
//! the same file, in one run. Prints one JSON line per measurement:
//! `{"name","value","unit","baseline","ratio"}` (baseline = fio).
//!
//! `cargo bench -p windsor-blkback --bench blkback` (or `cargo xtask bench
//! blkback`). `BLKBACK_BENCH_SECS` sets the seconds per run (2; each measurement
//! alternates fio and the rings 3 times and reports medians),
//! `BLKBACK_BENCH_DIR` the directory of the test file (the target dir).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use windsor_blkback::service::{self, Config};
use windsor_blkback::xenbus::{plumb, Plumbing};
use windsor_blkfront::driver::{BlkFront, Geometry};
use windsor_blkfront::request::Op;
use windsor_xenstore::client::MemStore;
use xen::abi::blkif::BLKIF_RSP_OKAY;
use xen::platform::{CreateConfig, DomainControl, Platform};
use xen::DomId;
use xen_sim::Hypervisor;

const FILE_MIB: u64 = 512;
/// fio and the rings alternate this many times per measurement.
const ROUNDS: usize = 3;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Keeps every slot of `f` busy with `len`-byte requests for `run_for`;
/// request `i` goes to chunk `at(i)` (modulo the disk). Returns how many
/// completed in time.
fn keep_busy<P: Platform>(
    f: &mut BlkFront<'_, P>,
    run_for: Duration,
    len: usize,
    op: Op,
    mut at: impl FnMut(u64) -> u64,
) -> u64 {
    let chunks = f.disk().sectors * 512 / len as u64;
    let per = len as u64 / 512;
    let depth = f.geometry().queue_depth;
    let mut i = 0u64;
    for s in 0..depth {
        f.submit(s, op, (at(i) % chunks) * per, len).unwrap();
        i += 1;
    }
    let start = Instant::now();
    let mut done = 0;
    while start.elapsed() < run_for {
        for (s, st) in f.complete(Duration::from_secs(10)).unwrap() {
            assert_eq!(st, BLKIF_RSP_OKAY);
            done += 1;
            f.queue(s, op, (at(i) % chunks) * per, len).unwrap();
            i += 1;
        }
        f.kick().unwrap();
    }
    let mut left = depth;
    while left > 0 {
        left -= f.complete(Duration::from_secs(10)).unwrap().len();
    }
    done
}

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
        .unwrap_or(2)
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
    // Three blkback domains: persistent grants (the default), grant copy
    // only (`max_persistent: 0`, so `feature-persistent` is 0), and a map
    // of each request's grants for the request.
    let mut backs = Vec::new();
    for (max_persistent, map_per_request) in [
        (Config::default().max_persistent, false),
        (0, false),
        (0, true),
    ] {
        let back = hv.test_domain(&mem).unwrap();
        let bid = back.domid();
        let x = xs.clone();
        let cfg = Config {
            workers: 32,
            direct: true,
            max_persistent,
            map_per_request,
            ..Config::default()
        };
        let svc = std::thread::spawn(move || {
            let _ = service::run(&back, move || x.connect(bid), &cfg);
        });
        backs.push((bid, svc));
    }
    let g = hv.test_domain(&mem).unwrap();
    let gx = xs.connect(g.domid());
    let mut devid = 51712;
    let mut connect_to = |backend: DomId, geo: Geometry| {
        devid += 1;
        plumb(
            &xs,
            &Plumbing {
                backend,
                frontend: g.domid(),
                devid,
                params: file.to_str().unwrap(),
                writable: true,
            },
        )
        .unwrap();
        BlkFront::connect(&g, &gx, devid, geo).unwrap()
    };
    let (persistent, copy, map) = (backs[0].0, backs[1].0, backs[2].0);
    let run_for = Duration::from_secs(secs());

    // The disk is shared with everything else on the machine, so each
    // measurement alternates fio and the rings ROUNDS times and reports
    // the medians.
    let mut res: [(Vec<f64>, Vec<f64>); 7] = Default::default();
    for _ in 0..ROUNDS {
        // 1 MiB sequential write, 8 in flight (indirect, 256 segments).
        let j = fio(
            &file,
            "seqwrite",
            &["--rw=write", "--bs=1M", "--ioengine=libaio", "--iodepth=8"],
        );
        res[0]
            .0
            .push(j["write"]["bw_bytes"].as_f64().unwrap() / 1e6);
        for (k, back) in [(0, persistent), (3, copy), (5, map)] {
            let mut f = connect_to(
                back,
                Geometry {
                    queue_depth: 8,
                    pages_per_request: 256,
                    ring_page_order: 0,
                },
            );
            let n = keep_busy(&mut f, run_for, 1 << 20, Op::Write, |i| i);
            res[k].1.push(n as f64 * 1.048576 / run_for.as_secs_f64());
            f.close(&gx).unwrap();
        }
        res[3].0.push(res[0].0[res[0].0.len() - 1]);
        res[5].0.push(res[0].0[res[0].0.len() - 1]);

        // 4 KiB random reads, 32 in flight.
        let j = fio(
            &file,
            "randread",
            &[
                "--rw=randread",
                "--bs=4k",
                "--ioengine=libaio",
                "--iodepth=32",
            ],
        );
        res[1].0.push(j["read"]["iops"].as_f64().unwrap());
        for (k, back) in [(1, persistent), (4, copy), (6, map)] {
            let mut f = connect_to(
                back,
                Geometry {
                    queue_depth: 32,
                    pages_per_request: 1,
                    ring_page_order: 0,
                },
            );
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            let n = keep_busy(&mut f, run_for, 4096, Op::Read, |_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            });
            res[k].1.push(n as f64 / run_for.as_secs_f64());
            f.close(&gx).unwrap();
        }
        res[4].0.push(res[1].0[res[1].0.len() - 1]);
        res[6].0.push(res[1].0[res[1].0.len() - 1]);

        // 4 KiB sequential writes, each followed by a flush (fio:
        // fdatasync=1; a flush is fdatasync).
        let j = fio(
            &file,
            "fsync",
            &["--rw=write", "--bs=4k", "--ioengine=psync", "--fdatasync=1"],
        );
        res[2].0.push(j["write"]["iops"].as_f64().unwrap());
        let mut f = connect_to(
            persistent,
            Geometry {
                queue_depth: 1,
                pages_per_request: 1,
                ring_page_order: 0,
            },
        );
        let blocks = f.disk().sectors / 8;
        let block = vec![0x5au8; 4096];
        let start = Instant::now();
        let mut ios = 0u64;
        while start.elapsed() < run_for {
            f.write((ios % blocks) * 8, &block).unwrap();
            f.flush().unwrap();
            ios += 1;
        }
        res[2].1.push(ios as f64 / start.elapsed().as_secs_f64());
        f.close(&gx).unwrap();
    }
    for ((name, unit), (fio, ours)) in [
        ("blkback_seqwrite_1m_qd8", "MB/s"),
        ("blkback_randread_4k_qd32", "IOPS"),
        ("blkback_write_4k_fdatasync", "IOPS"),
        ("blkback_seqwrite_1m_qd8_grant_copy", "MB/s"),
        ("blkback_randread_4k_qd32_grant_copy", "IOPS"),
        ("blkback_seqwrite_1m_qd8_map_per_request", "MB/s"),
        ("blkback_randread_4k_qd32_map_per_request", "IOPS"),
    ]
    .into_iter()
    .zip(res.iter_mut())
    {
        line(name, median(ours), unit, median(fio));
    }

    for (bid, svc) in backs {
        hv.kill(bid).unwrap();
        let _ = svc.join();
        let _ = hv.dom0().destroy(bid);
    }
    let _ = std::fs::remove_file(&file);
}
