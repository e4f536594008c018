//! A host-mode host for netback tests: the simulated hypervisor, an
//! in-memory xenstore, a netback domain thread, guests with a netfront.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use windsor_control::endpoint::Client;
use windsor_control::{DeviceId, DeviceKind, DeviceParams, Request, Response, VifParams};
use windsor_netback::service::{Netback, Uplink};
use windsor_netback::xenbus;
use windsor_netfront::{parse_cidr, Netfront, Stack};
use windsor_xenstore::client::{Access, MemStore, Perm, TxId, XenStore};
use xen::platform::{CreateConfig, Platform};
use xen::DomId;
use xen_sim::{Hypervisor, SimDomain};

pub const T: Duration = Duration::from_secs(20);

pub fn cfg() -> CreateConfig {
    CreateConfig {
        max_mem_kib: 64 * 1024,
        max_grant_frames: 64,
        ..CreateConfig::default()
    }
}

pub fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Makes `/local/domain/<d>` owned by `d`, as a toolstack does.
pub fn home(xs: &MemStore, d: DomId) {
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

pub fn mac(d: DomId) -> [u8; 6] {
    [0x00, 0x16, 0x3e, 0x00, (d.0 >> 8) as u8, d.0 as u8]
}

pub struct Host {
    pub hv: Hypervisor,
    pub xs: MemStore,
    pub nb: DomId,
    pub nb_thread: Option<JoinHandle<()>>,
}

impl Host {
    /// A host with a netback domain running (uplink `u`).
    pub fn new<U: Uplink + Send + 'static>(u: Option<U>) -> Host {
        init_log();
        let hv = Hypervisor::new();
        let xs = MemStore::new();
        let dom = hv.test_domain(&cfg()).unwrap();
        let nb = dom.domid();
        home(&xs, nb);
        let nxs = xs.connect(nb);
        let t = std::thread::spawn(move || {
            let mut n = Netback::new(&dom, &nxs, nb, DomId::DOM0, u);
            n.run(Duration::from_millis(1));
        });
        Host {
            hv,
            xs,
            nb,
            nb_thread: Some(t),
        }
    }

    /// Crashes and destroys the netback domain, then starts a new one
    /// (a new domid), as a toolstack restarting its driver domain does.
    pub fn restart_netback<U: Uplink + Send + 'static>(&mut self, u: Option<U>) {
        use xen::platform::DomainControl;
        self.hv.kill(self.nb).unwrap();
        self.hv.dom0().destroy(self.nb).unwrap();
        if let Some(t) = self.nb_thread.take() {
            t.join().unwrap();
        }
        let dom = self.hv.test_domain(&cfg()).unwrap();
        let nb = dom.domid();
        home(&self.xs, nb);
        let nxs = self.xs.connect(nb);
        self.nb_thread = Some(std::thread::spawn(move || {
            let mut n = Netback::new(&dom, &nxs, nb, DomId::DOM0, u);
            n.run(Duration::from_millis(1));
        }));
        self.nb = nb;
    }

    /// Gives guest `d` a VIF on the current netback (as the toolstack
    /// does at VM start, and again after a netback restart).
    pub fn plug(&self, ctl: &mut Client<'_, SimDomain>, d: DomId, ip: &str) {
        self.plug_rate(ctl, d, ip, None)
    }

    /// [`plug`](Self::plug) with a rate limit.
    pub fn plug_rate(
        &self,
        ctl: &mut Client<'_, SimDomain>,
        d: DomId,
        ip: &str,
        rate: Option<(u64, u32)>,
    ) {
        xenbus::announce(&self.xs, self.nb, d, 0, mac(d), 1500).unwrap();
        self.xs
            .write(
                TxId::NONE,
                &format!("{}/ip", xenbus::backend_path(self.nb, d, 0)),
                ip.as_bytes(),
            )
            .unwrap();
        let r = ctl
            .call(
                Request::Plug {
                    device: vif(d),
                    params: DeviceParams::Vif(VifParams {
                        mac: mac(d),
                        mtu: 1500,
                        rate,
                    }),
                },
                T,
            )
            .unwrap();
        assert_eq!(r, Response::Ok);
    }

    /// A new guest domain (no VIF yet).
    pub fn domain(&self) -> (SimDomain, MemStore) {
        let dom = self.hv.test_domain(&cfg()).unwrap();
        let d = dom.domid();
        home(&self.xs, d);
        let x = self.xs.connect(d);
        (dom, x)
    }

    /// The toolstack's control client.
    pub fn control(&self) -> (SimDomain, MemStore) {
        (self.hv.dom0(), self.xs.clone())
    }

    /// Creates a guest domain with a VIF plugged (through `ctl`).
    pub fn guest(&self, ctl: &mut Client<'_, SimDomain>, ip: &str) -> (SimDomain, MemStore) {
        let dom = self.hv.test_domain(&cfg()).unwrap();
        let d = dom.domid();
        home(&self.xs, d);
        self.plug(ctl, d, ip);
        (dom, self.xs.connect(d))
    }
}

pub fn vif(d: DomId) -> DeviceId {
    DeviceId {
        kind: DeviceKind::Vif,
        frontend: d.0,
        devid: 0,
    }
}

pub fn connect_control<'a>(dom0: &'a SimDomain, xs: &MemStore, nb: DomId) -> Client<'a, SimDomain> {
    let end = std::time::Instant::now() + T;
    loop {
        match Client::connect(dom0, xs, nb, DomId::DOM0, T) {
            Ok((c, name)) => {
                assert_eq!(name, "netback");
                return c;
            }
            Err(e) if std::time::Instant::now() > end => panic!("control: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// A guest serving ping and TCP echo until `stop`.
pub fn serve(
    dom: SimDomain,
    xs: MemStore,
    ip: &'static str,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let nf = Netfront::connect(&dom, &xs, 0, T).expect("netfront connects");
        let mut st = Stack::new(nf, parse_cidr(ip).unwrap());
        while !stop.load(Ordering::Relaxed) {
            st.maintain(&xs);
            st.poll_wait(Duration::from_millis(5));
        }
        st.into_netfront().close(&xs);
    })
}
