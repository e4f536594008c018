//! Artifacts rendered from a validated host: the Xen command line, the
//! multiboot module list, the QEMU command line, a GRUB stanza and the boot
//! bundle.
//!
//! Every renderer returns data (argument vectors, paths, bytes) for programs
//! to use, and the data types implement `Display` for humans and logs. No
//! renderer runs anything; only [`bundle()`] reads files.
//!
//! The module list is always `[dom0 kernel, bundle]`: see the
//! [crate docs](crate#the-module-order-contract) for why and for what dom0
//! relies on.

use std::borrow::ToOwned;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::string::{String, ToString};
use std::time::Duration;
use std::vec::Vec;

use crate::bundle;
use crate::config::HostConfig;
use crate::error::PathProblem;

/// Why an artifact could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A path from the [`Layout`] or [`GrubLayout`] cannot go on the command line.
    #[error("{what} path {path:?} {problem}")]
    BadPath {
        /// Which path (`xen`, `dom0 image`, `bundle`, ...).
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// What is wrong with it.
        problem: PathProblem,
    },
    /// A path that is not UTF-8 (command lines here are text).
    #[error("{what} path {path:?} is not UTF-8; expected a UTF-8 path")]
    NotUtf8 {
        /// Which path.
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// The bundle leaves dom0 too little memory: Xen copies it into dom0's
    /// RAM, after dom0's kernel.
    #[error(
        "dom0.memory_mib: the boot bundle is {bundle_bytes} bytes, which leaves less than \
         {DOM0_HEADROOM_MIB} MiB of dom0's {dom0_mib} MiB; expected dom0.memory_mib >= {needed_mib}"
    )]
    BundleTooLarge {
        /// Size of the bundle.
        bundle_bytes: usize,
        /// dom0's memory.
        dom0_mib: u32,
        /// The smallest dom0 memory that fits.
        needed_mib: u64,
    },
    /// An image could not be read while building the bundle.
    #[error("{field}: cannot read {}: {error}", path.display())]
    ReadImage {
        /// The field naming the image.
        field: String,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        error: io::Error,
    },
    /// A domain's kernel is not a loadable image.
    #[error("{field}: {}: {error}", path.display())]
    Kernel {
        /// The field naming the kernel.
        field: String,
        /// The file, as written.
        path: PathBuf,
        /// Why.
        #[source]
        error: crate::error::KernelError,
    },
}

/// Memory, in MiB, dom0 must keep besides the bundle (its kernel, heap and
/// page tables). [`bundle()`] refuses a bundle that leaves less.
pub const DOM0_HEADROOM_MIB: u64 = 16;

/// Where the build put things, for the QEMU command line and the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The Xen multiboot ELF (`zcat /boot/xen-4.17-amd64.gz > xen`).
    pub xen: PathBuf,
    /// The build output directory; image paths in the host description are
    /// relative to it.
    pub images_dir: PathBuf,
    /// Where the bundle file is (written by the caller from [`bundle()`]).
    pub bundle: PathBuf,
    /// Where QEMU writes the serial console (Xen and dom0 output).
    pub serial_log: PathBuf,
    /// Where QEMU writes port 0xe9 (every PVH domain's debug output).
    pub debugcon_log: PathBuf,
}

impl Layout {
    /// The usual layout: everything in `dir` (`xen`, the images,
    /// `host.bundle`, `serial.log`, `e9.log`).
    pub fn in_dir(dir: impl Into<PathBuf>) -> Layout {
        let dir = dir.into();
        Layout {
            xen: dir.join("xen"),
            bundle: dir.join("host.bundle"),
            serial_log: dir.join("serial.log"),
            debugcon_log: dir.join("e9.log"),
            images_dir: dir,
        }
    }
}

fn text<'a>(what: &'static str, path: &'a Path) -> Result<&'a str, RenderError> {
    let s = path.to_str().ok_or_else(|| RenderError::NotUtf8 {
        what,
        path: path.to_owned(),
    })?;
    match PathProblem::of(s) {
        Some(problem) => Err(RenderError::BadPath {
            what,
            path: path.to_owned(),
            problem,
        }),
        None => Ok(s),
    }
}

/// The Xen command line, one option per element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XenCmdline(pub Vec<String>);

impl fmt::Display for XenCmdline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

/// The Xen command line for this host: serial console at 115200 8n1, all
/// log levels, no reboot on panic (so QEMU's `-no-reboot` stops), boot
/// timestamps, a PVH dom0 without IOMMU with the planned memory and vCPUs.
pub fn xen_cmdline(config: &HostConfig) -> XenCmdline {
    let fixed = [
        "console=com1",
        "com1=115200,8n1",
        "loglvl=all",
        "guest_loglvl=all",
        "noreboot",
        "console_timestamps=boot",
        "dom0=pvh",
        "dom0-iommu=none",
    ];
    let mut args: Vec<String> = fixed.iter().map(|s| (*s).to_owned()).collect();
    args.push(format!("dom0_mem={}M", config.dom0.memory_mib));
    args.push(format!("dom0_max_vcpus={}", config.dom0.vcpus));
    XenCmdline(args)
}

/// What a multiboot module is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleRole {
    /// Module 0: dom0's kernel (the toolstack unikernel).
    Dom0Kernel,
    /// Module 1: the boot bundle (plan and images), dom0's one
    /// `hvm_start_info` module.
    Bundle,
}

/// One multiboot module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// What it is for.
    pub role: ModuleRole,
    /// The file.
    pub path: PathBuf,
}

/// The ordered multiboot modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleList(pub Vec<Module>);

impl fmt::Display for ModuleList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.0.iter().enumerate() {
            let role = match m.role {
                ModuleRole::Dom0Kernel => "dom0 kernel",
                ModuleRole::Bundle => "boot bundle",
            };
            writeln!(f, "module {i}: {role}: {}", m.path.display())?;
        }
        Ok(())
    }
}

/// The multiboot modules in the order Xen and dom0 rely on: dom0's kernel
/// (from `images_dir`), then the bundle.
pub fn multiboot_modules(config: &HostConfig, layout: &Layout) -> Result<ModuleList, RenderError> {
    let dom0 = layout.images_dir.join(&config.dom0_image.path);
    text("dom0 image", &dom0)?;
    text("bundle", &layout.bundle)?;
    Ok(ModuleList(vec![
        Module {
            role: ModuleRole::Dom0Kernel,
            path: dom0,
        },
        Module {
            role: ModuleRole::Bundle,
            path: layout.bundle.clone(),
        },
    ]))
}

/// What goes into the bundle, in entry order: entry 0 is the encoded plan
/// (`None` here), entry *i* ≥ 1 the image file of
/// [`BootPlan::images`](crate::BootPlan::images)`[i - 1]`.
pub fn bundle_entries(config: &HostConfig, images_dir: &Path) -> Vec<Option<PathBuf>> {
    let plan = config.plan();
    std::iter::once(None)
        .chain(plan.images().into_iter().map(|p| Some(images_dir.join(p))))
        .collect()
}

/// Builds the bundle: the encoded plan and every image read from
/// `images_dir`. The caller writes it to [`Layout::bundle`].
///
/// Xen copies the bundle into dom0's memory (page-aligned, after dom0's
/// kernel), so it must leave dom0 [`DOM0_HEADROOM_MIB`] to spare.
pub fn bundle(config: &HostConfig, images_dir: &Path) -> Result<Vec<u8>, RenderError> {
    bundle_with(config, |p| {
        std::fs::read(images_dir.join(p)).map_err(|e| (images_dir.join(p), e))
    })
}

/// [`bundle()`] with an injected reader, which gets the image path as written.
pub fn bundle_with(
    config: &HostConfig,
    mut read: impl FnMut(&Path) -> Result<Vec<u8>, (PathBuf, io::Error)>,
) -> Result<Vec<u8>, RenderError> {
    let plan = config.plan();
    let mut images = Vec::new();
    for path in plan.images() {
        let field = config
            .images()
            .find(|i| i.path == path)
            .map_or_else(|| "image".to_owned(), |i| i.field.clone());
        let bytes = read(Path::new(path)).map_err(|(path, error)| RenderError::ReadImage {
            field: field.clone(),
            path,
            error,
        })?;
        // Kernels (not ramdisks) become trimmed PVH ELFs: see `kernel`.
        let is_kernel = plan.domains.iter().any(|d| d.image == path);
        if is_kernel {
            let elf = crate::kernel::bundle_image(bytes).map_err(|error| RenderError::Kernel {
                field,
                path: PathBuf::from(path),
                error,
            })?;
            images.push(elf);
        } else {
            images.push(bytes);
        }
    }
    let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
    let bytes = bundle::build(&plan.to_postcard(), &refs);
    let needed_mib = (bytes.len() as u64).div_ceil(1 << 20) + DOM0_HEADROOM_MIB;
    if needed_mib > u64::from(config.dom0.memory_mib) {
        return Err(RenderError::BundleTooLarge {
            bundle_bytes: bytes.len(),
            dom0_mib: config.dom0.memory_mib,
            needed_mib,
        });
    }
    Ok(bytes)
}

/// A QEMU invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuCommand {
    /// `argv[0]` is the program, `qemu-system-x86_64`.
    pub argv: Vec<String>,
    /// The hard timeout the caller must enforce.
    pub timeout: Duration,
}

impl fmt::Display for QemuCommand {
    /// A shell-ready line: arguments with spaces or quotes are single-quoted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, arg) in self.argv.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
            if plain {
                f.write_str(arg)?;
            } else {
                write!(f, "'{}'", arg.replace('\'', r"'\''"))?;
            }
        }
        Ok(())
    }
}

/// The QEMU command line for a test boot under TCG (XEN-BOOT-NOTES.md:
/// KVM cannot run Xen here). `-initrd` carries the module list joined by
/// commas, which is why every path is checked for commas.
pub fn qemu_argv(config: &HostConfig, layout: &Layout) -> Result<QemuCommand, RenderError> {
    let modules = multiboot_modules(config, layout)?;
    let xen = text("xen", &layout.xen)?;
    let serial = text("serial log", &layout.serial_log)?;
    let debugcon = text("debugcon log", &layout.debugcon_log)?;
    let initrd: Vec<&str> = modules
        .0
        .iter()
        .map(|m| m.path.to_str().unwrap_or_default())
        .collect();
    let args = [
        "qemu-system-x86_64".to_owned(),
        "-accel".into(),
        "tcg".into(),
        "-cpu".into(),
        "max".into(),
        "-m".into(),
        config.qemu.memory_mib.to_string(),
        "-smp".into(),
        config.qemu.smp.to_string(),
        "-nographic".into(),
        "-no-reboot".into(),
        "-display".into(),
        "none".into(),
        "-monitor".into(),
        "none".into(),
        "-serial".into(),
        format!("file:{serial}"),
        "-debugcon".into(),
        format!("file:{debugcon}"),
        "-kernel".into(),
        xen.to_owned(),
        "-append".into(),
        xen_cmdline(config).to_string(),
        "-initrd".into(),
        initrd.join(","),
    ];
    Ok(QemuCommand {
        argv: args.into(),
        timeout: Duration::from_secs(u64::from(config.qemu.timeout_secs)),
    })
}

/// Paths on the target machine's boot file system, for [`grub_stanza`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrubLayout {
    /// Xen, as Debian installs it (`/boot/xen-4.17-amd64.gz`).
    pub xen: String,
    /// dom0's kernel.
    pub dom0: String,
    /// The bundle.
    pub bundle: String,
}

impl Default for GrubLayout {
    fn default() -> Self {
        GrubLayout {
            xen: "/boot/xen-4.17-amd64.gz".to_owned(),
            dom0: "/boot/windsor/dom0.elf".to_owned(),
            bundle: "/boot/windsor/host.bundle".to_owned(),
        }
    }
}

/// A GRUB `menuentry` booting the host with multiboot2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrubStanza {
    /// Menu title.
    pub title: String,
    /// Xen's path.
    pub xen: String,
    /// Xen's command line.
    pub cmdline: XenCmdline,
    /// `module2` paths, in order.
    pub modules: Vec<String>,
}

impl fmt::Display for GrubStanza {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "menuentry '{}' {{", self.title)?;
        writeln!(f, "\tmultiboot2 {} {}", self.xen, self.cmdline)?;
        for m in &self.modules {
            writeln!(f, "\tmodule2 {m}")?;
        }
        writeln!(f, "}}")
    }
}

/// The GRUB stanza for real hardware: the same Xen command line and module
/// order as under QEMU. (The title is safe to single-quote: host names are
/// `[A-Za-z0-9._-]`.)
pub fn grub_stanza(config: &HostConfig, layout: &GrubLayout) -> Result<GrubStanza, RenderError> {
    for (what, p) in [
        ("xen", &layout.xen),
        ("dom0 image", &layout.dom0),
        ("bundle", &layout.bundle),
    ] {
        text(what, Path::new(p))?;
    }
    Ok(GrubStanza {
        title: format!("Windsor host {} (Xen 4.17, no Linux dom0)", config.name),
        xen: layout.xen.clone(),
        cmdline: xen_cmdline(config),
        modules: vec![layout.dom0.clone(), layout.bundle.clone()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::Bundle;
    use std::string::ToString;

    const HOST: &str = r#"[host]
name = "pin"
[dom0]
image = "dom0.elf"
memory_mib = 96
[[services]]
kind = "xenstore"
image = "xs.elf"
memory_mib = 32
[[guests]]
name = "fuzz0"
image = "fuzz.elf"
memory_mib = 16
cmdline = "seed=7"
[[guests]]
name = "fuzz1"
image = "fuzz.elf"
memory_mib = 16
[qemu]
memory_mib = 512
smp = 2
timeout_secs = 9
"#;

    static XEN_CMDLINE: &str = "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all \
        noreboot console_timestamps=boot dom0=pvh dom0-iommu=none dom0_mem=96M dom0_max_vcpus=1";

    static QEMU_LINE: &str = "qemu-system-x86_64 -accel tcg -cpu max -m 512 -smp 2 -nographic \
        -no-reboot -display none -monitor none -serial file:/b/serial.log \
        -debugcon file:/b/e9.log -kernel /b/xen -append 'console=com1 com1=115200,8n1 \
        loglvl=all guest_loglvl=all noreboot console_timestamps=boot dom0=pvh \
        dom0-iommu=none dom0_mem=96M dom0_max_vcpus=1' -initrd /b/dom0.elf,/b/host.bundle";

    static GRUB: &str = "menuentry 'Windsor host pin (Xen 4.17, no Linux dom0)' {\n\
        \tmultiboot2 /boot/xen-4.17-amd64.gz console=com1 com1=115200,8n1 loglvl=all \
        guest_loglvl=all noreboot console_timestamps=boot dom0=pvh dom0-iommu=none \
        dom0_mem=96M dom0_max_vcpus=1\n\
        \tmodule2 /boot/windsor/dom0.elf\n\
        \tmodule2 /boot/windsor/host.bundle\n\
        }\n";

    fn host() -> HostConfig {
        HostConfig::parse(HOST, "pin.toml").unwrap()
    }

    #[test]
    fn xen_cmdline_is_pinned() {
        let c = xen_cmdline(&host());
        assert_eq!(c.to_string(), XEN_CMDLINE);
        assert_eq!(c.0[0], "console=com1");
        assert_eq!(c.0.len(), 10);
    }

    #[test]
    fn qemu_argv_is_pinned() {
        let q = qemu_argv(&host(), &Layout::in_dir("/b")).unwrap();
        assert_eq!(q.to_string(), QEMU_LINE);
        assert_eq!(q.timeout, Duration::from_secs(9));
        // The -append value is one argument; -initrd joins modules with commas.
        let append = q.argv.iter().position(|a| a == "-append").unwrap();
        assert_eq!(q.argv[append + 1], XEN_CMDLINE);
        assert_eq!(q.argv.last().unwrap(), "/b/dom0.elf,/b/host.bundle");
        assert_eq!(q.argv.len(), 25);
    }

    #[test]
    fn qemu_argv_rejects_commas_in_layout_paths() {
        let mut l = Layout::in_dir("/b");
        l.bundle = PathBuf::from("/b/a,b.bundle");
        let e = qemu_argv(&host(), &l).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bundle path \"/b/a,b.bundle\" contains a comma; expected none (QEMU splits -initrd \
             and -serial file: on commas)"
        );
        let l = Layout::in_dir("/my,build");
        assert!(matches!(
            qemu_argv(&host(), &l),
            Err(RenderError::BadPath { .. })
        ));
        let mut l = Layout::in_dir("/b");
        l.serial_log = PathBuf::from("/b/serial log");
        assert!(matches!(
            qemu_argv(&host(), &l),
            Err(RenderError::BadPath {
                what: "serial log",
                ..
            })
        ));
    }

    #[test]
    fn module_list_is_dom0_then_bundle() {
        let m = multiboot_modules(&host(), &Layout::in_dir("/b")).unwrap();
        assert_eq!(
            m.to_string(),
            "module 0: dom0 kernel: /b/dom0.elf\nmodule 1: boot bundle: /b/host.bundle\n"
        );
        assert_eq!(m.0[0].role, ModuleRole::Dom0Kernel);
        assert_eq!(m.0[1].role, ModuleRole::Bundle);
    }

    #[test]
    fn grub_stanza_is_pinned() {
        let g = grub_stanza(&host(), &GrubLayout::default()).unwrap();
        assert_eq!(g.to_string(), GRUB);
        let bad = GrubLayout {
            dom0: "/boot/my dom0".to_string(),
            ..GrubLayout::default()
        };
        assert!(matches!(
            grub_stanza(&host(), &bad),
            Err(RenderError::BadPath {
                what: "dom0 image",
                ..
            })
        ));
    }

    #[test]
    fn bundle_carries_plan_and_images_in_entry_order() {
        let h = host();
        assert_eq!(
            bundle_entries(&h, Path::new("/b")),
            vec![
                None,
                Some(PathBuf::from("/b/xs.elf")),
                Some(PathBuf::from("/b/fuzz.elf"))
            ]
        );
        let bytes = bundle_with(&h, |p| Ok(format!("ELF:{}", p.display()).into_bytes())).unwrap();
        let b = Bundle::parse(&bytes).unwrap();
        let plan = b.plan().unwrap();
        assert_eq!(plan, h.plan());
        assert_eq!(b.len(), 3);
        for d in &plan.domains {
            let image = b.entry(d.module as usize).unwrap();
            assert_eq!(image, format!("ELF:{}", d.image).as_bytes());
        }
    }

    #[test]
    fn bundle_reports_unreadable_image() {
        let e = bundle(&host(), Path::new("/nonexistent-windsor")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("services[0].image: cannot read /nonexistent-windsor/xs.elf: "),
            "{msg}"
        );
    }

    #[test]
    fn bundle_must_fit_in_dom0() {
        let mut h = host();
        h.dom0.memory_mib = 17;
        let big = |_: &Path| Ok(vec![0u8; 1 << 20]);
        let e = bundle_with(&h, big).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dom0.memory_mib: the boot bundle is 2105344 bytes, which leaves less than 16 MiB of \
             dom0's 17 MiB; expected dom0.memory_mib >= 19"
        );
        h.dom0.memory_mib = 19;
        assert!(bundle_with(&h, big).is_ok());
    }

    #[test]
    fn qemu_display_quotes_odd_arguments() {
        let q = QemuCommand {
            argv: vec!["a".into(), "b c".into(), "it's".into(), String::new()],
            timeout: Duration::from_secs(1),
        };
        assert_eq!(q.to_string(), r"a 'b c' 'it'\''s' ''");
    }
}
