//! blkback under the toolstack's control: devices are served when plugged
//! over the `windsor-control` vchan, counted, reported in `Health`, and let
//! go at `Unplug`; bad requests get typed errors.

use std::process::Command;
use std::time::{Duration, Instant};

use windsor_blkback::control::run_controlled;
use windsor_blkback::service::Config;
use windsor_blkback::xenbus::{plumb, Plumbing};
use windsor_blkfront::driver::{BlkFront, Geometry};
use windsor_control::endpoint::Client;
use windsor_control::{
    DeviceCounters, DeviceId, DeviceKind, DeviceParams, DeviceState, ErrorCode, Request, Response,
    VbdParams, VifParams,
};
use windsor_xenstore::client::{Access, MemStore, Perm, TxId, XenStore};
use xen::platform::{CreateConfig, Platform};
use xen::DomId;
use xen_sim::Hypervisor;

const T: Duration = Duration::from_secs(20);

fn home(xs: &MemStore, d: DomId) {
    let p = format!("/local/domain/{}", d.0);
    xs.write(TxId::NONE, &p, b"").unwrap();
    xs.set_perms(
        TxId::NONE,
        &p,
        &[Perm {
            dom: d,
            access: Access::None,
        }],
    )
    .unwrap();
}

#[test]
fn plug_counters_health_unplug_over_the_control_channel() {
    let dir = std::env::temp_dir().join(format!("blkback-control-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("disk.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&img)
        .arg("4M")
        .status()
        .expect("qemu-img (cargo xtask setup installs qemu-utils)");
    assert!(st.success());

    let hv = Hypervisor::new();
    let xs = MemStore::new();
    let cfg = CreateConfig {
        max_mem_kib: 64 * 1024,
        ..CreateConfig::default()
    };
    let back = hv.test_domain(&cfg).unwrap();
    let bid = back.domid();
    home(&xs, bid);
    let (b, x) = (back.clone(), xs.clone());
    let thread = std::thread::spawn(move || {
        run_controlled(&b, move || x.connect(bid), &Config::default(), DomId::DOM0)
    });
    let dom0 = hv.dom0();
    let end = Instant::now() + T;
    let mut ctl = loop {
        match Client::connect(&dom0, &xs, bid, DomId::DOM0, T) {
            Ok((c, name)) => {
                assert_eq!(name, "blkback");
                break c;
            }
            Err(e) => assert!(Instant::now() < end, "control: {e}"),
        }
        std::thread::sleep(Duration::from_millis(5));
    };

    let g = hv.test_domain(&cfg).unwrap();
    let gid = g.domid();
    let path = img.to_str().unwrap().to_string();
    plumb(
        &xs,
        &Plumbing {
            backend: bid,
            frontend: gid,
            devid: 51712,
            params: &path,
            writable: true,
        },
    )
    .unwrap();
    let dev = DeviceId {
        kind: DeviceKind::Vbd,
        frontend: gid.0,
        devid: 51712,
    };
    let vbd = |p: &str| {
        DeviceParams::Vbd(VbdParams {
            params: p.into(),
            readonly: false,
        })
    };
    let mut call = |r: Request| ctl.call(r, T).unwrap();
    // Not the image the directory names: refused.
    assert_eq!(
        call(Request::Plug {
            device: dev,
            params: vbd("/elsewhere.img"),
        }),
        Response::Error(ErrorCode::BadParams)
    );
    // A VIF's parameters: not blkback's kind.
    assert_eq!(
        call(Request::Plug {
            device: dev,
            params: DeviceParams::Vif(VifParams {
                mac: [0, 0x16, 0x3e, 0, 0, 1],
                mtu: 1500,
                rate: None,
            }),
        }),
        Response::Error(ErrorCode::WrongKind)
    );
    assert_eq!(
        call(Request::Plug {
            device: dev,
            params: vbd(&path),
        }),
        Response::Ok
    );
    assert_eq!(
        call(Request::Plug {
            device: dev,
            params: vbd(&path),
        }),
        Response::Error(ErrorCode::AlreadyPlugged)
    );

    // The guest connects and does I/O; the counters see it.
    let gx = xs.connect(gid);
    let mut f = BlkFront::connect(&g, &gx, 51712, Geometry::default()).unwrap();
    let data = vec![0xa5u8; 8192];
    f.write(0, &data).unwrap();
    f.flush().unwrap();
    let mut back_buf = vec![0u8; 8192];
    f.read(0, &mut back_buf).unwrap();
    assert_eq!(back_buf, data);
    let Response::Counters(c) = call(Request::Counters { device: Some(dev) }) else {
        panic!("counters")
    };
    let DeviceCounters::Vbd(v) = c[0].1 else {
        panic!("vbd counters")
    };
    assert_eq!((v.writes, v.write_bytes), (1, 8192), "{v:?}");
    assert_eq!((v.reads, v.read_bytes), (1, 8192), "{v:?}");
    assert_eq!(v.errors, 0);
    let Response::Health(h) = call(Request::Health) else {
        panic!("health")
    };
    assert_eq!(h.devices, vec![(dev, DeviceState::Connected)]);

    // Unplug: the backend lets go of the device (Closed); it is gone.
    assert_eq!(call(Request::Unplug { device: dev }), Response::Ok);
    let be = format!("/local/domain/{}/backend/vbd/{}/51712/state", bid.0, gid.0);
    assert_eq!(xs.read(TxId::NONE, &be).unwrap(), b"6");
    assert_eq!(
        call(Request::Unplug { device: dev }),
        Response::Error(ErrorCode::NoSuchDevice)
    );
    assert_eq!(
        call(Request::Counters { device: Some(dev) }),
        Response::Error(ErrorCode::NoSuchDevice)
    );
    let Response::Health(h) = call(Request::Health) else {
        panic!("health")
    };
    assert!(h.devices.is_empty());
    drop(f);

    // Restart: answered, then the service returns.
    assert_eq!(call(Request::Restart), Response::Ok);
    thread.join().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
