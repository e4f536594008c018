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
