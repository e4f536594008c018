//! The `xs_wire.h` decoder on arbitrary bytes in arbitrary chunks: it must
//! never panic, never consume nothing while input remains, and every
//! message it yields must re-encode to the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use windsor_xenstore::wire::{Decoder, PAYLOAD_MAX};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, bytes)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut d = Decoder::new();
    let mut off = 0;
    let mut start = 0;
    while off < bytes.len() {
        let n = chunk.min(bytes.len() - off);
        match d.feed(&bytes[off..off + n]) {
            Ok((used, pkt)) => {
                assert!(used > 0);
                off += used;
                if let Some(p) = pkt {
                    assert!(p.payload.len() <= PAYLOAD_MAX);
                    assert_eq!(p.to_vec(), &bytes[start..off]);
                    start = off;
                }
            }
            Err(_) => return,
        }
    }
});
