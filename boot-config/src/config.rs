//! The host description: TOML in, a validated [`HostConfig`] out.
//!
//! Two stages, so that every check has a position to report:
//!
//! 1. serde + `toml` into the `raw` types below, which keep the span of every
//!    value that is validated later (`toml::Spanned`). Syntax errors, unknown
//!    fields (`deny_unknown_fields` everywhere, so typos are caught), wrong
//!    types and missing fields come out of this stage with the parser's span.
//!    Numbers are read as `i64` so that a negative or oversized value gets the
//!    same range message as any other out-of-range value.
//! 2. [`validate`] walks the raw tree and builds the [`HostConfig`], or stops
//!    at the first problem, in file order.
//!
//! Nothing here touches the file system except [`load`](crate::load) (reading
//! the file) and [`HostConfig::check_images`]; the latter is separate because
//! images live in the build output directory, which the host description does
//! not know, and tests inject their own check with
//! [`HostConfig::check_images_with`].

use std::borrow::ToOwned;
use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::string::String;
use std::vec::Vec;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{ConfigError, Location, PathProblem, XEN_RESERVE_MIB};
use crate::plan::{
    BootPlan, Dom0Settings, DomainKind, LogLevel, PlanDomain, PlanRamdisk, Timeouts, XenstoreQuotas,
};

/// Memory of any domain, dom0 included, in MiB.
pub const MEMORY_MIB: RangeInclusive<i64> = 4..=65536;
/// vCPUs of any domain, dom0 included.
pub const VCPUS: RangeInclusive<i64> = 1..=64;
/// Most guests dom0 builds at boot.
pub const MAX_GUESTS: usize = 32;
/// Longest domain command line, in bytes (Xen's `MAX_GUEST_CMDLINE` is 1024
/// with the NUL).
pub const MAX_CMDLINE: usize = 1023;
/// Names reserved for dom0 (compared without regard to case).
pub const RESERVED_NAMES: &[&str] = &["dom0", "Domain-0", "toolstack"];
/// Memory of the QEMU machine, in MiB.
pub const QEMU_MEMORY_MIB: RangeInclusive<i64> = 64..=65536;
/// CPUs of the QEMU machine.
pub const QEMU_SMP: RangeInclusive<i64> = 1..=64;
/// Hard timeout of a QEMU run, in seconds.
pub const QEMU_TIMEOUT_SECS: RangeInclusive<i64> = 1..=3600;
/// Any boot-step timeout, in milliseconds.
pub const TIMEOUT_MS: RangeInclusive<i64> = 1..=600_000;

mod raw {
    //! The file as written; see the module doc.
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        #[serde(default)]
        pub host: Option<Spanned<Host>>,
        pub dom0: Spanned<Dom0>,
        #[serde(default)]
        pub services: Vec<Spanned<Service>>,
        #[serde(default)]
        pub guests: Vec<Spanned<Guest>>,
        #[serde(default)]
        pub qemu: Option<Spanned<Qemu>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Host {
        pub name: Option<Spanned<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Dom0 {
        pub image: Spanned<String>,
        pub memory_mib: Option<Spanned<i64>>,
        pub vcpus: Option<Spanned<i64>>,
        pub log_level: Option<LogLevel>,
        pub xenstore: Option<Quotas>,
        pub timeouts: Option<Timeouts>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Quotas {
        pub max_entries_per_domain: Option<Spanned<i64>>,
        pub max_entry_size: Option<Spanned<i64>>,
        pub max_watches_per_domain: Option<Spanned<i64>>,
        pub max_transactions_per_domain: Option<Spanned<i64>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Timeouts {
        pub domain_ready_ms: Option<Spanned<i64>>,
        pub shutdown_ms: Option<Spanned<i64>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Service {
        pub kind: Spanned<ServiceKind>,
        pub name: Option<Spanned<String>>,
        pub image: Spanned<String>,
        pub memory_mib: Spanned<i64>,
        pub vcpus: Option<Spanned<i64>>,
        pub cmdline: Option<Spanned<String>>,
    }

    #[derive(Deserialize, Clone, Copy)]
    #[serde(rename_all = "lowercase")]
    pub enum ServiceKind {
        Xenstore,
        Netback,
        Blkback,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Guest {
        pub name: Spanned<String>,
        /// XAPI's `PV_kernel`: an ELF or a bzImage.
        #[serde(alias = "PV_kernel")]
        pub image: Spanned<String>,
        /// XAPI's `PV_ramdisk`.
        #[serde(rename = "PV_ramdisk", alias = "ramdisk")]
        pub ramdisk: Option<Spanned<String>>,
        pub memory_mib: Spanned<i64>,
        pub vcpus: Option<Spanned<i64>>,
        /// XAPI's `PV_args`.
        #[serde(alias = "PV_args")]
        pub cmdline: Option<Spanned<String>>,
        pub ready_console: Option<Spanned<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Qemu {
        pub memory_mib: Option<Spanned<i64>>,
        pub smp: Option<Spanned<i64>>,
        pub timeout_secs: Option<Spanned<i64>>,
    }
}

/// An image path from the host description, relative to the build output
/// directory, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The path as written.
    pub path: String,
    /// The field, e.g. `guests[0].image`.
    pub field: String,
    /// Where the path is in the file.
    pub at: Location,
}

/// A validated service domain or guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainConfig {
    /// Unique name.
    pub name: String,
    /// What the domain is for.
    pub kind: DomainKind,
    /// Memory, in MiB.
    pub memory_mib: u32,
    /// vCPUs.
    pub vcpus: u32,
    /// The kernel image (`PV_kernel`): an ELF, or a bzImage that the bundle
    /// renderer turns into one.
    pub image: Image,
    /// Command line handed to the domain (`PV_args`).
    pub cmdline: String,
    /// The ramdisk (`PV_ramdisk`), guests only.
    pub ramdisk: Option<Image>,
    /// Console text that shows the guest is up (see
    /// [`PlanDomain::ready_console`]), guests only.
    pub ready_console: Option<String>,
}

/// Settings of the QEMU test machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QemuSettings {
    /// Machine memory (`-m`), in MiB.
    pub memory_mib: u32,
    /// Machine CPUs (`-smp`).
    pub smp: u32,
    /// Hard timeout of one run, in seconds (enforced by the caller).
    pub timeout_secs: u32,
}

impl Default for QemuSettings {
    fn default() -> Self {
        QemuSettings {
            memory_mib: 1024,
            smp: 1,
            timeout_secs: 30,
        }
    }
}

/// A validated host description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// Host name (`[host] name`, default `windsor`).
    pub name: String,
    /// dom0's own kernel image.
    pub dom0_image: Image,
    /// Settings handed to dom0 in the plan.
    pub dom0: Dom0Settings,
    /// Service domains, in file order (the plan puts xenstore first).
    pub services: Vec<DomainConfig>,
    /// Guests, in file order.
    pub guests: Vec<DomainConfig>,
    /// The QEMU test machine.
    pub qemu: QemuSettings,
}

impl HostConfig {
    /// Parses and validates `text`; `file` names it in error messages.
    pub fn parse(text: &str, file: &str) -> Result<HostConfig, ConfigError> {
        let raw: raw::File = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            ConfigError::Toml {
                at: Location::at(file, text, offset),
                message: e.message().trim().replace('\n', " "),
            }
        })?;
        validate(raw, &Ctx { file, text })
    }

    /// The boot plan: the xenstore domain, then the other service domains
    /// and the guests in file order. Images get bundle entries from 1 in
    /// order of first use.
    pub fn plan(&self) -> BootPlan {
        let xenstore = self
            .services
            .iter()
            .filter(|d| d.kind == DomainKind::Xenstore);
        let others = self
            .services
            .iter()
            .filter(|d| d.kind != DomainKind::Xenstore);
        let mut entries: Vec<&str> = Vec::new();
        let domains = xenstore
            .chain(others)
            .chain(&self.guests)
            .map(|d| {
                let mut entry = |path| match entries.iter().position(|p| *p == path) {
                    Some(i) => i + 1,
                    None => {
                        entries.push(path);
                        entries.len()
                    }
                };
                let module = entry(d.image.path.as_str());
                let ramdisk = d.ramdisk.as_ref().map(|r| PlanRamdisk {
                    module: entry(r.path.as_str()) as u32,
                    path: r.path.clone(),
                });
                PlanDomain {
                    name: d.name.clone(),
                    kind: d.kind,
                    memory_mib: d.memory_mib,
                    vcpus: d.vcpus,
                    module: module as u32,
                    image: d.image.path.clone(),
                    cmdline: d.cmdline.clone(),
                    ramdisk,
                    ready_console: d.ready_console.clone(),
                }
            })
            .collect();
        BootPlan {
            host: self.name.clone(),
            dom0: self.dom0.clone(),
            domains,
        }
    }

    /// Every image named by the file: dom0's, then the domains' in plan order.
    pub fn images(&self) -> impl Iterator<Item = &Image> {
        std::iter::once(&self.dom0_image)
            .chain(self.services.iter().map(|d| &d.image))
            .chain(
                self.guests
                    .iter()
                    .flat_map(|d| std::iter::once(&d.image).chain(&d.ramdisk)),
            )
    }

    /// Checks that every image exists as a file under `images_dir`.
    pub fn check_images(&self, images_dir: &Path) -> Result<(), ConfigError> {
        self.check_images_with(|p| images_dir.join(p).is_file())
            .map_err(|e| match e {
                ConfigError::ImageNotFound { at, field, path } => ConfigError::ImageNotFound {
                    at,
                    field,
                    path: images_dir.join(path),
                },
                other => other,
            })
    }

    /// Checks every image with `exists`, which gets the path as written.
    pub fn check_images_with(
        &self,
        mut exists: impl FnMut(&Path) -> bool,
    ) -> Result<(), ConfigError> {
        for image in self.images() {
            if !exists(Path::new(&image.path)) {
                return Err(ConfigError::ImageNotFound {
                    at: image.at.clone(),
                    field: image.field.clone(),
                    path: PathBuf::from(&image.path),
                });
            }
        }
        Ok(())
    }
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn at<T>(&self, s: &Spanned<T>) -> Location {
        Location::at(self.file, self.text, s.span().start)
    }

    fn start(&self) -> Location {
        Location::at(self.file, self.text, 0)
    }

    fn ranged(
        &self,
        value: &Spanned<i64>,
        field: impl Into<String>,
        range: &RangeInclusive<i64>,
    ) -> Result<u32, ConfigError> {
        let v = *value.get_ref();
        if range.contains(&v) {
            // The ranges above all fit in u32.
            Ok(u32::try_from(v).unwrap_or(u32::MAX))
        } else {
            Err(ConfigError::OutOfRange {
                at: self.at(value),
                field: field.into(),
                value: v,
                min: *range.start(),
                max: *range.end(),
            })
        }
    }

    fn ranged_or(
        &self,
        value: &Option<Spanned<i64>>,
        field: &str,
        range: &RangeInclusive<i64>,
        default: u32,
    ) -> Result<u32, ConfigError> {
        match value {
            Some(v) => self.ranged(v, field, range),
            None => Ok(default),
        }
    }

    fn image(&self, path: &Spanned<String>, field: String) -> Result<Image, ConfigError> {
        if let Some(problem) = PathProblem::of(path.get_ref()) {
            return Err(ConfigError::BadPath {
                at: self.at(path),
                field,
                path: path.get_ref().clone(),
                problem,
            });
        }
        Ok(Image {
            path: path.get_ref().clone(),
            field,
            at: self.at(path),
        })
    }

    fn name(&self, name: &Spanned<String>, field: &str) -> Result<String, ConfigError> {
        let n = name.get_ref();
        let valid = (1..=63).contains(&n.len())
            && n.starts_with(|c: char| c.is_ascii_alphanumeric())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            return Err(ConfigError::BadName {
                at: self.at(name),
                field: field.to_owned(),
                name: n.clone(),
            });
        }
        if RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(n)) {
            return Err(ConfigError::ReservedName {
                at: self.at(name),
                field: field.to_owned(),
                name: n.clone(),
            });
        }
        Ok(n.clone())
    }

    fn cmdline(
        &self,
        cmdline: &Option<Spanned<String>>,
        field: &str,
    ) -> Result<String, ConfigError> {
        let Some(c) = cmdline else {
            return Ok(String::new());
        };
        let problem = if c.get_ref().len() > MAX_CMDLINE {
            Some("longer than 1023 bytes; expected at most 1023 (Xen's MAX_GUEST_CMDLINE)")
        } else if c.get_ref().chars().any(char::is_control) {
            Some("contains a control character (NUL, newline, ...); expected one line of text")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(ConfigError::BadCmdline {
                at: self.at(c),
                field: field.to_owned(),
                problem,
            }),
            None => Ok(c.get_ref().clone()),
        }
    }
}

fn validate(raw: raw::File, cx: &Ctx<'_>) -> Result<HostConfig, ConfigError> {
    let name = match raw.host.as_ref().and_then(|h| h.get_ref().name.as_ref()) {
        Some(n) => cx.name(n, "host.name")?,
        None => "windsor".to_owned(),
    };

    let d0 = raw.dom0.get_ref();
    let dom0_image = cx.image(&d0.image, "dom0.image".to_owned())?;
    let defaults_q = XenstoreQuotas::default();
    let xenstore = match &d0.xenstore {
        None => defaults_q,
        Some(q) => XenstoreQuotas {
            max_entries_per_domain: cx.ranged_or(
                &q.max_entries_per_domain,
                "dom0.xenstore.max_entries_per_domain",
                &(1..=1_000_000),
                defaults_q.max_entries_per_domain,
            )?,
            max_entry_size: cx.ranged_or(
                &q.max_entry_size,
                "dom0.xenstore.max_entry_size",
                &(1..=4096),
                defaults_q.max_entry_size,
            )?,
            max_watches_per_domain: cx.ranged_or(
                &q.max_watches_per_domain,
                "dom0.xenstore.max_watches_per_domain",
                &(1..=65536),
                defaults_q.max_watches_per_domain,
            )?,
            max_transactions_per_domain: cx.ranged_or(
                &q.max_transactions_per_domain,
                "dom0.xenstore.max_transactions_per_domain",
                &(1..=1024),
                defaults_q.max_transactions_per_domain,
            )?,
        },
    };
    let defaults_t = Timeouts::default();
    let timeouts = match &d0.timeouts {
        None => defaults_t,
        Some(t) => Timeouts {
            domain_ready_ms: cx.ranged_or(
                &t.domain_ready_ms,
                "dom0.timeouts.domain_ready_ms",
                &TIMEOUT_MS,
                defaults_t.domain_ready_ms,
            )?,
            shutdown_ms: cx.ranged_or(
                &t.shutdown_ms,
                "dom0.timeouts.shutdown_ms",
                &TIMEOUT_MS,
                defaults_t.shutdown_ms,
            )?,
        },
    };
    let dom0 = Dom0Settings {
        memory_mib: cx.ranged_or(&d0.memory_mib, "dom0.memory_mib", &MEMORY_MIB, 64)?,
        vcpus: cx.ranged_or(&d0.vcpus, "dom0.vcpus", &VCPUS, 1)?,
        log_level: d0.log_level.unwrap_or(LogLevel::Info),
        xenstore,
        timeouts,
    };

    // Names are unique across services and guests.
    let mut names: HashMap<String, Location> = HashMap::new();
    let mut claim = |at: Location, field: &str, value: &str| {
        if let Some(first) = names.get(value) {
            return Err(ConfigError::DuplicateName {
                at,
                field: field.to_owned(),
                name: value.to_owned(),
                first: first.clone(),
            });
        }
        names.insert(value.to_owned(), at);
        Ok(())
    };

    let mut services = Vec::new();
    let mut kinds: HashMap<DomainKind, Location> = HashMap::new();
    for (i, s) in raw.services.iter().enumerate() {
        let sr = s.get_ref();
        let kind = match *sr.kind.get_ref() {
            raw::ServiceKind::Xenstore => DomainKind::Xenstore,
            raw::ServiceKind::Netback => DomainKind::Netback,
            raw::ServiceKind::Blkback => DomainKind::Blkback,
        };
        let field = |f: &str| format!("services[{i}].{f}");
        if let Some(first) = kinds.get(&kind) {
            return Err(ConfigError::DuplicateService {
                at: cx.at(&sr.kind),
                field: field("kind"),
                kind,
                first: first.clone(),
            });
        }
        kinds.insert(kind, cx.at(&sr.kind));
        let name = match &sr.name {
            Some(n) => {
                let v = cx.name(n, &field("name"))?;
                claim(cx.at(n), &field("name"), &v)?;
                v
            }
            None => {
                let v = kind.as_str().to_owned();
                claim(cx.at(&sr.kind), &field("kind"), &v)?;
                v
            }
        };
        services.push(DomainConfig {
            name,
            kind,
            memory_mib: cx.ranged(&sr.memory_mib, field("memory_mib"), &MEMORY_MIB)?,
            vcpus: cx.ranged_or(&sr.vcpus, &field("vcpus"), &VCPUS, 1)?,
            image: cx.image(&sr.image, field("image"))?,
            cmdline: cx.cmdline(&sr.cmdline, &field("cmdline"))?,
            ramdisk: None,
            ready_console: None,
        });
    }
    if !kinds.contains_key(&DomainKind::Xenstore) {
        return Err(ConfigError::MissingXenstore { at: cx.start() });
    }

    let mut guests = Vec::new();
    for (i, g) in raw.guests.iter().enumerate() {
        if i == MAX_GUESTS {
            return Err(ConfigError::TooManyGuests {
                at: cx.at(g),
                count: raw.guests.len(),
                max: MAX_GUESTS,
            });
        }
        let gr = g.get_ref();
        let field = |f: &str| format!("guests[{i}].{f}");
        let name = cx.name(&gr.name, &field("name"))?;
        claim(cx.at(&gr.name), &field("name"), &name)?;
        guests.push(DomainConfig {
            name,
            kind: DomainKind::Guest,
            memory_mib: cx.ranged(&gr.memory_mib, field("memory_mib"), &MEMORY_MIB)?,
            vcpus: cx.ranged_or(&gr.vcpus, &field("vcpus"), &VCPUS, 1)?,
            image: cx.image(&gr.image, field("image"))?,
            cmdline: cx.cmdline(&gr.cmdline, &field("cmdline"))?,
            ramdisk: match &gr.ramdisk {
                Some(r) => Some(cx.image(r, field("PV_ramdisk"))?),
                None => None,
            },
            ready_console: match &gr.ready_console {
                Some(r) => Some(cx.cmdline(&Some(r.clone()), &field("ready_console"))?),
                None => None,
            },
        });
    }

    let defaults = QemuSettings::default();
    let qemu = match &raw.qemu {
        None => defaults,
        Some(q) => {
            let qr = q.get_ref();
            QemuSettings {
                memory_mib: cx.ranged_or(
                    &qr.memory_mib,
                    "qemu.memory_mib",
                    &QEMU_MEMORY_MIB,
                    defaults.memory_mib,
                )?,
                smp: cx.ranged_or(&qr.smp, "qemu.smp", &QEMU_SMP, defaults.smp)?,
                timeout_secs: cx.ranged_or(
                    &qr.timeout_secs,
                    "qemu.timeout_secs",
                    &QEMU_TIMEOUT_SECS,
                    defaults.timeout_secs,
                )?,
            }
        }
    };
    let needed = u64::from(dom0.memory_mib)
        + services
            .iter()
            .chain(&guests)
            .map(|d| u64::from(d.memory_mib))
            .sum::<u64>()
        + XEN_RESERVE_MIB;
    if u64::from(qemu.memory_mib) < needed {
        let at = match &raw.qemu {
            Some(q) => match &q.get_ref().memory_mib {
                Some(m) => cx.at(m),
                None => cx.at(q),
            },
            None => cx.start(),
        };
        return Err(ConfigError::MachineTooSmall {
            at,
            value: u64::from(qemu.memory_mib),
            needed,
        });
    }

    Ok(HostConfig {
        name,
        dom0_image,
        dom0,
        services,
        guests,
        qemu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    const BASE: &str = r#"[dom0]
image = "dom0.elf"

[[services]]
kind = "xenstore"
image = "xs.elf"
memory_mib = 32

[[guests]]
name = "g0"
image = "g.elf"
memory_mib = 16
"#;

    fn parse(text: &str) -> Result<HostConfig, ConfigError> {
        HostConfig::parse(text, "host.toml")
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    fn with_guest(extra: &str) -> String {
        format!("{BASE}\n[[guests]]\n{extra}\n")
    }

    #[test]
    fn base_is_valid_with_defaults() {
        let c = parse(BASE).unwrap();
        assert_eq!(c.name, "windsor");
        assert_eq!(c.dom0.memory_mib, 64);
        assert_eq!(c.dom0.vcpus, 1);
        assert_eq!(c.dom0.log_level, LogLevel::Info);
        assert_eq!(c.dom0.xenstore, XenstoreQuotas::default());
        assert_eq!(c.services[0].name, "xenstore");
        assert_eq!(c.guests[0].vcpus, 1);
        assert_eq!(c.guests[0].cmdline, "");
        assert_eq!(c.qemu, QemuSettings::default());
        assert_eq!(c.guests[0].image.at.to_string(), "host.toml:11:9");
    }

    #[test]
    fn memory_too_small() {
        let t = with_guest("name = \"g1\"\nimage = \"g.elf\"\nmemory_mib = 0");
        assert_eq!(
            err(&t),
            "host.toml:17:14: guests[1].memory_mib: 0 is too small; expected 4..=65536"
        );
    }

    #[test]
    fn memory_negative_and_too_large() {
        let t = with_guest("name = \"g1\"\nimage = \"g.elf\"\nmemory_mib = -1");
        assert!(err(&t).ends_with("guests[1].memory_mib: -1 is too small; expected 4..=65536"));
        let t = BASE.replace("memory_mib = 32", "memory_mib = 65537");
        assert_eq!(
            err(&t),
            "host.toml:7:14: services[0].memory_mib: 65537 is too large; expected 4..=65536"
        );
    }

    #[test]
    fn vcpus_out_of_range() {
        let t = with_guest("name = \"g1\"\nimage = \"g.elf\"\nmemory_mib = 8\nvcpus = 65");
        assert_eq!(
            err(&t),
            "host.toml:18:9: guests[1].vcpus: 65 is too large; expected 1..=64"
        );
        let t = BASE.replace("image = \"dom0.elf\"", "image = \"dom0.elf\"\nvcpus = 0");
        assert_eq!(
            err(&t),
            "host.toml:3:9: dom0.vcpus: 0 is too small; expected 1..=64"
        );
    }

    #[test]
    fn duplicate_guest_name() {
        let t = with_guest("name = \"g0\"\nimage = \"g.elf\"\nmemory_mib = 8");
        assert_eq!(
            err(&t),
            "host.toml:15:8: guests[1].name: \"g0\" is already the name of the domain at \
             host.toml:10:8; expected a unique name"
        );
    }

    #[test]
    fn guest_named_like_defaulted_service() {
        let t = with_guest("name = \"xenstore\"\nimage = \"g.elf\"\nmemory_mib = 8");
        assert_eq!(
            err(&t),
            "host.toml:15:8: guests[1].name: \"xenstore\" is already the name of the domain \
             at host.toml:5:8; expected a unique name"
        );
    }

    #[test]
    fn reserved_name() {
        let t = BASE.replace("\"g0\"", "\"domain-0\"");
        assert_eq!(
            err(&t),
            "host.toml:10:8: guests[0].name: \"domain-0\" is reserved for dom0; expected another name"
        );
    }

    #[test]
    fn bad_names() {
        for bad in ["", "-x", "a b", "a/b", &"x".repeat(64)] {
            let t = BASE.replace("\"g0\"", &format!("{bad:?}"));
            let e = err(&t);
            assert!(e.starts_with("host.toml:10:8: guests[0].name: "), "{e}");
            assert!(e.contains("is not a valid domain name"), "{e}");
        }
        let t = format!("[host]\nname = \"a b\"\n{BASE}");
        assert!(err(&t).starts_with("host.toml:2:8: host.name: \"a b\" is not a valid"));
    }

    #[test]
    fn missing_xenstore() {
        let t = BASE.replace("kind = \"xenstore\"", "kind = \"netback\"");
        assert_eq!(
            err(&t),
            "host.toml:1:1: services: no xenstore domain; expected one [[services]] table with \
             kind = \"xenstore\""
        );
        let t = "[dom0]\nimage = \"d.elf\"\n";
        assert!(err(t).contains("no xenstore domain"));
    }

    #[test]
    fn duplicate_xenstore() {
        let t = format!(
            "{BASE}\n[[services]]\nkind = \"xenstore\"\nname = \"xs2\"\nimage = \"xs.elf\"\nmemory_mib = 8\n"
        );
        assert_eq!(
            err(&t),
            "host.toml:15:8: services[1].kind: a second xenstore domain (the first is at \
             host.toml:5:8); expected at most one"
        );
    }

    #[test]
    fn too_many_guests() {
        let mut t = BASE.to_owned();
        for i in 1..=MAX_GUESTS {
            t.push_str(&format!(
                "\n[[guests]]\nname = \"g{i}\"\nimage = \"g.elf\"\nmemory_mib = 4\n"
            ));
        }
        // The 33rd guest's error points at its `[[guests]]` header.
        let e = err(&t);
        assert!(
            e.ends_with(": guests: 33 guests is too many; expected at most 32"),
            "{e}"
        );
        let line = 14 + 5 * (MAX_GUESTS - 1);
        assert!(e.starts_with(&format!("host.toml:{line}:1: ")), "{e}");
    }

    #[test]
    fn image_paths_that_break_command_lines() {
        let t = BASE.replace("\"g.elf\"", "\"a,b.elf\"");
        assert_eq!(
            err(&t),
            "host.toml:11:9: guests[0].image: \"a,b.elf\" contains a comma; expected none \
             (QEMU splits -initrd and -serial file: on commas)"
        );
        let t = BASE.replace("\"dom0.elf\"", "\"my dom0.elf\"");
        assert!(
            err(&t).starts_with("host.toml:2:9: dom0.image: \"my dom0.elf\" contains whitespace")
        );
        let t = BASE.replace("\"xs.elf\"", "\"\"");
        assert_eq!(
            err(&t),
            "host.toml:6:9: services[0].image: \"\" is empty; expected a path"
        );
    }

    #[test]
    fn bad_cmdlines() {
        let t = with_guest("name = \"g1\"\nimage = \"g.elf\"\nmemory_mib = 8\ncmdline = \"a\\nb\"");
        assert_eq!(
            err(&t),
            "host.toml:18:11: guests[1].cmdline: contains a control character (NUL, newline, \
             ...); expected one line of text"
        );
        let long = "x".repeat(MAX_CMDLINE + 1);
        let t = with_guest(&format!(
            "name = \"g1\"\nimage = \"g.elf\"\nmemory_mib = 8\ncmdline = \"{long}\""
        ));
        assert!(err(&t).contains("guests[1].cmdline: longer than 1023 bytes"));
    }

    #[test]
    fn unknown_field_is_located() {
        let t = BASE.replace("memory_mib = 16", "memroy_mib = 16");
        let e = err(&t);
        assert!(
            e.starts_with("host.toml:12:1: unknown field `memroy_mib`"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_is_located() {
        let t = BASE.replace("name = \"g0\"", "name = \"g0");
        let e = err(&t);
        assert!(e.starts_with("host.toml:10:"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn wrong_type_and_missing_field() {
        let t = BASE.replace("memory_mib = 16", "memory_mib = \"16\"");
        let e = err(&t);
        assert!(
            e.starts_with("host.toml:12:14: invalid type: string"),
            "{e}"
        );
        let t = BASE.replace("memory_mib = 16\n", "");
        let e = err(&t);
        assert!(e.contains("missing field `memory_mib`"), "{e}");
        assert!(
            e.starts_with("host.toml:9:") || e.starts_with("host.toml:10:"),
            "{e}"
        );
        let e = err("");
        assert!(e.starts_with("host.toml:1:1: missing field `dom0`"), "{e}");
    }

    #[test]
    fn unknown_enum_values() {
        let t = BASE.replace("kind = \"xenstore\"", "kind = \"xenstored\"");
        let e = err(&t);
        assert!(
            e.starts_with("host.toml:5:8: unknown variant `xenstored`"),
            "{e}"
        );
        let t = BASE.replace(
            "image = \"dom0.elf\"",
            "image = \"dom0.elf\"\nlog_level = \"loud\"",
        );
        let e = err(&t);
        assert!(
            e.starts_with("host.toml:3:13: unknown variant `loud`"),
            "{e}"
        );
    }

    #[test]
    fn quotas_and_timeouts_ranges() {
        let t = BASE.replace(
            "image = \"dom0.elf\"\n",
            "image = \"dom0.elf\"\n[dom0.xenstore]\nmax_entry_size = 4097\n",
        );
        assert_eq!(
            err(&t),
            "host.toml:4:18: dom0.xenstore.max_entry_size: 4097 is too large; expected 1..=4096"
        );
        let t = BASE.replace(
            "image = \"dom0.elf\"\n",
            "image = \"dom0.elf\"\n[dom0.timeouts]\nshutdown_ms = 0\n",
        );
        assert_eq!(
            err(&t),
            "host.toml:4:15: dom0.timeouts.shutdown_ms: 0 is too small; expected 1..=600000"
        );
    }

    #[test]
    fn qemu_ranges_and_machine_size() {
        let t = format!("{BASE}\n[qemu]\nsmp = 0\n");
        assert_eq!(
            err(&t),
            "host.toml:15:7: qemu.smp: 0 is too small; expected 1..=64"
        );
        let t = format!("{BASE}\n[qemu]\nmemory_mib = 128\n");
        assert_eq!(
            err(&t),
            "host.toml:15:14: qemu.memory_mib: 128 MiB cannot hold this host; expected at \
             least 144 (dom0, every domain, and 32 MiB for Xen)"
        );
        let t = BASE.replace("memory_mib = 16", "memory_mib = 2048");
        assert!(err(&t).starts_with("host.toml:1:1: qemu.memory_mib: 1024 MiB cannot hold"));
    }

    #[test]
    fn images_checked_with_injected_probe() {
        let c = parse(BASE).unwrap();
        c.check_images_with(|_| true).unwrap();
        let e = c
            .check_images_with(|p| p != Path::new("g.elf"))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "host.toml:11:9: guests[0].image: g.elf does not exist or is not a file; expected \
             a built image"
        );
        let e = c
            .check_images(Path::new("/nonexistent-windsor"))
            .unwrap_err();
        assert!(e.to_string().starts_with(
            "host.toml:2:9: dom0.image: /nonexistent-windsor/dom0.elf does not exist"
        ));
    }

    #[test]
    fn plan_orders_xenstore_first_and_shares_images() {
        let t = r#"[dom0]
image = "dom0.elf"
memory_mib = 48
[[services]]
kind = "netback"
image = "nb.elf"
memory_mib = 16
[[services]]
kind = "xenstore"
name = "store"
image = "xs.elf"
memory_mib = 32
[[guests]]
name = "a"
image = "g.elf"
memory_mib = 8
cmdline = "x=1"
[[guests]]
name = "b"
image = "g.elf"
memory_mib = 8
vcpus = 2
"#;
        let plan = parse(t).unwrap().plan();
        let order: Vec<(&str, DomainKind, u32)> = plan
            .domains
            .iter()
            .map(|d| (d.name.as_str(), d.kind, d.module))
            .collect();
        assert_eq!(
            order,
            vec![
                ("store", DomainKind::Xenstore, 1),
                ("netback", DomainKind::Netback, 2),
                ("a", DomainKind::Guest, 3),
                ("b", DomainKind::Guest, 3),
            ]
        );
        assert_eq!(plan.images(), vec!["xs.elf", "nb.elf", "g.elf"]);
        assert_eq!(plan.dom0.memory_mib, 48);
        assert_eq!(plan.domains[2].cmdline, "x=1");
        assert_eq!(plan.domains[3].vcpus, 2);
        plan.check().unwrap();
        assert_eq!(BootPlan::from_postcard(&plan.to_postcard()).unwrap(), plan);
    }

    #[test]
    fn load_reports_missing_file() {
        let e = crate::load("/nonexistent-windsor/host.toml").unwrap_err();
        assert!(e
            .to_string()
            .starts_with("/nonexistent-windsor/host.toml: cannot read: "));
    }
}
