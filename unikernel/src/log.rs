//! `tracing` events on the domain's console.
//!
//! The domain cores (netback, vchan, the control channel, ...) log through
//! `tracing`; an image that wants to see those lines calls [`init`] once
//! with its name and a level. Each event becomes one console line,
//! `<name>: <LEVEL> <message> <field>=<value> ...`, formatted into a
//! bounded buffer (long lines are cut, never allocated). Spans are not
//! tracked: their fields do not appear.

use core::fmt::{self, Write};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Longest line written; the rest of a longer one is cut.
const LINE_MAX: usize = 240;

/// A fixed line buffer that drops what does not fit.
struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = LINE_MAX - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = if field.name() == "message" {
            write!(self, " {value:?}")
        } else {
            write!(self, " {}={value:?}", field.name())
        };
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = if field.name() == "message" {
            write!(self, " {value}")
        } else {
            write!(self, " {}={value}", field.name())
        };
    }
}

struct ConsoleLog {
    name: &'static str,
    max: Level,
}

impl Subscriber for ConsoleLog {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        *m.level() <= self.max
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut line = Line {
            buf: [0; LINE_MAX],
            len: 0,
        };
        let _ = write!(line, "{}: {}", self.name, e.metadata().level());
        e.record(&mut line);
        let _ = line.write_str("\n");
        crate::console::write_bytes(&line.buf[..line.len]);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// The level named by a `loglevel=<error|warn|info|debug|trace>` word of
/// `cmdline`, else `default`.
pub fn level_from(cmdline: &str, default: Level) -> Level {
    cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("loglevel="))
        .and_then(|l| l.parse().ok())
        .unwrap_or(default)
}

/// Prints `tracing` events up to `max` on the console, prefixed with
/// `name`. Only the first call takes effect.
pub fn init(name: &'static str, max: Level) {
    let _ =
        tracing::dispatcher::set_global_default(tracing::Dispatch::new(ConsoleLog { name, max }));
}
