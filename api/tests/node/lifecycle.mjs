// Drives the Windsor API with the npm xen-api client over JSON-RPC.
//
// Usage: node lifecycle.mjs URL PASSWORD [TRANSPORT]
//
// TRANSPORT is the client's `json-rpc` (default) or `xml-rpc` (which posts
// to `/xmlrpc`; XenAPI ints then arrive as strings).
//
// The same flow as the Python test: the default SR, a full lifecycle with
// event.from seeing every change, Async calls polled through their tasks,
// then wrong session, wrong handle and wrong power state.
// Exits non-zero with a message on the first mismatch.
import { createClient } from 'xen-api'

const [url, password, transport = 'json-rpc'] = process.argv.slice(2)
// An int as it arrives on this transport.
const int = n => (transport === 'xml-rpc' ? String(n) : n)

function check(cond, what) {
  if (!cond) {
    console.error('FAILED: ' + what)
    process.exit(1)
  }
}

async function expectFailure(code, promise) {
  try {
    await promise
  } catch (error) {
    check(error.code === code, `expected ${code}, got ${error.code} ${JSON.stringify(error.params)} ${error.message}`)
    return error.params
  }
  check(false, `expected ${code}, call succeeded`)
}

const xapi = createClient({
  url,
  auth: { user: 'root', password },
  transport,
  watchEvents: false,
  allowUnauthorized: true,
})
await xapi.connect()
check(xapi.status === 'connected', 'connected')

const pools = await xapi.call('pool.get_all_records')
const poolRef = Object.keys(pools)[0]
const host = await xapi.call('pool.get_master', poolRef)
check((await xapi.call('host.get_API_version_major', host)) === int(2), 'API_version_major')
check((await xapi.call('host.get_API_version_minor', host)) === int(21), 'API_version_minor')

// The default SR: local storage, plugged into this host.
const sr = await xapi.call('pool.get_default_SR', poolRef)
check(sr !== 'OpaqueRef:NULL', 'pool.default_SR')
const srRec = await xapi.call('SR.get_record', sr)
check(srRec.name_label === 'Local storage' && srRec.content_type === 'user', `SR record ${JSON.stringify(srRec)}`)
check((await xapi.call('SR.get_by_uuid', srRec.uuid)) === sr, 'SR.get_by_uuid')
const [pbd] = await xapi.call('SR.get_PBDs', sr)
check((await xapi.call('PBD.get_host', pbd)) === host, 'PBD.get_host')
check((await xapi.call('PBD.get_currently_attached', pbd)) === true, 'the local SR is plugged')

let token = (await xapi.call('event.from', ['vm'], '', 0.1)).token
const inject = await xapi.call('event.inject', 'pool', poolRef)
check(typeof inject === 'string', 'event.inject gives a token')

async function waitFor(vm, op, powerState) {
  for (let i = 0; i < 20; i++) {
    const batch = await xapi.call('event.from', ['vm'], token, 5.1)
    token = batch.token
    for (const e of batch.events) {
      if (e.ref === vm && e.class === 'vm' && e.operation === op &&
          (powerState === undefined || e.snapshot.power_state === powerState)) {
        return e
      }
    }
  }
  check(false, `no ${op} event for ${vm} (${powerState})`)
}

const vm = await xapi.call('VM.create', {
  name_label: 'node-lifecycle',
  PV_kernel: 'fuzz-target',
  domain_type: 'pvh',
  memory_static_max: 32 << 20,
  memory_dynamic_max: 32 << 20,
  memory_dynamic_min: 32 << 20,
  VCPUs_max: 1,
  VCPUs_at_startup: 1,
})
await waitFor(vm, 'add', 'Halted')
const rec = await xapi.call('VM.get_record', vm)
check(rec.name_label === 'node-lifecycle', 'name_label')
check(rec.memory_static_max === int(32 << 20), 'memory_static_max')
check((await xapi.call('VM.get_by_uuid', rec.uuid)) === vm, 'get_by_uuid')

const steps = [
  ['VM.start', [vm, false, false], 'Running'],
  ['VM.pause', [vm], 'Paused'],
  ['VM.unpause', [vm], 'Running'],
  ['VM.suspend', [vm], 'Suspended'],
  ['VM.resume', [vm, false, false], 'Running'],
  ['VM.clean_shutdown', [vm], 'Halted'],
  ['VM.start', [vm, false, false], 'Running'],
  ['VM.hard_shutdown', [vm], 'Halted'],
]
for (const [method, args, state] of steps) {
  await xapi.call(method, ...args)
  check((await xapi.call('VM.get_power_state', vm)) === state, `${method} -> ${state}`)
  await waitFor(vm, 'mod', state)
}

const params = await expectFailure('VM_BAD_POWER_STATE', xapi.call('VM.unpause', vm))
check(JSON.stringify(params) === JSON.stringify([vm, 'paused', 'halted']), `VM_BAD_POWER_STATE params ${params}`)

// Async calls: a task each, polled to its end.
async function runTask(task) {
  check(typeof task === 'string' && task.startsWith('OpaqueRef:'), `a task ref ${task}`)
  for (let i = 0; i < 1200; i++) {
    const status = await xapi.call('task.get_status', task)
    if (status !== 'pending') return status
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  check(false, `task ${task} still pending`)
}
const started = await xapi.call('Async.VM.start', vm, false, false)
check((await runTask(started)) === 'success', 'Async.VM.start succeeds')
check((await xapi.call('task.get_result', started)) === '', 'a void task has an empty result')
check((await xapi.call('VM.get_power_state', vm)) === 'Running', 'Async.VM.start ran')
const failed = await xapi.call('Async.VM.unpause', vm)
check((await runTask(failed)) === 'failure', 'Async.VM.unpause of a running VM fails')
const info = await xapi.call('task.get_error_info', failed)
check(JSON.stringify(info) === JSON.stringify(['VM_BAD_POWER_STATE', vm, 'paused', 'running']), `error_info ${info}`)
const stopped = await xapi.call('Async.VM.hard_shutdown', vm)
check((await runTask(stopped)) === 'success', 'Async.VM.hard_shutdown succeeds')
check((await xapi.call('VM.get_power_state', vm)) === 'Halted', 'Async.VM.hard_shutdown ran')
await xapi.call('task.destroy', started)
await expectFailure('HANDLE_INVALID', xapi.call('task.get_status', started))

await xapi.call('VM.destroy', vm)
await waitFor(vm, 'del')

const handle = await expectFailure('HANDLE_INVALID', xapi.call('VM.get_record', vm))
check(handle[0] === 'VM' && handle[1] === vm, 'HANDLE_INVALID params')
await expectFailure('MESSAGE_METHOD_UNKNOWN', xapi.call('VM.fly', vm))

// Wrong session, through the raw JSON-RPC endpoint (the client would log in
// again on SESSION_INVALID).
const raw = await fetch(new URL('/jsonrpc', url), {
  method: 'POST',
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({ jsonrpc: '2.0', method: 'VM.get_all', params: ['OpaqueRef:bogus'], id: 1 }),
})
check(raw.headers.get('content-type') === 'application/json', 'JSON content type')
const answer = await raw.json()
check(answer.error && answer.error.message === 'SESSION_INVALID' && answer.error.data[0] === 'OpaqueRef:bogus',
  `SESSION_INVALID ${JSON.stringify(answer)}`)

// JSON-RPC 1.0 shape.
const v1 = await (await fetch(new URL('/jsonrpc', url), {
  method: 'POST',
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({ method: 'VM.get_all', params: ['OpaqueRef:bogus'], id: 2 }),
})).json()
check(v1.result === null && v1.error[0] === 'SESSION_INVALID' && v1.id === 2, `1.0 error ${JSON.stringify(v1)}`)

// The client's default mode: it watches every class with event.inject,
// <class>.get_all_records and an event.from loop, and keeps objects live.
const watcher = createClient({
  url,
  auth: { user: 'root', password },
  transport,
  allowUnauthorized: true,
})
watcher.on('eventFetchingError', e => check(false, `event loop: ${e.code} ${e.message}`))
await watcher.connect()
const watched = await xapi.call('VM.create', { name_label: 'node-watched', PV_kernel: 'fuzz-target' })
await xapi.call('VM.start', watched, false, false)
let seen
for (let i = 0; i < 100; i++) {
  seen = watcher.objects.all[watched] ?? Object.values(watcher.objects.all).find(o => o.$ref === watched)
  if (seen?.power_state === 'Running') break
  await new Promise(resolve => setTimeout(resolve, 100))
}
check(seen?.power_state === 'Running', `watcher saw the VM start (${seen?.power_state})`)
await xapi.call('VM.hard_shutdown', watched)
await xapi.call('VM.destroy', watched)
await watcher.disconnect()

await xapi.disconnect()
console.log('npm xen-api: ok')
process.exit(0)
