//! Request sequences from three domains (dom0 and two guests) against the
//! store core: any input, no panic, tree invariants kept, bounded output,
//! and the mutation log replays to the same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use windsor_xenstore::wire::{Decoder, Header, PAYLOAD_MAX};
use windsor_xenstore::{Config, HandleError, Quotas, Store};
use xen::DomId;

fuzz_target!(|data: &[u8]| {
    let mut s = Store::new(Config {
        record_mutations: true,
        quotas: Quotas {
            nodes_per_domain: 50,
            outstanding: 4,
            ..Quotas::default()
        },
        max_queued_bytes: 4096,
        ..Config::default()
    });
    let doms = [DomId(0), DomId(1), DomId(2)];
    let mut conns: Vec<_> = doms.iter().map(|d| s.connect(*d)).collect();
    let mut log = Vec::new();
    // Each request: one byte picks the connection, then a wire message.
    let mut rest = data;
    let mut dec = Decoder::new();
    while let Some((&who, tail)) = rest.split_first() {
        let i = usize::from(who) % conns.len();
        let Ok((used, pkt)) = dec.feed(tail) else { break };
        rest = &tail[used..];
        let Some(p) = pkt else { break };
        let h: Header = p.header;
        match s.handle(conns[i], &h, &p.payload) {
            Ok(()) => {}
            Err(HandleError::Busy) => while s.pop(conns[i]).is_some() {},
            Err(HandleError::UnknownConn) => conns[i] = s.connect(doms[i]),
        }
        if who & 0x80 != 0 {
            for c in s.take_ready() {
                while let Some(out) = s.pop(c) {
                    assert!(out.payload.len() <= PAYLOAD_MAX);
                }
            }
        }
        log.extend(s.take_mutations());
        assert!(s.check_consistency());
    }
    let mut r = Store::new(Config::default());
    for m in &log {
        r.apply(m);
    }
    assert!(r.check_consistency());
    assert_eq!(r.tree().len(), s.tree().len());
});
