//! The record table: every XenAPI object the toolstack knows, keyed by
//! class and uuid, and the generator of new uuids and MACs.
//!
//! Pure data (no_std + alloc): the [`Engine`](crate::engine::Engine) owns
//! one and is the only writer; persistence is the executor's job, told by
//! [`Effect::Save`](crate::effect::Effect::Save).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::action::{ref_of, uuid_of, ActionError, Class, PoolRecord, Record, Ref, VmRecord};

/// Every record, ordered by class then uuid (so one class is a range).
#[derive(Clone, Debug, Default)]
pub struct Records {
    map: BTreeMap<(Class, String), Record>,
}

impl Records {
    /// Inserts or replaces a record.
    pub fn insert(&mut self, rec: Record) {
        self.map.insert((rec.class(), rec.uuid().to_string()), rec);
    }

    /// Removes a record (absent is not an error).
    pub fn remove(&mut self, class: Class, uuid: &str) -> Option<Record> {
        self.map.remove(&(class, uuid.to_string()))
    }

    /// The record of `class` with `uuid`.
    pub fn by_uuid(&self, class: Class, uuid: &str) -> Option<&Record> {
        self.map.get(&(class, uuid.to_string()))
    }

    /// Whether a record of `class` with `uuid` exists.
    pub fn contains(&self, class: Class, uuid: &str) -> bool {
        self.by_uuid(class, uuid).is_some()
    }

    /// The record `r` of `class`, or `HANDLE_INVALID`.
    pub fn get(&self, class: Class, r: &str) -> Result<&Record, ActionError> {
        uuid_of(r)
            .and_then(|u| self.by_uuid(class, u))
            .ok_or_else(|| ActionError::HandleInvalid {
                class,
                r: r.to_string(),
            })
    }

    /// The VM `r`, or `HANDLE_INVALID`.
    pub fn vm(&self, r: &str) -> Result<&VmRecord, ActionError> {
        match self.get(Class::Vm, r)? {
            Record::Vm(v) => Ok(v),
            _ => Err(ActionError::HandleInvalid {
                class: Class::Vm,
                r: r.to_string(),
            }),
        }
    }

    /// The records of one class, by uuid.
    pub fn class(&self, class: Class) -> impl Iterator<Item = (&str, &Record)> {
        self.map
            .range((class, String::new())..)
            .take_while(move |((c, _), _)| *c == class)
            .map(|((_, u), r)| (u.as_str(), r))
    }

    /// The refs of one class.
    pub fn refs(&self, class: Class) -> Vec<Ref> {
        self.class(class).map(|(u, _)| ref_of(u)).collect()
    }

    /// Whether any record of `class` exists.
    pub fn any(&self, class: Class) -> bool {
        self.class(class).next().is_some()
    }

    /// Every record, by class then uuid.
    pub fn iter(&self) -> impl Iterator<Item = (Class, &str, &Record)> {
        self.map.iter().map(|((c, u), r)| (*c, u.as_str(), r))
    }

    /// Copies of every VM record.
    pub fn vms(&self) -> Vec<VmRecord> {
        self.class(Class::Vm)
            .filter_map(|(_, r)| match r {
                Record::Vm(v) => Some(v.clone()),
                _ => None,
            })
            .collect()
    }

    /// Copies of every pool record.
    pub fn pools(&self) -> Vec<PoolRecord> {
        self.class(Class::Pool)
            .filter_map(|(_, r)| match r {
                Record::Pool(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The generator of uuids and MAC addresses (splitmix64): deterministic
/// from its seed, so tests can fix it.
#[derive(Clone, Debug)]
pub struct Ids {
    state: u64,
}

impl Ids {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Ids { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A new version-4 uuid, textual.
    pub fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        let a = (a & !0xf000) | 0x4000; // version 4
        let b = (b & !(0xc000 << 48)) | (0x8000 << 48); // variant 10
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    /// A MAC in Xen's locally administered range `00:16:3e`.
    pub fn mac(&mut self) -> String {
        let x = self.next_u64();
        format!(
            "00:16:3e:{:02x}:{:02x}:{:02x}",
            (x >> 16) & 0x7f,
            (x >> 8) & 0xff,
            x & 0xff
        )
    }
}

/// The 16 bytes of a textual uuid (the domain handle); zeros if malformed.
pub fn uuid_bytes(u: &str) -> [u8; 16] {
    let hex: Vec<u8> = u.bytes().filter(|b| *b != b'-').collect();
    let mut out = [0u8; 16];
    if hex.len() != 32 {
        return out;
    }
    for (i, o) in out.iter_mut().enumerate() {
        let s = core::str::from_utf8(&hex[2 * i..2 * i + 2]).unwrap_or("00");
        *o = u8::from_str_radix(s, 16).unwrap_or(0);
    }
    out
}

/// Whether `u` is a textual uuid (8-4-4-4-12 hex digits): a uuid from a
/// client becomes a xenstore path component, so nothing else may pass.
pub fn is_uuid(u: &str) -> bool {
    u.len() == 36
        && u.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_v4_and_round_trip_to_handles() {
        let mut ids = Ids::new(7);
        let u = ids.uuid();
        assert!(is_uuid(&u), "{u}");
        assert_eq!(&u[14..15], "4");
        assert_ne!(uuid_bytes(&u), [0; 16]);
        assert_ne!(ids.uuid(), u);
        assert_eq!(uuid_bytes("not-a-uuid"), [0; 16]);
        assert!(!is_uuid("../../local/domain/0/xxxxxxxxxxxxxxxxx"));
    }

    #[test]
    fn a_class_is_a_range() {
        let mut r = Records::default();
        r.insert(Record::Vm(VmRecord {
            uuid: "b".into(),
            ..VmRecord::default()
        }));
        r.insert(Record::Pool(PoolRecord {
            uuid: "a".into(),
            ..PoolRecord::default()
        }));
        assert_eq!(r.refs(Class::Vm), ["OpaqueRef:b"]);
        assert_eq!(r.pools().len(), 1);
        assert!(r.vm("OpaqueRef:a").is_err());
        assert!(r.remove(Class::Vm, "b").is_some());
        assert!(!r.any(Class::Vm));
    }
}
