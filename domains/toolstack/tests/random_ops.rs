//! A seeded random walk over lifecycle operations on a few VMs (some of
//! whose guests misbehave), checking after every step that the records
//! and the hypervisor agree and that no operation fails with anything but
//! a XAPI lifecycle error.

mod common;

use common::vm;
use std::time::{Duration, Instant};

use windsor_toolstack::action::{Action, ActionError, NewRecord, PowerState, Reply, VmRecord};
use windsor_toolstack::host::Host;
use windsor_toolstack::ToolstackConfig;
use windsor_xenstore::client::{TxId, XenStore};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Records and hypervisor agree: `Err` says how they differ.
fn consistent(h: &Host, vms: &[String]) -> Result<(), String> {
    let mut expect = h.service_domains();
    for r in vms {
        let v = vm(h, r);
        let d = h.toolstack.domid(r);
        match v.power_state {
            PowerState::Running | PowerState::Paused => {
                let d = d.ok_or_else(|| format!("{r} is {:?} without a domain", v.power_state))?;
                if v.domid != i64::from(d.0) {
                    return Err(format!("{r}: record domid {} runtime {d:?}", v.domid));
                }
                expect.push(d);
            }
            PowerState::Halted | PowerState::Suspended => {
                if d.is_some() || v.domid != -1 {
                    return Err(format!("{r} is {:?} with a domain", v.power_state));
                }
            }
        }
    }
    expect.sort_by_key(|d| d.0);
    if h.hv.domains() == expect {
        Ok(())
    } else {
        Err(format!(
            "hypervisor has {:?}, records say {expect:?}",
            h.hv.domains()
        ))
    }
}

/// Waits until [`consistent`] holds (a guest that shut itself down this
/// instant is settled by a later poll).
fn check_consistent(h: &Host, vms: &[String]) {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        h.toolstack.poll_domains();
        match consistent(h, vms) {
            Ok(()) => return,
            Err(e) if Instant::now() >= end => panic!("{e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

#[test]
fn random_walk_keeps_records_and_domains_in_step() {
    let h = Host::start(ToolstackConfig {
        shutdown_timeout: Duration::from_millis(300),
        seed: 11,
        ..ToolstackConfig::default()
    })
    .unwrap();
    let misbehaviour = ["", "", "ignore-shutdown", "crash-later"];
    let vms: Vec<String> = misbehaviour
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut v = VmRecord {
                name_label: format!("r{i}"),
                PV_kernel: "fuzz-target".into(),
                ..VmRecord::default()
            };
            if *m == "ignore-shutdown" {
                v.other_config.insert("misbehave".into(), (*m).into());
            }
            match h
                .toolstack
                .handle(Action::Create(NewRecord::Vm(v)))
                .unwrap()
            {
                Reply::Ref(r) => r,
                r => panic!("{r:?}"),
            }
        })
        .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for step in 0..250 {
        let i = rng.below(vms.len() as u64) as usize;
        let r = vms[i].clone();
        let a = match rng.below(11) {
            0 | 1 => Action::VmStart {
                vm: r,
                start_paused: rng.below(4) == 0,
                force: false,
            },
            2 => Action::VmPause { vm: r },
            3 => Action::VmUnpause { vm: r },
            4 => Action::VmCleanShutdown { vm: r },
            5 => Action::VmHardShutdown { vm: r },
            6 => Action::VmCleanReboot { vm: r },
            7 => Action::VmHardReboot { vm: r },
            8 => Action::VmSuspend { vm: r },
            9 => Action::VmResume {
                vm: r,
                start_paused: false,
                force: false,
            },
            _ => {
                // The crashing guest crashes now, if it runs.
                if misbehaviour[i] == "crash-later" {
                    if let Some(d) = h.toolstack.domid(&r) {
                        let _ = h.store.write(
                            TxId::NONE,
                            &format!("/local/domain/{}/control/misbehave", d.0),
                            b"crash",
                        );
                    }
                }
                check_consistent(&h, &vms);
                continue;
            }
        };
        let name = a.name();
        if let Err(e) = h.toolstack.handle(a) {
            assert!(
                matches!(
                    e,
                    ActionError::VmBadPowerState { .. }
                        | ActionError::VmFailedShutdownAck { .. }
                        | ActionError::VmShutdownTimeout { .. }
                        | ActionError::VmCrashed { .. }
                        | ActionError::VmRebooted { .. }
                        | ActionError::VmHalted { .. }
                ),
                "step {step}: {name} on {i}: {e:?}"
            );
        }
        check_consistent(&h, &vms);
    }
    for r in &vms {
        let _ = h.toolstack.handle(Action::VmHardShutdown { vm: r.clone() });
    }
    check_consistent(&h, &vms);
    assert_eq!(h.hv.domains(), h.service_domains());
}
