//! PyPI `pyxs` against `windsor-xenstored` over its Unix socket connection.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{require, run, Daemon, TempDir};

const SCRIPT: &str = r#"
import sys
try:
    import pyxs
except ImportError:
    sys.exit("pyxs is missing: pip install pyxs (`cargo xtask test` installs it)")
from pyxs import Client, PyXSError

sock = sys.argv[1]
with Client(unix_socket_path=sock) as c:
    c.write(b"/py/a", b"1")
    c.write(b"/py/b", b"two")
    assert c.read(b"/py/a") == b"1", c.read(b"/py/a")
    assert sorted(c.list(b"/py")) == [b"a", b"b"], c.list(b"/py")
    assert c.exists(b"/py/b") and not c.exists(b"/py/nope")
    c.mkdir(b"/py/dir")
    assert c.read(b"/py/dir") == b""
    c.set_perms(b"/py/a", [b"b0", b"r0"])
    assert c.get_perms(b"/py/a") == [b"b0", b"r0"], c.get_perms(b"/py/a")
    c.delete(b"/py/b")
    assert not c.exists(b"/py/b")
    try:
        c.read(b"/py/b")
        raise SystemExit("read of a removed node succeeded")
    except PyXSError:
        pass
    assert c.get_domain_path(0) == b"/local/domain/0"
    # a committed transaction
    c.transaction()
    c.write(b"/py/tx", b"in-tx")
    assert c.commit()
    assert c.read(b"/py/tx") == b"in-tx"
    # an aborted one leaves nothing behind
    c.transaction()
    c.write(b"/py/tx2", b"gone")
    c.rollback()
    assert not c.exists(b"/py/tx2")
    # a watch fires once at registration and once per write
    with c.monitor() as m:
        m.watch(b"/py/w", b"tok")
        ev = next(m.wait())
        assert ev == (b"/py/w", b"tok"), ev
        c.write(b"/py/w", b"x")
        ev = next(m.wait())
        assert ev == (b"/py/w", b"tok"), ev
        m.unwatch(b"/py/w", b"tok")
print("pyxs ok")
"#;

#[test]
fn pyxs_client() {
    require("python3", "python3 and the pyxs module (pip install pyxs)");
    let dir = TempDir::new("pyxs");
    let d = Daemon::start(&dir.0);
    let (good, out, err) = run(
        Command::new("python3").args(["-c", SCRIPT]).arg(&d.socket),
        Duration::from_secs(30),
    );
    assert!(
        good && out.contains("pyxs ok"),
        "pyxs script failed:\n{out}\n{err}"
    );
}
