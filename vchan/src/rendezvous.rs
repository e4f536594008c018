//! The xenstore rendezvous of libxenvchan (`init_xs_srv` / `libxenvchan_client_init`).
//!
//! The server writes two nodes under a base path and lets the client read
//! them; the client reads them, maps the page and binds the port:
//!
//! ```text
//! <path>/ring-ref       decimal grant ref of the shared page   perms: n<server>, r<client>
//! <path>/event-channel  decimal unbound port for the client     perms: n<server>, r<client>
//! ```
//!
//! Windsor's convention for `<path>` is
//! `/local/domain/<server>/data/vchan/<client>/<port>` ([`path`]). The values
//! the client reads are untrusted: [`lookup`] parses them strictly and, like
//! libxenvchan, refuses zero.

use alloc::format;
use alloc::string::String;

use windsor_xenstore_client::{in_transaction, Access, ClientError, Perm, TxId, XenStore};
use xen::{DomId, EvtchnPort, GrantRef};

use crate::Error;

/// `/local/domain/<server>/data/vchan/<client>/<port>`.
pub fn path(server: DomId, client: DomId, port: &str) -> String {
    format!("/local/domain/{server}/data/vchan/{client}/{port}")
}

/// What the server advertises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Grant reference of the shared page.
    pub ring_ref: GrantRef,
    /// The server's port, unbound for the client.
    pub evtchn: EvtchnPort,
}

/// Writes `entry` under `base`, readable by `client` only, in one
/// transaction ([`in_transaction`]: retried on `EAGAIN`, a bounded number
/// of times).
pub fn publish<X: XenStore + ?Sized>(
    xs: &X,
    server: DomId,
    client: DomId,
    base: &str,
    entry: Entry,
) -> Result<(), ClientError> {
    let perms = [
        Perm {
            dom: server,
            access: Access::None,
        },
        Perm {
            dom: client,
            access: Access::Read,
        },
    ];
    let nodes = [
        (format!("{base}/ring-ref"), format!("{}", entry.ring_ref.0)),
        (
            format!("{base}/event-channel"),
            format!("{}", entry.evtchn.0),
        ),
    ];
    in_transaction(xs, |tx| {
        nodes.iter().try_for_each(|(k, v)| {
            xs.write(tx, k, v.as_bytes())?;
            xs.set_perms(tx, k, &perms)
        })
    })
}

/// Reads and validates the entry under `base`.
pub fn lookup<X: XenStore + ?Sized>(xs: &X, base: &str) -> Result<Entry, Error> {
    let num = |key: &'static str| -> Result<u32, Error> {
        let raw = xs.read(TxId::NONE, &format!("{base}/{key}"))?;
        parse_decimal(&raw)
            .filter(|&v| v != 0)
            .ok_or(Error::BadEntry { key })
    };
    Ok(Entry {
        ring_ref: GrantRef(num("ring-ref")?),
        evtchn: EvtchnPort(num("event-channel")?),
    })
}

/// Removes the entry (libxenvchan's `close_xs_srv`).
pub fn withdraw<X: XenStore + ?Sized>(xs: &X, base: &str) -> Result<(), ClientError> {
    xs.rm(TxId::NONE, base)
}

/// A decimal `u32` with no sign, spaces or trailing bytes (a trailing NUL,
/// which some writers include, is accepted).
fn parse_decimal(raw: &[u8]) -> Option<u32> {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    if raw.is_empty() || raw.len() > 10 {
        return None;
    }
    raw.iter().try_fold(0u32, |acc, &c| {
        let d = c.checked_sub(b'0').filter(|d| *d < 10)?;
        acc.checked_mul(10)?.checked_add(u32::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_convention() {
        assert_eq!(
            path(DomId(3), DomId(7), "ctl"),
            "/local/domain/3/data/vchan/7/ctl"
        );
    }

    #[test]
    fn decimals_are_strict() {
        assert_eq!(parse_decimal(b"8"), Some(8));
        assert_eq!(parse_decimal(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_decimal(b"4294967296"), None);
        assert_eq!(parse_decimal(b"12\0"), Some(12));
        for bad in [
            &b""[..],
            b"-1",
            b" 1",
            b"1 ",
            b"0x10",
            b"99999999999",
            b"1\x001",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }
}
