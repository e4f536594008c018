//! The boot plan: what dom0 builds, in order.
//!
//! Producer: [`HostConfig::plan`](crate::HostConfig::plan) on the build
//! machine. Consumer: the toolstack unikernel (dom0), which finds the encoded
//! plan as entry 0 of the [boot bundle](crate::bundle) and builds
//! [`BootPlan::domains`] front to back.
//!
//! This module is `no_std` + `alloc`. The encoding is a small fixed header
//! followed by the postcard body:
//!
//! ```text
//!  0      4        6
//!  +------+--------+---------------------------+
//!  | WBPL | ver LE | postcard(BootPlan)        |
//!  +------+--------+---------------------------+
//! ```
//!
//! The header sits outside postcard on purpose: postcard is not
//! self-describing, so a blob from another plan version would decode into
//! garbage (or fail with an unhelpful message). Checking the magic and the
//! version first lets dom0 say exactly what is wrong.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};

/// First four bytes of an encoded plan.
pub const PLAN_MAGIC: [u8; 4] = *b"WBPL";

/// Version of the plan encoding; bump on any change to the plan types.
pub const PLAN_VERSION: u16 = 2;

/// Length of the header in front of the postcard body.
pub const PLAN_HEADER_LEN: usize = 6;

/// Everything dom0 needs to build the host.
///
/// Invariants (checked by [`BootPlan::check`], which
/// [`BootPlan::from_postcard`] runs): `domains[0]` is the one xenstore
/// domain, service domains come before guests, names are unique, and every
/// [`PlanDomain::module`] is at least 1 (entry 0 of the bundle is the plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootPlan {
    /// Host name, for logs and the xenstore `/pool` record.
    pub host: String,
    /// Settings compiled into (handed to) dom0 itself.
    pub dom0: Dom0Settings,
    /// Domains to build, in build order.
    pub domains: Vec<PlanDomain>,
}

/// Settings for dom0 (the toolstack) itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dom0Settings {
    /// Memory Xen gives dom0 (`dom0_mem=`), in MiB.
    pub memory_mib: u32,
    /// vCPUs Xen gives dom0 (`dom0_max_vcpus=`).
    pub vcpus: u32,
    /// Console log level.
    pub log_level: LogLevel,
    /// Quotas the xenstore domain enforces per domain.
    pub xenstore: XenstoreQuotas,
    /// Time limits dom0 applies to the steps of the boot.
    pub timeouts: Timeouts,
}

/// Console log level of a Windsor domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// The default: one line per boot step.
    Info,
    /// Per-request detail.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The lower-case name used in the TOML file.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-domain quotas of the xenstore domain (the names follow C xenstored's
/// `-E`, `-S`, `-W`, `-T` options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct XenstoreQuotas {
    /// Nodes one domain may own.
    pub max_entries_per_domain: u32,
    /// Largest node value, in bytes (at most `XENSTORE_PAYLOAD_MAX`, 4096).
    pub max_entry_size: u32,
    /// Watches one domain may hold.
    pub max_watches_per_domain: u32,
    /// Transactions one domain may have open.
    pub max_transactions_per_domain: u32,
}

impl Default for XenstoreQuotas {
    fn default() -> Self {
        XenstoreQuotas {
            max_entries_per_domain: 1000,
            max_entry_size: 2048,
            max_watches_per_domain: 128,
            max_transactions_per_domain: 10,
        }
    }
}

/// Time limits of the boot steps, in milliseconds of Xen system time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    /// From unpausing a domain to it reporting ready in xenstore.
    pub domain_ready_ms: u32,
    /// From writing `control/shutdown` to the domain being shut down.
    pub shutdown_ms: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            domain_ready_ms: 2000,
            shutdown_ms: 2000,
        }
    }
}

/// What a planned domain is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainKind {
    /// The xenstore domain; exactly one, always built first.
    Xenstore,
    /// The network backend domain.
    Netback,
    /// The block backend domain.
    Blkback,
    /// An ordinary guest.
    Guest,
}

impl DomainKind {
    /// The lower-case name used in the TOML file and in logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            DomainKind::Xenstore => "xenstore",
            DomainKind::Netback => "netback",
            DomainKind::Blkback => "blkback",
            DomainKind::Guest => "guest",
        }
    }

    /// Whether this is a service (driver or store) domain.
    pub const fn is_service(self) -> bool {
        !matches!(self, DomainKind::Guest)
    }
}

impl fmt::Display for DomainKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One domain for dom0 to build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanDomain {
    /// Unique name (xenstore `/local/domain/<id>/name`).
    pub name: String,
    /// What the domain is for.
    pub kind: DomainKind,
    /// Memory, in MiB.
    pub memory_mib: u32,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Index of the domain's ELF image among the boot bundle's entries
    /// (always ≥ 1; two domains with the same image share an entry).
    pub module: u32,
    /// The image path as written in the host description, relative to the
    /// build output directory. Informational (logs); dom0 uses `module`.
    pub image: String,
    /// Command line handed to the domain in its `hvm_start_info`.
    pub cmdline: String,
    /// The ramdisk (initrd, XAPI's `PV_ramdisk`), handed to the guest as
    /// `hvm_start_info` module 0.
    pub ramdisk: Option<PlanRamdisk>,
    /// Text whose appearance on the guest's console shows it is up, for
    /// guests that do not write `data/state = running` to xenstore (other
    /// people's kernels): dom0 waits for it instead.
    pub ready_console: Option<String>,
}

/// A domain's ramdisk in the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRamdisk {
    /// Its bundle entry (≥ 1).
    pub module: u32,
    /// The path as written in the host description (informational).
    pub path: String,
}

/// Why an encoded plan was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The blob is shorter than the plan header.
    #[error("boot plan: {len} bytes is shorter than the {PLAN_HEADER_LEN}-byte header")]
    Truncated {
        /// Length of the blob.
        len: usize,
    },
    /// The blob does not start with [`PLAN_MAGIC`]: it is not a plan.
    #[error("boot plan: bad magic {found:02x?}; expected {PLAN_MAGIC:02x?} (\"WBPL\")")]
    BadMagic {
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// The plan was written by a different version of this crate.
    #[error(
        "boot plan: version {found} is not supported; this dom0 reads version {PLAN_VERSION} \
         (rebuild dom0 and the plan from the same tree)"
    )]
    UnsupportedVersion {
        /// The version in the blob.
        found: u16,
    },
    /// The postcard body does not decode into a plan.
    #[error("boot plan: body does not decode: {0}")]
    Decode(postcard::Error),
    /// The body decoded but bytes were left over.
    #[error("boot plan: {0} trailing bytes after the plan")]
    TrailingBytes(usize),
    /// The plan decoded but breaks one of the [`BootPlan`] invariants.
    #[error("boot plan: inconsistent: {0}")]
    Inconsistent(&'static str),
}

impl BootPlan {
    /// Encodes the plan: header (magic, version) then the postcard body.
    pub fn to_postcard(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(&PLAN_MAGIC);
        out.extend_from_slice(&PLAN_VERSION.to_le_bytes());
        // Serializing into a Vec only fails if a type refuses to serialize,
        // and none of ours does.
        out = postcard::to_extend(self, out).unwrap_or_else(|_| unreachable_encode());
        out
    }

    /// Decodes and checks a plan produced by [`BootPlan::to_postcard`].
    ///
    /// Never panics, whatever the bytes.
    pub fn from_postcard(bytes: &[u8]) -> Result<BootPlan, PlanError> {
        if bytes.len() < PLAN_HEADER_LEN {
            return Err(PlanError::Truncated { len: bytes.len() });
        }
        let found = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if found != PLAN_MAGIC {
            return Err(PlanError::BadMagic { found });
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != PLAN_VERSION {
            return Err(PlanError::UnsupportedVersion { found: version });
        }
        let (plan, rest): (BootPlan, _) =
            postcard::take_from_bytes(&bytes[PLAN_HEADER_LEN..]).map_err(PlanError::Decode)?;
        if !rest.is_empty() {
            return Err(PlanError::TrailingBytes(rest.len()));
        }
        plan.check()?;
        Ok(plan)
    }

    /// Checks the structural invariants listed on [`BootPlan`].
    pub fn check(&self) -> Result<(), PlanError> {
        let first = self
            .domains
            .first()
            .ok_or(PlanError::Inconsistent("no domains"))?;
        if first.kind != DomainKind::Xenstore {
            return Err(PlanError::Inconsistent(
                "the first domain is not the xenstore domain",
            ));
        }
        let mut seen_guest = false;
        for (i, d) in self.domains.iter().enumerate() {
            if i > 0 && d.kind == DomainKind::Xenstore {
                return Err(PlanError::Inconsistent("more than one xenstore domain"));
            }
            if d.kind == DomainKind::Guest {
                seen_guest = true;
            } else if seen_guest {
                return Err(PlanError::Inconsistent(
                    "a service domain comes after a guest",
                ));
            }
            if d.module == 0 || d.ramdisk.as_ref().is_some_and(|r| r.module == 0) {
                return Err(PlanError::Inconsistent(
                    "a domain uses bundle entry 0, which is the plan",
                ));
            }
            if d.memory_mib == 0 || d.vcpus == 0 {
                return Err(PlanError::Inconsistent("a domain has no memory or no vCPU"));
            }
            if self.domains[..i].iter().any(|o| o.name == d.name) {
                return Err(PlanError::Inconsistent("two domains share a name"));
            }
        }
        Ok(())
    }

    /// The xenstore domain (always `domains[0]` in a checked plan).
    pub fn xenstore(&self) -> Option<&PlanDomain> {
        self.domains.iter().find(|d| d.kind == DomainKind::Xenstore)
    }

    /// The guests, in build order.
    pub fn guests(&self) -> impl Iterator<Item = &PlanDomain> {
        self.domains.iter().filter(|d| d.kind == DomainKind::Guest)
    }

    /// Number of bundle entries the plan refers to (the plan itself plus the
    /// distinct images): one more than the largest `module`.
    pub fn bundle_entries(&self) -> u32 {
        self.domains
            .iter()
            .flat_map(|d| core::iter::once(d.module).chain(d.ramdisk.as_ref().map(|r| r.module)))
            .max()
            .unwrap_or(0)
            + 1
    }

    /// Image path of each bundle entry from 1 on, in entry order.
    pub fn images(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for d in &self.domains {
            let rd = d.ramdisk.as_ref().map(|r| (r.module, r.path.as_str()));
            for (m, path) in core::iter::once((d.module, d.image.as_str())).chain(rd) {
                let idx = m as usize;
                if idx >= 1 && idx - 1 == out.len() {
                    out.push(path);
                }
            }
        }
        out
    }
}

#[cold]
fn unreachable_encode() -> Vec<u8> {
    // postcard's Vec flavor cannot run out of space, and every field of the
    // plan is a plain integer, string, enum or Vec: serialization cannot fail.
    unreachable!("postcard failed to serialize a BootPlan into a Vec")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    pub(crate) fn sample() -> BootPlan {
        BootPlan {
            host: "test".to_string(),
            dom0: Dom0Settings {
                memory_mib: 64,
                vcpus: 1,
                log_level: LogLevel::Info,
                xenstore: XenstoreQuotas::default(),
                timeouts: Timeouts::default(),
            },
            domains: vec![
                PlanDomain {
                    name: "xenstore".to_string(),
                    kind: DomainKind::Xenstore,
                    memory_mib: 32,
                    vcpus: 1,
                    module: 1,
                    image: "xenstore.elf".to_string(),
                    cmdline: String::new(),
                    ramdisk: None,
                    ready_console: None,
                },
                PlanDomain {
                    name: "fuzz0".to_string(),
                    kind: DomainKind::Guest,
                    memory_mib: 16,
                    vcpus: 2,
                    module: 2,
                    image: "fuzz.elf".to_string(),
                    ramdisk: None,
                    ready_console: None,
                    cmdline: "seed=1".to_string(),
                },
            ],
        }
    }

    /// `sample()` encoded. If this changes, the encoding changed: bump
    /// [`PLAN_VERSION`] and update the fixture.
    #[rustfmt::skip]
    static SAMPLE_BLOB: [u8; 83] = [
        b'W', b'B', b'P', b'L', 2, 0, // magic, version 2
        4, b't', b'e', b's', b't', // host
        64, 1, 2, // dom0: memory 64, vcpus 1, log level Info
        0xe8, 0x07, 0x80, 0x10, 0x80, 0x01, 10, // quotas 1000, 2048, 128, 10 (varints)
        0xd0, 0x0f, 0xd0, 0x0f, // timeouts 2000, 2000
        // two domains
        2,
        // "xenstore", Xenstore, 32 MiB, 1 vCPU, module 1
        8, b'x', b'e', b'n', b's', b't', b'o', b'r', b'e', 0, 32, 1, 1,
        // image "xenstore.elf", cmdline ""
        12, b'x', b'e', b'n', b's', b't', b'o', b'r', b'e', b'.', b'e', b'l', b'f', 0,
        0, 0, // no ramdisk, no ready_console
        // "fuzz0", Guest, 16 MiB, 2 vCPUs, module 2
        5, b'f', b'u', b'z', b'z', b'0', 3, 16, 2, 2,
        8, b'f', b'u', b'z', b'z', b'.', b'e', b'l', b'f', // image
        6, b's', b'e', b'e', b'd', b'=', b'1', // cmdline
        0, 0, // no ramdisk, no ready_console
    ];

    #[test]
    fn encoding_is_pinned() {
        assert_eq!(sample().to_postcard(), SAMPLE_BLOB);
        assert_eq!(BootPlan::from_postcard(&SAMPLE_BLOB), Ok(sample()));
    }

    #[test]
    fn round_trip() {
        let plan = sample();
        let blob = plan.to_postcard();
        assert_eq!(&blob[..4], b"WBPL");
        assert_eq!(&blob[4..6], &PLAN_VERSION.to_le_bytes());
        assert_eq!(BootPlan::from_postcard(&blob), Ok(plan));
    }

    #[test]
    fn rejects_truncated_header() {
        assert_eq!(
            BootPlan::from_postcard(b"WBP"),
            Err(PlanError::Truncated { len: 3 })
        );
    }

    #[test]
    fn rejects_bad_magic() {
        let mut blob = sample().to_postcard();
        blob[0] = b'X';
        let err = BootPlan::from_postcard(&blob).unwrap_err();
        assert!(matches!(err, PlanError::BadMagic { .. }));
        assert!(err.to_string().contains("bad magic"), "{err}");
    }

    #[test]
    fn rejects_other_version() {
        let mut blob = sample().to_postcard();
        blob[4..6].copy_from_slice(&3u16.to_le_bytes());
        let err = BootPlan::from_postcard(&blob).unwrap_err();
        assert_eq!(err, PlanError::UnsupportedVersion { found: 3 });
        assert_eq!(
            err.to_string(),
            "boot plan: version 3 is not supported; this dom0 reads version 2 \
             (rebuild dom0 and the plan from the same tree)"
        );
    }

    #[test]
    fn rejects_truncated_body_and_trailing_bytes() {
        let blob = sample().to_postcard();
        assert!(matches!(
            BootPlan::from_postcard(&blob[..blob.len() - 1]),
            Err(PlanError::Decode(_))
        ));
        let mut long = blob.clone();
        long.push(0);
        assert_eq!(
            BootPlan::from_postcard(&long),
            Err(PlanError::TrailingBytes(1))
        );
    }

    #[test]
    fn rejects_inconsistent_plans() {
        let mut p = sample();
        p.domains.swap(0, 1);
        assert!(matches!(
            BootPlan::from_postcard(&p.to_postcard()),
            Err(PlanError::Inconsistent(_))
        ));
        let mut p = sample();
        p.domains[1].module = 0;
        assert!(p.check().is_err());
        let mut p = sample();
        p.domains[1].name = "xenstore".to_string();
        assert!(p.check().is_err());
        let mut p = sample();
        p.domains.clear();
        assert!(p.check().is_err());
    }

    #[test]
    fn images_and_entries() {
        let mut p = sample();
        assert_eq!(p.images(), vec!["xenstore.elf", "fuzz.elf"]);
        assert_eq!(p.bundle_entries(), 3);
        let mut g = p.domains[1].clone();
        g.name = "fuzz1".to_string();
        p.domains.push(g);
        assert_eq!(p.images(), vec!["xenstore.elf", "fuzz.elf"]);
        assert_eq!(p.bundle_entries(), 3);
    }
}
