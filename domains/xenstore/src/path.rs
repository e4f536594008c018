//! Node names: validation and canonicalisation, as C xenstored 4.17 does
//! them (`is_valid_nodename`, `canonicalize` in `xenstored_core.c`).
//!
//! A valid absolute name starts with `/`, does not end with `/` (except the
//! root itself), has no `//`, uses only `A-Za-z0-9-/_@`, and is at most
//! `REL_PATH_MAX` bytes past its `/local/domain/<id>/` prefix (XSA-323).
//! Relative names are taken under the caller's `/local/domain/<id>`.
//! Names starting with `@` are special watch paths, never nodes.

use alloc::borrow::Cow;
use alloc::format;

use xen::{DomId, Errno};

use crate::wire::REL_PATH_MAX;

/// True for the bytes xenstored allows in a node name.
fn valid_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'/' | b'_' | b'@')
}

/// Length of the `/local/domain/<id>/` prefix of `p`, or 0.
fn local_prefix_len(p: &[u8]) -> usize {
    const PFX: &[u8] = b"/local/domain/";
    let Some(rest) = p.strip_prefix(PFX) else {
        return 0;
    };
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    // sscanf("%5u/") reads at most five digits, then needs a '/'.
    if digits == 0 || digits > 5 || rest.get(digits) != Some(&b'/') {
        return 0;
    }
    PFX.len() + digits + 1
}

/// Validates an absolute node name (`is_valid_nodename`) with the given
/// relative-length limit.
pub fn is_valid_with(p: &[u8], max_rel: usize) -> bool {
    if p.first() != Some(&b'/') {
        return false;
    }
    if p.len() > 1 && p.last() == Some(&b'/') {
        return false;
    }
    if p.len() > local_prefix_len(p) + max_rel.min(REL_PATH_MAX) {
        return false;
    }
    // One pass: allowed characters and no "//".
    let mut prev = 0u8;
    for &c in p {
        if !valid_char(c) || (c == b'/' && prev == b'/') {
            return false;
        }
        prev = c;
    }
    true
}

/// Validates an absolute node name with the protocol's limit.
pub fn is_valid(p: &[u8]) -> bool {
    is_valid_with(p, REL_PATH_MAX)
}

/// The home directory of a domain, `/local/domain/<id>`.
pub fn domain_path(dom: DomId) -> alloc::string::String {
    format!("/local/domain/{}", dom.0)
}

/// Makes `p` absolute for a connection of `dom` and validates it. Returns
/// the canonical name, or `EINVAL`.
pub fn canonical(dom: DomId, p: &[u8], max_rel: usize) -> Result<Cow<'_, str>, Errno> {
    let c: Cow<'_, [u8]> = if p.first() == Some(&b'/') {
        Cow::Borrowed(p)
    } else {
        if p.first() == Some(&b'@') {
            return Err(Errno::EINVAL);
        }
        let mut v = format!("/local/domain/{}/", dom.0).into_bytes();
        v.extend_from_slice(p);
        Cow::Owned(v)
    };
    if !is_valid_with(&c, max_rel) {
        return Err(Errno::EINVAL);
    }
    // Valid names are ASCII, so these conversions cannot fail.
    Ok(match c {
        Cow::Borrowed(b) => Cow::Borrowed(core::str::from_utf8(b).map_err(|_| Errno::EINVAL)?),
        Cow::Owned(v) => {
            Cow::Owned(alloc::string::String::from_utf8(v).map_err(|_| Errno::EINVAL)?)
        }
    })
}

/// The parent of a valid name other than `/`.
pub fn parent(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &p[..i],
    }
}

/// The last component of a valid name other than `/`.
pub fn basename(p: &str) -> &str {
    p.rfind('/').map_or(p, |i| &p[i + 1..])
}

/// `parent/name`.
pub fn join(parent: &str, name: &str) -> alloc::string::String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// Is `child` equal to `parent` or below it (`is_child` of xenstored_watch.c)?
pub fn is_child(child: &[u8], parent: &[u8]) -> bool {
    if parent == b"/" {
        return true;
    }
    child.starts_with(parent) && matches!(child.get(parent.len()), None | Some(b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity() {
        assert!(is_valid(b"/"));
        assert!(is_valid(b"/a/b-c_d@e"));
        assert!(!is_valid(b"a"));
        assert!(!is_valid(b"/a/"));
        assert!(!is_valid(b"/a//b"));
        assert!(!is_valid(b"/a b"));
        assert!(!is_valid(b"/a\xff"));
        assert!(!is_valid(b""));
    }

    #[test]
    fn length_limit_is_relative_to_home() {
        let mut long = b"/local/domain/12345/".to_vec();
        long.extend(core::iter::repeat_n(b'x', REL_PATH_MAX));
        assert!(is_valid(&long));
        long.push(b'x');
        assert!(!is_valid(&long));
        let mut abs = b"/".to_vec();
        abs.extend(core::iter::repeat_n(b'x', REL_PATH_MAX));
        assert!(!is_valid(&abs));
    }

    #[test]
    fn canonicalisation() {
        assert_eq!(
            canonical(DomId(3), b"a/b", REL_PATH_MAX).unwrap(),
            "/local/domain/3/a/b"
        );
        assert_eq!(canonical(DomId(3), b"/x", REL_PATH_MAX).unwrap(), "/x");
        assert_eq!(canonical(DomId(3), b"", REL_PATH_MAX), Err(Errno::EINVAL));
        assert_eq!(canonical(DomId(3), b"@x", REL_PATH_MAX), Err(Errno::EINVAL));
        assert_eq!(
            canonical(DomId(3), b"../x", REL_PATH_MAX),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn parents_and_children() {
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(basename("/a/b"), "b");
        assert_eq!(join("/", "a"), "/a");
        assert!(is_child(b"/a/b", b"/a"));
        assert!(is_child(b"/a", b"/a"));
        assert!(!is_child(b"/ab", b"/a"));
        assert!(is_child(b"/x", b"/"));
    }
}
