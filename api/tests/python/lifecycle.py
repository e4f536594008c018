"""Drives the Windsor API with the official PyPI XenAPI package (XML-RPC).

Usage: lifecycle.py URL PASSWORD [UNIX_SOCKET]

The default SR (pool.get_default_SR, its record and PBD), a full lifecycle
(create, start, pause, unpause, suspend, resume, clean_shutdown, start
again, hard_shutdown, destroy) with event.from seeing every change, the same
power operations as Async.* calls polled through their tasks (whose events
event.from reports), then the errors: wrong session, wrong handle, wrong power
state, unknown method, wrong parameter count, bad password. Exits non-zero
with a message on the first mismatch; prints "python XenAPI: ok" at the end.
"""

import sys
import time
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

# The default SR, as XAPI has it from the first start: local storage,
# plugged into this host.
sr = x.pool.get_default_SR(pool)
check(sr != "OpaqueRef:NULL", "pool.default_SR")
srec = x.SR.get_record(sr)
check(srec["name_label"] == "Local storage" and srec["content_type"] == "user",
      "default SR record %r" % srec)
check(x.pool.get_suspend_image_SR(pool) == sr and x.pool.get_crash_dump_SR(pool) == sr,
      "suspend-image and crash-dump SRs")
check(sr in x.SR.get_all() and x.SR.get_by_uuid(srec["uuid"]) == sr, "SR lookups")
pbds = x.SR.get_PBDs(sr)
check(len(pbds) == 1 and x.PBD.get_currently_attached(pbds[0]), "the local SR is plugged")
check(x.PBD.get_host(pbds[0]) == host and x.PBD.get_SR(pbds[0]) == sr, "PBD record")
details = expect_failure("SR_HAS_PBD", x.SR.destroy, sr)
check(details[1:] == [sr], "SR_HAS_PBD params %r" % details)
nets = x.network.get_all_records()
net = [r for r, n in nets.items() if n["bridge"] == "xenbr0"]
check(len(net) == 1, "the default network")
pifs = x.network.get_PIFs(net[0])
check(len(pifs) == 1 and x.PIF.get_device(pifs[0]) == "eth0" and x.PIF.get_host(pifs[0]) == host,
      "the host's PIF on the default network")

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

# The same operations as Async calls: each returns a task at once; the
# task is polled to its end, and event.from reports it.
task_token = event_from(["task"], "", 0.0)["token"]


def run_task(task):
    check(task.startswith("OpaqueRef:"), "a task ref %r" % task)
    for _ in range(1200):
        status = x.task.get_status(task)
        if status != "pending":
            check(x.task.get_progress(task) == 1.0, "progress of a finished task")
            return status
        time.sleep(0.05)
    check(False, "task %s still pending" % task)


t_start = x.Async.VM.start(vm, False, False)
check(run_task(t_start) == "success", "Async.VM.start succeeds")
check(x.task.get_result(t_start) == "", "a void task's result is empty")
check(x.task.get_name_label(t_start) == "Async.VM.start", "task name")
check(x.VM.get_power_state(vm) == "Running", "Async.VM.start ran")
t_stop = x.Async.VM.clean_shutdown(vm)
check(run_task(t_stop) == "success", "Async.VM.clean_shutdown succeeds")
check(x.VM.get_power_state(vm) == "Halted", "Async.VM.clean_shutdown ran")
t_clone = x.Async.VM.clone(vm, "py-async-clone")
check(run_task(t_clone) == "success", "Async.VM.clone succeeds")
result = x.task.get_result(t_clone)
check(result.startswith("<value>OpaqueRef:") and result.endswith("</value>"),
      "a task's result is an XML-RPC value: %r" % result)
clone_ref = result[len("<value>"):-len("</value>")]
check(x.VM.get_name_label(clone_ref) == "py-async-clone", "the clone")
x.VM.destroy(clone_ref)
t_fail = x.Async.VM.pause(vm)
check(run_task(t_fail) == "failure", "Async.VM.pause of a halted VM fails")
check(x.task.get_error_info(t_fail) == ["VM_BAD_POWER_STATE", vm, "running", "halted"],
      "error_info %r" % x.task.get_error_info(t_fail))
trec = x.task.get_record(t_fail)
check(trec["status"] == "failure" and trec["uuid"], "task record")
check(x.task.get_by_uuid(trec["uuid"]) == t_fail, "task.get_by_uuid")
seen = {}
for _ in range(20):
    batch = event_from(["task"], task_token, 1.0)
    task_token = batch["token"]
    for e in batch["events"]:
        check(e["class"] == "task", "task events only")
        seen[e["ref"]] = e
    if all(t in seen for t in (t_start, t_stop, t_clone, t_fail)):
        break
for t in (t_start, t_stop, t_clone, t_fail):
    check(t in seen, "event.from saw task %s" % t)
check(seen[t_fail]["snapshot"]["status"] == "failure", "the task event's snapshot")
x.task.destroy(t_start)
expect_failure("HANDLE_INVALID", x.task.get_status, t_start)
gone = False
for _ in range(20):
    batch = event_from(["task"], task_token, 1.0)
    task_token = batch["token"]
    if any(e["ref"] == t_start and e["operation"] == "del" for e in batch["events"]):
        gone = True
        break
check(gone, "event.from saw the task destroyed")

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
