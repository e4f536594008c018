"""Drives the Windsor API with the official PyPI XenAPI package (XML-RPC).

Usage: lifecycle.py URL PASSWORD [UNIX_SOCKET]

A full lifecycle (create, start, pause, unpause, suspend, resume,
clean_shutdown, start again, hard_shutdown, destroy) with event.from seeing
every change, then the errors: wrong session, wrong handle, wrong power
state, unknown method, wrong parameter count, bad password. Exits non-zero
with a message on the first mismatch; prints "python XenAPI: ok" at the end.
"""

import sys
import xmlrpc.client

import XenAPI

url, password = sys.argv[1], sys.argv[2]
socket_path = sys.argv[3] if len(sys.argv) > 3 else None


def check(cond, what):
    if not cond:
        print("FAILED: " + what, file=sys.stderr)
        sys.exit(1)


def expect_failure(code, fn, *args):
    try:
        fn(*args)
    except XenAPI.Failure as f:
        check(f.details[0] == code, "expected %s, got %r" % (code, f.details))
        return f.details
    check(False, "expected %s, call succeeded" % code)


session = XenAPI.Session(url)
session.xenapi.login_with_password("root", password, "2.21", "windsor-tests")
x = session.xenapi
event_from = getattr(x.event, "from")

# Host and pool answer like XAPI 2.21.
pool = x.pool.get_all()[0]
host = x.pool.get_master(pool)
check(x.host.get_API_version_major(host) == "2", "API_version_major")
check(x.host.get_API_version_minor(host) == "21", "API_version_minor")
check(session.API_version == "2.21", "Session.API_version")
hrec = x.host.get_record(host)
check(hrec["uuid"] and hrec["API_version_minor"] == "21", "host record")
check(isinstance(x.SR.get_all_records(), dict), "SR records")
check(isinstance(x.network.get_all(), list), "network refs")

# The starting token: event.from with "" returns every object.
first = event_from(["vm"], "", 0.0)
token = first["token"]
check(any(e["operation"] == "add" for e in first["events"]), "initial adds")


def wait_for(vm, op, power_state=None):
    """Reads events until one for vm with op (and power_state) shows up."""
    global token
    for _ in range(20):
        batch = event_from(["vm"], token, 5.0)
        token = batch["token"]
        for e in batch["events"]:
            if e["ref"] != vm or e["class"] != "vm" or e["operation"] != op:
                continue
            if power_state is None or e["snapshot"]["power_state"] == power_state:
                return e
    check(False, "no %s event for %s (%s)" % (op, vm, power_state))


vm = x.VM.create({
    "name_label": "py-lifecycle",
    "PV_kernel": "fuzz-target",
    "domain_type": "pvh",
    "memory_static_max": str(32 << 20),
    "memory_dynamic_max": str(32 << 20),
    "memory_dynamic_min": str(32 << 20),
    "memory_static_min": str(16 << 20),
    "VCPUs_max": "1",
    "VCPUs_at_startup": "1",
})
wait_for(vm, "add", "Halted")
rec = x.VM.get_record(vm)
check(rec["name_label"] == "py-lifecycle", "name_label")
check(rec["memory_static_max"] == str(32 << 20), "memory is an int string")
check(x.VM.get_by_uuid(rec["uuid"]) == vm, "get_by_uuid")
check(vm in x.VM.get_by_name_label("py-lifecycle"), "get_by_name_label")
check(vm in x.VM.get_all(), "get_all")
check(vm in x.VM.get_all_records(), "get_all_records")
x.VM.set_name_label(vm, "py-renamed")
check(x.VM.get_name_label(vm) == "py-renamed", "set_name_label")
wait_for(vm, "mod")

steps = [
    (lambda: x.VM.start(vm, False, False), "Running"),
    (lambda: x.VM.pause(vm), "Paused"),
    (lambda: x.VM.unpause(vm), "Running"),
    (lambda: x.VM.suspend(vm), "Suspended"),
    (lambda: x.VM.resume(vm, False, False), "Running"),
    (lambda: x.VM.clean_shutdown(vm), "Halted"),
    (lambda: x.VM.start(vm, False, False), "Running"),
    (lambda: x.VM.hard_shutdown(vm), "Halted"),
]
for step, state in steps:
    step()
    check(x.VM.get_power_state(vm) == state, "power state %s" % state)
    wait_for(vm, "mod", state)

# Wrong power state: pausing a halted VM.
details = expect_failure("VM_BAD_POWER_STATE", x.VM.pause, vm)
check(details[1:] == [vm, "running", "halted"], "VM_BAD_POWER_STATE params %r" % details)

x.VM.destroy(vm)
wait_for(vm, "del")

# Wrong handle.
details = expect_failure("HANDLE_INVALID", x.VM.get_record, vm)
check(details[1:] == ["VM", vm], "HANDLE_INVALID params %r" % details)
expect_failure("UUID_INVALID", x.VM.get_by_uuid, "00000000-0000-0000-0000-000000000000")
# Unknown method, wrong parameter count.
expect_failure("MESSAGE_METHOD_UNKNOWN", x.VM.fly)
details = expect_failure("MESSAGE_PARAMETER_COUNT_MISMATCH", x.VM.start, vm)
check(details[1:] == ["VM.start", "4", "2"], "count mismatch params %r" % details)

# The template: clone + provision gives a startable VM.
template = x.VM.get_by_name_label("Windsor fuzz-target")[0]
check(x.VM.get_is_a_template(template), "template flag")
expect_failure("VM_IS_TEMPLATE", x.VM.start, template, False, False)
clone = x.VM.clone(template, "py-from-template")
x.VM.provision(clone)
x.VM.start(clone, False, False)
x.VM.hard_shutdown(clone)
x.VM.destroy(clone)

# Wrong session: XenAPI.Session would log in again on SESSION_INVALID, so
# ask through the plain XML-RPC proxy and read the raw envelope.
raw = xmlrpc.client.ServerProxy(url, allow_none=True)
answer = raw.VM.get_all("OpaqueRef:bogus")
check(answer == {"Status": "Failure", "ErrorDescription": ["SESSION_INVALID", "OpaqueRef:bogus"]},
      "SESSION_INVALID envelope %r" % answer)
answer = raw.session.login_with_password("root", "wrong", "2.21", "t")
check(answer["Status"] == "Failure"
      and answer["ErrorDescription"][0] == "SESSION_AUTHENTICATION_FAILED", "bad password")

handle = session.handle
session.xenapi.session.logout()
answer = raw.VM.get_all(handle)
check(answer["Status"] == "Failure", "logged-out session")

# The Unix socket, with XenAPI's own Unix transport.
if socket_path:
    local = XenAPI.Session("http://" + socket_path.replace("/", "_"),
                           transport=XenAPI.UDSTransport())
    local.xenapi.login_with_password("root", password, "2.21", "windsor-tests")
    check(len(local.xenapi.VM.get_all()) >= 1, "VMs over the Unix socket")
    local.xenapi.session.logout()

print("python XenAPI: ok")
