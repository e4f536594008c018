//! Errors of loading and validating a host description.
//!
//! Every variant that points into the file carries a [`Location`], and its
//! message reads `file:line:column: field: what is wrong; what is expected`,
//! the shape compilers use, so editors can jump to it.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::string::String;
use std::sync::Arc;

use crate::plan::DomainKind;

/// Memory, in MiB, that [`ConfigError::MachineTooSmall`] leaves for Xen
/// itself (heap, frame table, per-domain structures) on the QEMU machine.
pub const XEN_RESERVE_MIB: u64 = 32;

/// A position in the host description: file, 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file name as given to [`load`](crate::load) or
    /// [`HostConfig::parse`](crate::HostConfig::parse).
    pub file: Arc<str>,
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub column: u32,
}

impl Location {
    /// The location of byte `offset` of `text`.
    pub fn at(file: &str, text: &str, offset: usize) -> Location {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Location {
            file: file.into(),
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// What is wrong with a path that must go on a QEMU or GRUB command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    /// The path is empty.
    Empty,
    /// QEMU splits `-initrd` and `-serial file:` on commas.
    Comma,
    /// QEMU and GRUB take what follows a space as the module's command line.
    Whitespace,
    /// A quote, backslash or control character cannot be written on a GRUB line.
    Unprintable,
}

impl PathProblem {
    /// Checks `path` for every problem above.
    pub fn of(path: &str) -> Option<PathProblem> {
        if path.is_empty() {
            Some(PathProblem::Empty)
        } else if path.contains(',') {
            Some(PathProblem::Comma)
        } else if path.chars().any(char::is_whitespace) {
            Some(PathProblem::Whitespace)
        } else if path
            .chars()
            .any(|c| c.is_control() || matches!(c, '"' | '\'' | '\\'))
        {
            Some(PathProblem::Unprintable)
        } else {
            None
        }
    }
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathProblem::Empty => "is empty; expected a path",
            PathProblem::Comma => {
                "contains a comma; expected none (QEMU splits -initrd and -serial file: on commas)"
            }
            PathProblem::Whitespace => {
                "contains whitespace; expected none (QEMU and GRUB read what follows a space as \
                 the module's command line)"
            }
            PathProblem::Unprintable => {
                "contains a quote, backslash or control character; expected none (it cannot be \
                 written on a GRUB line)"
            }
        })
    }
}

fn too(value: &i64, min: &i64) -> &'static str {
    if value < min {
        "small"
    } else {
        "large"
    }
}

/// Why a host description was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        error: io::Error,
    },
    /// Not valid TOML, an unknown field, a value of the wrong type or a
    /// missing required field (the message is the TOML parser's).
    #[error("{at}: {message}")]
    Toml {
        /// Where.
        at: Location,
        /// The parser's message, on one line.
        message: String,
    },
    /// A number outside its allowed range.
    #[error("{at}: {field}: {value} is too {}; expected {min}..={max}", too(.value, .min))]
    OutOfRange {
        /// Where.
        at: Location,
        /// The field, e.g. `guests[1].memory_mib`.
        field: String,
        /// The value found.
        value: i64,
        /// Smallest allowed.
        min: i64,
        /// Largest allowed.
        max: i64,
    },
    /// A domain name that is not 1 to 63 of `[A-Za-z0-9._-]` starting with
    /// a letter or digit.
    #[error(
        "{at}: {field}: {name:?} is not a valid domain name; expected 1 to 63 characters of \
         [A-Za-z0-9._-], starting with a letter or digit"
    )]
    BadName {
        /// Where.
        at: Location,
        /// The field.
        field: String,
        /// The name found.
        name: String,
    },
    /// A name Windsor or Xen tools use for dom0.
    #[error("{at}: {field}: {name:?} is reserved for dom0; expected another name")]
    ReservedName {
        /// Where.
        at: Location,
        /// The field.
        field: String,
        /// The name found.
        name: String,
    },
    /// Two domains with the same name.
    #[error("{at}: {field}: {name:?} is already the name of the domain at {first}; expected a unique name")]
    DuplicateName {
        /// Where the second use is.
        at: Location,
        /// The field.
        field: String,
        /// The name.
        name: String,
        /// Where the first use is.
        first: Location,
    },
    /// An image path that cannot be put on a QEMU or GRUB command line.
    #[error("{at}: {field}: {path:?} {problem}")]
    BadPath {
        /// Where.
        at: Location,
        /// The field.
        field: String,
        /// The path found.
        path: String,
        /// What is wrong with it.
        problem: PathProblem,
    },
    /// An image that is not a file (from [`HostConfig::check_images`](crate::HostConfig::check_images)).
    #[error("{at}: {field}: {} does not exist or is not a file; expected a built image", path.display())]
    ImageNotFound {
        /// Where the image is named.
        at: Location,
        /// The field.
        field: String,
        /// The path that was checked.
        path: PathBuf,
    },
    /// A domain command line that cannot be handed to the domain.
    #[error("{at}: {field}: {problem}")]
    BadCmdline {
        /// Where.
        at: Location,
        /// The field.
        field: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// More guests than dom0 builds.
    #[error("{at}: guests: {count} guests is too many; expected at most {max}")]
    TooManyGuests {
        /// Where the guest past the limit starts.
        at: Location,
        /// Guests found.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// No service domain of kind xenstore.
    #[error(
        "{at}: services: no xenstore domain; expected one [[services]] table with \
         kind = \"xenstore\""
    )]
    MissingXenstore {
        /// The start of the file.
        at: Location,
    },
    /// A second service domain of one kind.
    #[error(
        "{at}: {field}: a second {kind} domain (the first is at {first}); expected at most one"
    )]
    DuplicateService {
        /// Where the second one is.
        at: Location,
        /// The field (`services[i].kind`).
        field: String,
        /// The kind.
        kind: DomainKind,
        /// Where the first one is.
        first: Location,
    },
    /// The QEMU machine cannot hold dom0, the domains and Xen.
    #[error(
        "{at}: qemu.memory_mib: {value} MiB cannot hold this host; expected at least {needed} \
         (dom0, every domain, and {XEN_RESERVE_MIB} MiB for Xen)"
    )]
    MachineTooSmall {
        /// Where `qemu.memory_mib` is (or the `[qemu]` table).
        at: Location,
        /// The machine's memory.
        value: u64,
        /// What the plan needs.
        needed: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn location_counts_lines_and_characters() {
        let text = "a = 1\n\u{e9}b = 2\n";
        assert_eq!(Location::at("h.toml", text, 0).to_string(), "h.toml:1:1");
        assert_eq!(Location::at("h.toml", text, 6).to_string(), "h.toml:2:1");
        // The é is two bytes but one column.
        assert_eq!(Location::at("h.toml", text, 8).to_string(), "h.toml:2:2");
        // Past the end and inside a character are clamped.
        assert_eq!(Location::at("h.toml", text, 7).to_string(), "h.toml:2:1");
        assert_eq!(Location::at("h.toml", text, 99).to_string(), "h.toml:3:1");
    }

    #[test]
    fn path_problems() {
        assert_eq!(PathProblem::of("a/b.elf"), None);
        assert_eq!(PathProblem::of(""), Some(PathProblem::Empty));
        assert_eq!(PathProblem::of("a,b"), Some(PathProblem::Comma));
        assert_eq!(PathProblem::of("a b"), Some(PathProblem::Whitespace));
        assert_eq!(PathProblem::of("a\"b"), Some(PathProblem::Unprintable));
    }
}

/// Why a kernel image could not be turned into a PVH ELF
/// ([`kernel::pvh_elf`](crate::kernel::pvh_elf)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// Neither an ELF nor an x86 bzImage.
    #[error("not a kernel image: expected an ELF (vmlinux, a Windsor image) or an x86 bzImage")]
    NotAKernel,
    /// A bzImage older than boot protocol 2.08 (no payload fields).
    #[error("bzImage boot protocol {version:#x} is older than 2.08: no payload to extract")]
    OldBootProtocol {
        /// The header's `version`.
        version: u16,
    },
    /// The setup header points the payload outside the file.
    #[error("bzImage payload at {start} ({len} bytes) lies outside the {file}-byte file")]
    PayloadOutOfBounds {
        /// Start of the payload.
        start: usize,
        /// Its length.
        len: usize,
        /// File length.
        file: usize,
    },
    /// A payload compression this crate does not decode.
    #[error("bzImage payload is {0}-compressed; only XZ (Debian's CONFIG_KERNEL_XZ) is supported")]
    UnsupportedCompression(&'static str),
    /// The XZ stream is corrupt.
    #[error("bzImage XZ payload does not decompress: {0}")]
    Decompress(String),
    /// The decompressed kernel is larger than the decoder accepts.
    #[error("decompressed kernel is larger than {max} bytes")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// The payload decompressed to something other than an ELF.
    #[error("bzImage payload is not an ELF vmlinux")]
    PayloadNotElf,
    /// The ELF cannot be laid out for the bundle.
    #[error("kernel ELF refused: {0}")]
    BadElf(&'static str),
}
