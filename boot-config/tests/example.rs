//! The shipped default host description parses, validates, plans and
//! renders.

use std::path::{Path, PathBuf};

use windsor_boot_config::{load, render, BootPlan, Bundle, DomainKind, LogLevel};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/default.toml")
}

#[test]
fn default_example_validates() {
    let host = load(example()).unwrap();
    assert_eq!(host.name, "windsor-dev");
    assert_eq!(host.dom0.log_level, LogLevel::Info);
    assert_eq!(host.dom0_image.path, "windsor-toolstack.elf");
    assert_eq!(host.qemu.memory_mib, 1024);
    let names: Vec<&str> = host
        .services
        .iter()
        .chain(&host.guests)
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(names, ["xenstore", "fuzz0"]);
    host.check_images_with(|p| p.extension().is_some_and(|e| e == "elf"))
        .unwrap();
}

#[test]
fn default_example_plans_and_round_trips() {
    let host = load(example()).unwrap();
    let plan = host.plan();
    assert_eq!(plan.domains[0].kind, DomainKind::Xenstore);
    assert_eq!(plan.domains[1].kind, DomainKind::Guest);
    assert_eq!(plan.domains[1].name, "fuzz0");
    assert_eq!(
        plan.images(),
        ["windsor-xenstore.elf", "windsor-fuzz-target.elf"]
    );
    assert_eq!(BootPlan::from_postcard(&plan.to_postcard()).unwrap(), plan);
}

#[test]
fn default_example_renders() {
    let host = load(example()).unwrap();
    let layout = render::Layout::in_dir("/out");
    let cmdline = render::xen_cmdline(&host).to_string();
    assert!(cmdline.ends_with("dom0=pvh dom0-iommu=none dom0_mem=64M dom0_max_vcpus=1"));
    let qemu = render::qemu_argv(&host, &layout).unwrap();
    assert_eq!(qemu.argv[0], "qemu-system-x86_64");
    assert_eq!(
        qemu.argv.last().unwrap(),
        "/out/windsor-toolstack.elf,/out/host.bundle"
    );
    let grub = render::grub_stanza(&host, &render::GrubLayout::default()).unwrap();
    assert!(grub
        .to_string()
        .contains("module2 /boot/windsor/host.bundle"));
    let bytes =
        render::bundle_with(&host, |p| Ok(p.to_string_lossy().into_owned().into_bytes())).unwrap();
    let bundle = Bundle::parse(&bytes).unwrap();
    assert_eq!(bundle.plan().unwrap(), host.plan());
    assert_eq!(bundle.entry(2).unwrap(), b"windsor-fuzz-target.elf");
}

/// `examples/linux-multi.toml`: XAPI's `PV_kernel`/`PV_ramdisk`/`PV_args`
/// map to the kernel, ramdisk and command line; two guests share the
/// kernel and ramdisk entries; `ready_console` reaches the plan.
#[test]
fn linux_examples_plan_kernel_ramdisk_and_ready_line() {
    for file in ["linux.toml", "linux-multi.toml", "linux-disk.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(file);
        let host = load(&path).unwrap();
        let plan = BootPlan::from_postcard(&host.plan().to_postcard()).unwrap();
        let linux: Vec<_> = plan
            .guests()
            .filter(|d| d.ready_console.is_some())
            .collect();
        assert!(!linux.is_empty(), "{file}");
        for d in &linux {
            assert_eq!(d.image, "debian-vmlinuz");
            assert!(d.cmdline.starts_with("console=hvc0"), "{}", d.cmdline);
            assert_eq!(d.ready_console.as_deref(), Some("WINDSOR-LINUX-INIT"));
            let rd = d.ramdisk.as_ref().expect("PV_ramdisk");
            assert_eq!(rd.path, "linux-test-initramfs.cpio");
            assert_eq!(plan.images()[rd.module as usize - 1], rd.path);
            assert_eq!(plan.images()[d.module as usize - 1], d.image);
        }
        // One bundle entry per distinct file, shared by the guests.
        let (k, r) = (linux[0].module, linux[0].ramdisk.as_ref().unwrap().module);
        assert!(linux.iter().all(|d| d.module == k));
        assert!(linux
            .iter()
            .all(|d| d.ramdisk.as_ref().unwrap().module == r));
        assert_eq!(plan.bundle_entries() as usize, plan.images().len() + 1);
    }
}

/// A bzImage kernel in the bundle is replaced by its unpacked ELF, a
/// ramdisk goes in as it is, and a bzImage that is not XZ is refused with
/// the field that names it.
#[test]
fn bundle_unpacks_bzimage_kernels_and_keeps_ramdisks() {
    let host = windsor_boot_config::HostConfig::parse(
        r#"
[dom0]
image = "dom0.elf"
memory_mib = 64
[[services]]
kind = "xenstore"
image = "xs.elf"
memory_mib = 16
[[guests]]
name = "linux0"
PV_kernel = "vmlinuz"
PV_ramdisk = "initrd"
PV_args = "console=hvc0"
memory_mib = 128
ready_console = "up"
"#,
        "t.toml",
    )
    .unwrap();
    // A bzImage whose payload says gzip.
    let mut bz = vec![0u8; 1024 + 16];
    bz[0x1f1] = 1;
    bz[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    bz[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
    bz[0x248..0x24c].copy_from_slice(&0u32.to_le_bytes());
    bz[0x24c..0x250].copy_from_slice(&16u32.to_le_bytes());
    bz[1024..1026].copy_from_slice(b"\x1f\x8b");
    let read = |p: &Path| -> Result<Vec<u8>, (PathBuf, std::io::Error)> {
        Ok(match p.to_str() {
            Some("vmlinuz") => bz.clone(),
            Some("initrd") => b"070701 a cpio".to_vec(),
            _ => b"not an elf".to_vec(),
        })
    };
    let err = render::bundle_with(&host, read).unwrap_err().to_string();
    assert!(err.contains("guests[0].image: vmlinuz"), "{err}");
    assert!(err.contains("gzip-compressed; only XZ"), "{err}");
    // With a plain (non-kernel) image the bundle carries the ramdisk as is.
    let read = |p: &Path| -> Result<Vec<u8>, (PathBuf, std::io::Error)> {
        Ok(match p.to_str() {
            Some("initrd") => b"070701 a cpio".to_vec(),
            _ => b"not an elf".to_vec(),
        })
    };
    let blob = render::bundle_with(&host, read).unwrap();
    let b = Bundle::parse(&blob).unwrap();
    let plan = b.plan().unwrap();
    let d = plan.guests().next().unwrap();
    let rd = d.ramdisk.as_ref().unwrap();
    assert_eq!(b.entry(rd.module as usize), Some(&b"070701 a cpio"[..]));
    assert_eq!(b.entry(d.module as usize), Some(&b"not an elf"[..]));
}
