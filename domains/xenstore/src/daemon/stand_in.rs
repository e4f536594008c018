//! A minimal stand-in store used until the crate's core is wired in: a
//! flat map of nodes, dom0-only (no permission checks), watches, and
//! transactions without isolation. It exists so the transport and
//! persistence can be exercised on their own; it is not the xenstore core.

extern crate std;

use std::collections::{BTreeMap, HashMap};
use std::string::String;
use std::vec::Vec;

use super::Engine;
use crate::persist::journal::message;

#[derive(Clone)]
struct NodeData {
    value: Vec<u8>,
    perms: Vec<u8>,
}

type Watch = (Vec<u8>, Vec<u8>);

/// See the module docs.
pub struct StandIn {
    nodes: BTreeMap<Vec<u8>, NodeData>,
    /// (path, token) pairs per connection.
    watches: HashMap<usize, Vec<Watch>>,
    next_tx: u32,
}

impl Default for StandIn {
    fn default() -> Self {
        let mut nodes = BTreeMap::new();
        for p in [
            &b"/"[..],
            b"/local",
            b"/local/domain",
            b"/local/domain/0",
            b"/tool",
        ] {
            nodes.insert(
                p.to_vec(),
                NodeData {
                    value: Vec::new(),
                    perms: b"n0\0".to_vec(),
                },
            );
        }
        StandIn {
            nodes,
            watches: HashMap::new(),
            next_tx: 1,
        }
    }
}

fn parent(p: &[u8]) -> Option<&[u8]> {
    if p == b"/" {
        return None;
    }
    let i = p.iter().rposition(|&c| c == b'/')?;
    Some(if i == 0 { b"/" } else { &p[..i] })
}

fn canon(p: &[u8]) -> Vec<u8> {
    let mut v = if p.first() == Some(&b'/') {
        p.to_vec()
    } else {
        let mut v = b"/local/domain/0/".to_vec();
        v.extend_from_slice(p);
        v
    };
    while v.len() > 1 && v.ends_with(b"/") {
        v.pop();
    }
    v
}

fn under(path: &[u8], watch: &[u8]) -> bool {
    path == watch
        || (path.starts_with(watch) && (watch == b"/" || path.get(watch.len()) == Some(&b'/')))
}

impl StandIn {
    fn fire(&self, path: &[u8], out: &mut Vec<(usize, Vec<u8>)>) {
        for (&conn, ws) in &self.watches {
            for (w, token) in ws {
                if under(path, w) {
                    let mut p = path.to_vec();
                    p.push(0);
                    p.extend_from_slice(token);
                    p.push(0);
                    out.push((conn, message(15, 0, 0, &p)));
                }
            }
        }
    }

    fn create(&mut self, path: &[u8], value: Option<&[u8]>) {
        if let Some(n) = self.nodes.get_mut(path) {
            if let Some(v) = value {
                n.value = v.to_vec();
            }
            return;
        }
        let perms = parent(path)
            .map(|p| {
                self.create(p, None);
                self.nodes
                    .get(p)
                    .map(|n| n.perms.clone())
                    .unwrap_or_default()
            })
            .unwrap_or_else(|| b"n0\0".to_vec());
        self.nodes.insert(
            path.to_vec(),
            NodeData {
                value: value.unwrap_or_default().to_vec(),
                perms,
            },
        );
    }

    fn handle(
        &mut self,
        conn: usize,
        ty: u32,
        payload: &[u8],
        out: &mut Vec<(usize, Vec<u8>)>,
    ) -> Result<Vec<u8>, &'static str> {
        let mut args = payload.splitn(2, |&c| c == 0);
        let first = args.next().unwrap_or_default();
        let rest = args.next().unwrap_or_default();
        let path = canon(first);
        match ty {
            1 => {
                if !self.nodes.contains_key(&path) {
                    return Err("ENOENT");
                }
                let mut prefix = path.clone();
                if prefix != b"/" {
                    prefix.push(b'/');
                }
                let mut r = Vec::new();
                for k in self.nodes.range(prefix.clone()..).map(|(k, _)| k) {
                    if !k.starts_with(&prefix) {
                        break;
                    }
                    let name = &k[prefix.len()..];
                    if !name.is_empty() && !name.contains(&b'/') {
                        r.extend_from_slice(name);
                        r.push(0);
                    }
                }
                Ok(r)
            }
            2 => self
                .nodes
                .get(&path)
                .map(|n| n.value.clone())
                .ok_or("ENOENT"),
            3 => self
                .nodes
                .get(&path)
                .map(|n| n.perms.clone())
                .ok_or("ENOENT"),
            4 => {
                let token = rest.split(|&c| c == 0).next().unwrap_or_default().to_vec();
                let w = if first.first() == Some(&b'@') {
                    first.to_vec()
                } else {
                    path
                };
                self.watches
                    .entry(conn)
                    .or_default()
                    .push((w.clone(), token.clone()));
                let mut p = first.to_vec();
                p.push(0);
                p.extend_from_slice(&token);
                p.push(0);
                out.push((conn, message(15, 0, 0, &p)));
                Ok(b"OK\0".to_vec())
            }
            5 => {
                let token = rest.split(|&c| c == 0).next().unwrap_or_default();
                let w = if first.first() == Some(&b'@') {
                    first.to_vec()
                } else {
                    path
                };
                let ws = self.watches.entry(conn).or_default();
                let before = ws.len();
                ws.retain(|(p, t)| !(p == &w && t == token));
                if ws.len() == before {
                    return Err("ENOENT");
                }
                Ok(b"OK\0".to_vec())
            }
            6 => {
                let id = self.next_tx;
                self.next_tx += 1;
                Ok(std::format!("{id}\0").into_bytes())
            }
            7 => Ok(b"OK\0".to_vec()),
            10 => {
                Ok(std::format!("/local/domain/{}\0", String::from_utf8_lossy(first)).into_bytes())
            }
            11 => {
                self.create(&path, Some(rest));
                self.fire(&path, out);
                Ok(b"OK\0".to_vec())
            }
            12 => {
                self.create(&path, None);
                self.fire(&path, out);
                Ok(b"OK\0".to_vec())
            }
            13 => {
                if !self.nodes.contains_key(&path) {
                    return Err("ENOENT");
                }
                let gone: Vec<Vec<u8>> = self
                    .nodes
                    .keys()
                    .filter(|k| under(k, &path))
                    .cloned()
                    .collect();
                for k in &gone {
                    self.nodes.remove(k);
                }
                self.fire(&path, out);
                Ok(b"OK\0".to_vec())
            }
            14 => {
                let n = self.nodes.get_mut(&path).ok_or("ENOENT")?;
                n.perms = rest.to_vec();
                self.fire(&path, out);
                Ok(b"OK\0".to_vec())
            }
            _ => Err("ENOSYS"),
        }
    }
}

impl Engine for StandIn {
    fn connect(&mut self, _conn: usize) {}

    fn disconnect(&mut self, conn: usize) {
        self.watches.remove(&conn);
    }

    fn request(&mut self, conn: usize, msg: &[u8], out: &mut Vec<(usize, Vec<u8>)>) {
        let word = |i: usize| u32::from_le_bytes([msg[i], msg[i + 1], msg[i + 2], msg[i + 3]]);
        if msg.len() < 16 {
            return;
        }
        let (ty, req_id, tx_id) = (word(0), word(4), word(8));
        let at = out.len();
        let reply = match self.handle(conn, ty, &msg[16..], out) {
            Ok(p) => message(ty, req_id, tx_id, &p),
            Err(e) => {
                let mut p = e.as_bytes().to_vec();
                p.push(0);
                message(16, req_id, tx_id, &p)
            }
        };
        // The reply goes before the watch events it caused.
        out.insert(at, (conn, reply));
    }
}
