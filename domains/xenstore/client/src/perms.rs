//! Node permissions: the owner/ACL model of xenstored.
//!
//! A permission list is never empty. Its first entry names the owner and
//! the access of every domain not listed after it; later entries grant
//! listed domains their own access. The owner, privileged domains (dom0
//! and the configured privileged domain) and a domain whose *target* owns
//! the node get everything (`perm_for_conn` in `xenstored_core.c`).
//! On the wire a list is NUL-separated strings like `b0`, `r5`.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::Write as _;

use xen::{DomId, Errno};

use crate::{Access, Perm};

/// What a connection may do with a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rights {
    /// May read.
    pub read: bool,
    /// May write.
    pub write: bool,
    /// Owns it (may change permissions).
    pub owner: bool,
}

impl Rights {
    /// Everything.
    pub const ALL: Rights = Rights {
        read: true,
        write: true,
        owner: true,
    };

    fn of(a: Access) -> Rights {
        Rights {
            read: matches!(a, Access::Read | Access::Both),
            write: matches!(a, Access::Write | Access::Both),
            owner: false,
        }
    }
}

/// Who is asking: a domain, whether it is privileged, and its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Who {
    /// The caller's domain.
    pub dom: DomId,
    /// dom0 or the privileged domain: bypasses permissions and quotas.
    pub privileged: bool,
    /// Set by `XS_SET_TARGET`: the caller acts for this domain too.
    pub target: Option<DomId>,
}

impl Who {
    fn is(&self, d: DomId) -> bool {
        self.dom == d || self.target == Some(d)
    }
}

/// A node's permission list (shared: most nodes inherit their parent's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Perms(Arc<[Perm]>);

impl Perms {
    /// `n0`: owned by dom0, nobody else may do anything (the root's).
    pub fn dom0_only() -> Self {
        Self::owner(DomId::DOM0, Access::None)
    }

    /// A single-entry list.
    pub fn owner(dom: DomId, others: Access) -> Self {
        Perms(Arc::from([Perm {
            dom,
            access: others,
        }]))
    }

    /// From a list; `None` when empty.
    pub fn from_slice(p: &[Perm]) -> Option<Self> {
        if p.is_empty() {
            None
        } else {
            Some(Perms(Arc::from(p)))
        }
    }

    /// The entries, owner first.
    pub fn as_slice(&self) -> &[Perm] {
        &self.0
    }

    /// The owning domain.
    pub fn owner_dom(&self) -> DomId {
        self.0[0].dom
    }

    /// A copy with the owner changed.
    pub fn with_owner(&self, dom: DomId) -> Self {
        let mut v: Vec<Perm> = self.0.to_vec();
        v[0].dom = dom;
        Perms(Arc::from(v))
    }

    /// A copy without ACL entries for `dom` (the owner entry stays);
    /// `None` if there were none.
    pub fn without(&self, dom: DomId) -> Option<Self> {
        if !self.0[1..].iter().any(|p| p.dom == dom) {
            return None;
        }
        let v: Vec<Perm> = self
            .0
            .iter()
            .enumerate()
            .filter(|(i, p)| *i == 0 || p.dom != dom)
            .map(|(_, p)| *p)
            .collect();
        Some(Perms(Arc::from(v)))
    }

    /// What `who` may do (`perm_for_conn`).
    pub fn rights(&self, who: &Who) -> Rights {
        if who.privileged || who.is(self.0[0].dom) {
            return Rights::ALL;
        }
        for p in &self.0[1..] {
            if who.is(p.dom) {
                return Rights::of(p.access);
            }
        }
        Rights::of(self.0[0].access)
    }

    /// Parses NUL-terminated permission strings (`XS_SET_PERMS` payload
    /// after the path). `EINVAL` on any malformed entry or an empty list.
    pub fn parse(mut b: &[u8]) -> Result<Self, Errno> {
        let mut v = Vec::new();
        while !b.is_empty() {
            let end = b.iter().position(|&c| c == 0).ok_or(Errno::EINVAL)?;
            v.push(parse_one(&b[..end])?);
            b = &b[end + 1..];
        }
        Self::from_slice(&v).ok_or(Errno::EINVAL)
    }

    /// The wire form: each entry followed by a NUL.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut s = alloc::string::String::new();
        for p in self.0.iter() {
            s.clear();
            let _ = write!(s, "{}{}", p.access.letter(), p.dom.0);
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
    }
}

/// Parses one `<letter><domid>` entry.
pub fn parse_one(s: &[u8]) -> Result<Perm, Errno> {
    let (&l, digits) = s.split_first().ok_or(Errno::EINVAL)?;
    let access = Access::from_letter(l).ok_or(Errno::EINVAL)?;
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Errno::EINVAL);
    }
    let mut n: u32 = 0;
    for d in digits {
        n = n * 10 + u32::from(d - b'0');
    }
    let dom = u16::try_from(n).map_err(|_| Errno::EINVAL)?;
    Ok(Perm {
        dom: DomId(dom),
        access,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(d: u16) -> Who {
        Who {
            dom: DomId(d),
            privileged: d == 0,
            target: None,
        }
    }

    #[test]
    fn rights_follow_owner_and_acl() {
        let p = Perms::parse(b"n1\0r2\0w3\0").unwrap();
        assert_eq!(p.rights(&who(1)), Rights::ALL);
        assert_eq!(p.rights(&who(0)), Rights::ALL);
        assert!(p.rights(&who(2)).read && !p.rights(&who(2)).write);
        assert!(!p.rights(&who(3)).read && p.rights(&who(3)).write);
        assert_eq!(p.rights(&who(4)), Rights::default());
        let t = Who {
            dom: DomId(9),
            privileged: false,
            target: Some(DomId(1)),
        };
        assert_eq!(p.rights(&t), Rights::ALL);
    }

    #[test]
    fn parse_and_emit() {
        let p = Perms::parse(b"b0\0r12\0").unwrap();
        let mut out = Vec::new();
        p.emit(&mut out);
        assert_eq!(out, b"b0\0r12\0");
        assert_eq!(Perms::parse(b""), Err(Errno::EINVAL));
        assert_eq!(Perms::parse(b"x0\0"), Err(Errno::EINVAL));
        assert_eq!(Perms::parse(b"r\0"), Err(Errno::EINVAL));
        assert_eq!(Perms::parse(b"r70000\0"), Err(Errno::EINVAL));
        assert_eq!(Perms::parse(b"r-1\0"), Err(Errno::EINVAL));
        assert_eq!(Perms::parse(b"r1"), Err(Errno::EINVAL));
        assert!(p.without(DomId(12)).is_some());
        assert!(p.without(DomId(5)).is_none());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn perm() -> impl Strategy<Value = Perm> {
        (any::<u16>(), 0u8..4).prop_map(|(d, a)| Perm {
            dom: DomId(d),
            access: [Access::None, Access::Read, Access::Write, Access::Both][usize::from(a)],
        })
    }

    proptest! {
        #[test]
        fn emit_parse_round_trip(v in proptest::collection::vec(perm(), 1..8)) {
            let p = Perms::from_slice(&v).unwrap();
            let mut out = Vec::new();
            p.emit(&mut out);
            prop_assert_eq!(Perms::parse(&out).unwrap(), p);
        }

        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = Perms::parse(&b) {
                prop_assert!(!p.as_slice().is_empty());
            }
        }
    }
}
