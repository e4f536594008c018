//! Garbage never panics: arbitrary TOML-ish text through the parser and
//! validator, arbitrary bytes through the plan and bundle decoders.

use proptest::prelude::*;
use windsor_boot_config::{BootPlan, Bundle, HostConfig};

const EXAMPLE: &str = include_str!("../examples/default.toml");

/// Text made of TOML's building blocks, so the parser gets past the first
/// byte often enough to reach validation.
fn tomlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("[dom0]\n".to_owned()),
        Just("[[services]]\n".to_owned()),
        Just("[[guests]]\n".to_owned()),
        Just("[qemu]\n".to_owned()),
        Just("[dom0.xenstore]\n".to_owned()),
        Just("kind = \"xenstore\"\n".to_owned()),
        Just("image = \"a.elf\"\n".to_owned()),
        Just("name = \"g\"\n".to_owned()),
        (-5i64..70_000).prop_map(|n| format!("memory_mib = {n}\n")),
        (-2i64..100).prop_map(|n| format!("vcpus = {n}\n")),
        "[a-z_]{1,12} = [0-9\"\\[\\]{},.a-z -]{0,12}\n",
        "[\\PC]{0,8}",
        Just("\n".to_owned()),
    ];
    prop::collection::vec(token, 0..40).prop_map(|v| v.concat())
}

/// A well-formed file with random values: names from a small pool (so
/// duplicates and reserved names happen), numbers around the limits, paths
/// with and without forbidden characters. This reaches validation, which
/// `tomlish` text rarely gets past the TOML parser to.
fn structured() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        10 => "[a-z][a-z0-9]{0,3}",
        1 => prop::sample::select(vec!["xenstore", "dom0", "a b", "", "netback"]).prop_map(String::from),
    ];
    let path = prop_oneof![
        10 => prop::sample::select(vec!["a.elf", "b.elf", "d/e.elf"]),
        1 => prop::sample::select(vec!["a,b.elf", "a b.elf", ""]),
    ];
    let kind = prop_oneof![
        4 => Just("xenstore"),
        1 => prop::sample::select(vec!["netback", "blkback"]),
    ];
    let num = prop_oneof![
        20 => 4i64..40,
        1 => -3i64..4,
        1 => 60_000i64..70_000,
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
    ];
    let domain = (name, path, num.clone(), num.clone(), kind, any::<bool>());
    (
        prop::collection::vec(domain, 0..6),
        num.clone(),
        prop::option::of(num),
    )
        .prop_map(|(domains, dom0_mem, qemu_mem)| {
            let mut t = format!("[dom0]\nimage = \"d.elf\"\nmemory_mib = {dom0_mem}\n");
            for (name, path, mem, vcpus, kind, service) in domains {
                if service {
                    t += &format!("[[services]]\nkind = \"{kind}\"\n");
                } else {
                    t += "[[guests]]\n";
                }
                t += &format!(
                    "name = {name:?}\nimage = {path:?}\nmemory_mib = {mem}\nvcpus = {vcpus}\n"
                );
            }
            if let Some(m) = qemu_mem {
                t += &format!("[qemu]\nmemory_mib = {m}\n");
            }
            t
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn structured_hosts_validate_or_point_into_the_file(text in structured()) {
        match HostConfig::parse(&text, "s.toml") {
            Ok(host) => {
                let plan = host.plan();
                prop_assert!(plan.check().is_ok());
                prop_assert_eq!(BootPlan::from_postcard(&plan.to_postcard()).ok(), Some(plan));
            }
            Err(e) => {
                let msg = e.to_string();
                let mut parts = msg.splitn(4, ':');
                prop_assert_eq!(parts.next(), Some("s.toml"));
                let line: usize = parts.next().unwrap_or("").parse().unwrap_or(0);
                prop_assert!(line >= 1 && line <= text.lines().count() + 1, "{}", msg);
            }
        }
    }

    #[test]
    fn tomlish_text_never_panics(text in tomlish()) {
        if let Ok(host) = HostConfig::parse(&text, "p.toml") {
            let plan = host.plan();
            prop_assert!(plan.check().is_ok());
            prop_assert_eq!(BootPlan::from_postcard(&plan.to_postcard()).ok(), Some(plan));
        } else if let Err(e) = HostConfig::parse(&text, "p.toml") {
            let msg = e.to_string();
            prop_assert!(msg.starts_with("p.toml:"), "{}", msg);
            prop_assert!(!msg.contains('\n'), "{}", msg);
        }
    }

    #[test]
    fn mutated_example_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8)
    ) {
        let mut bytes = EXAMPLE.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 if i < bytes.len() => { bytes.remove(i); }
                1 if i < bytes.len() => bytes[i] = byte,
                _ => bytes.insert(i, byte),
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = HostConfig::parse(&text, "m.toml") {
            prop_assert!(e.to_string().starts_with("m.toml:"));
        }
    }

    #[test]
    fn random_bytes_never_panic_the_decoders(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = BootPlan::from_postcard(&bytes);
        let mut with_magic = b"WBPL\x01\x00".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = BootPlan::from_postcard(&with_magic);
        let mut bundle = b"WNDSRBND\x01\x00\x00\x00".to_vec();
        bundle.extend_from_slice(&bytes);
        for b in [&bytes[..], &bundle[..]] {
            if let Ok(parsed) = Bundle::parse(b) {
                for i in 0..=parsed.len() {
                    let _ = parsed.entry(i);
                }
                let _ = parsed.plan();
            }
        }
    }
}
