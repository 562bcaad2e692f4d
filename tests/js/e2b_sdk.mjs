// The official E2B JS SDK, unchanged, against a local sbx server
// (tests/cli/test_e2b.sh starts it). Configured only through E2B_API_URL,
// E2B_SANDBOX_URL and E2B_API_KEY. Prints one "ok - ..." / "not ok - ..."
// line per check; exits non-zero if any failed.
import { Sandbox, CommandExitError, FileNotFoundError, SandboxNotFoundError } from 'e2b'

let failed = 0
function check(name, cond, detail) {
  console.log((cond ? 'ok - ' : 'not ok - ') + name)
  if (!cond) {
    failed++
    if (detail !== undefined) console.log('#   ' + String(detail).slice(0, 600).replace(/\n/g, ' | '))
  }
}
async function step(name, fn) {
  try {
    await fn()
  } catch (e) {
    check(name + ' (threw)', false, (e && e.stack) || e)
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const inList = async (id) => (await Sandbox.list().nextItems()).some((s) => s.sandboxId === id)

const created = []
let sbx

await step('create', async () => {
  const t0 = Date.now()
  sbx = await Sandbox.create({ envs: { FROM_CREATE: 'create-env' }, metadata: { suite: 'e2b-sdk', run: 'one' } })
  created.push(sbx)
  check('Sandbox.create with envs and metadata returns a DNS-safe id', /^[a-z0-9]+$/.test(sbx.sandboxId), sbx.sandboxId)
  check('create is quick (< 2 s)', Date.now() - t0 < 2000, Date.now() - t0)
})

await step('getInfo', async () => {
  const info = await sbx.getInfo()
  check('getInfo: template base, running, metadata kept',
    info.templateId === 'base' && info.state === 'running' && info.metadata.suite === 'e2b-sdk', JSON.stringify(info))
  const left = info.endAt.getTime() - Date.now()
  check('getInfo: endAt is the default 300 s ahead', left > 280000 && left <= 301000, left)
  check('isRunning', await sbx.isRunning())
})

await step('list', async () => {
  check('list shows the sandbox', await inList(sbx.sandboxId))
  const byMeta = await Sandbox.list({ query: { metadata: { suite: 'e2b-sdk' } } }).nextItems()
  check('list filters by metadata', byMeta.some((s) => s.sandboxId === sbx.sandboxId))
  const none = await Sandbox.list({ query: { metadata: { suite: 'nope' } } }).nextItems()
  check('list filter without a match is empty', none.length === 0, JSON.stringify(none))
  const paused = await Sandbox.list({ query: { state: ['paused'] } }).nextItems()
  check('list of paused sandboxes is empty', paused.length === 0)
})

await step('commands', async () => {
  const r = await sbx.commands.run('echo hi')
  check("commands.run('echo hi') stdout", r.stdout === 'hi\n' && r.exitCode === 0, JSON.stringify(r))
  const t0 = Date.now()
  await sbx.commands.run('true')
  check("commands.run('true') is fast (< 500 ms)", Date.now() - t0 < 500, Date.now() - t0)
  try {
    await sbx.commands.run('echo out; echo oops >&2; exit 3')
    check('non-zero exit throws CommandExitError', false)
  } catch (e) {
    check('non-zero exit throws CommandExitError with exit code, stdout, stderr',
      e instanceof CommandExitError && e.exitCode === 3 && e.stdout === 'out\n' && e.stderr === 'oops\n',
      `${e.name} ${e.exitCode} ${JSON.stringify(e.stdout)} ${JSON.stringify(e.stderr)}`)
  }
  const env = await sbx.commands.run('echo "$FROM_CREATE $FROM_CALL"', { envs: { FROM_CALL: 'call-env' } })
  check('create-time and per-call envs reach the process', env.stdout === 'create-env call-env\n', env.stdout)
  const over = await sbx.commands.run('echo $FROM_CREATE', { envs: { FROM_CREATE: 'overridden' } })
  check('per-call envs override create-time envs', over.stdout === 'overridden\n', over.stdout)
  const cwd = await sbx.commands.run('pwd', { cwd: '/tmp' })
  check('cwd is honoured', cwd.stdout === '/tmp\n', cwd.stdout)
  const home = await sbx.commands.run('pwd')
  check('default cwd is /home/user', home.stdout === '/home/user\n', home.stdout)
  const user = await sbx.commands.run('whoami; echo $HOME')
  check('commands run as user with HOME /home/user', user.stdout === 'user\n/home/user\n', user.stdout)
  const root = await sbx.commands.run('whoami; echo $HOME', { user: 'root' })
  check("user: 'root' runs as root with HOME /root", root.stdout === 'root\n/root\n', root.stdout)
  const shell = await sbx.commands.run('shopt -q login_shell && echo login')
  check('commands run in a login bash', shell.stdout === 'login\n', shell.stdout)

  const seen = []
  await sbx.commands.run('echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three', {
    onStdout: (d) => seen.push('out:' + d.trim()),
    onStderr: (d) => seen.push('err:' + d.trim()),
  })
  check('streaming callbacks arrive in order', seen.join(',') === 'out:one,err:two,out:three', seen.join(','))

  const t1 = Date.now()
  const quiet = await sbx.commands.run('sleep 3; echo done')
  check('a command silent for 3 s completes', quiet.stdout === 'done\n' && Date.now() - t1 >= 2900, quiet.stdout)

  try {
    await sbx.commands.run('sleep 10', { timeoutMs: 1000 })
    check('timeoutMs ends a long command', false)
  } catch (e) {
    check('timeoutMs ends a long command with a TimeoutError', e.name === 'TimeoutError', `${e.name}: ${e.message}`)
  }
  // The server kills it at the same deadline (measured from its side).
  let after = []
  for (let i = 0; i < 40; i++) {
    after = await sbx.commands.list()
    if (!after.some((p) => (p.args || []).includes('sleep 10'))) break
    await sleep(50)
  }
  check('the timed-out command was killed', !after.some((p) => (p.args || []).includes('sleep 10')), JSON.stringify(after))
})

await step('background', async () => {
  const h = await sbx.commands.run('read line; echo "got $line"; sleep 60', { background: true, stdin: true })
  check('background command returns a pid at once', typeof h.pid === 'number' && h.pid > 0, h.pid)
  const procs = await sbx.commands.list()
  check('commands.list shows it', procs.some((p) => p.pid === h.pid && p.cmd === '/bin/bash'), JSON.stringify(procs))
  await sbx.commands.sendStdin(h.pid, 'hello\n')
  for (let i = 0; i < 50 && !h.stdout.includes('got hello'); i++) await sleep(50)
  check('sendStdin reaches it', h.stdout === 'got hello\n', JSON.stringify(h.stdout))

  const seen = []
  const attached = await sbx.commands.connect(h.pid, { onStdout: (d) => seen.push(d) })
  check('commands.connect attaches', attached.pid === h.pid)
  check('kill returns true', (await h.kill()) === true)
  try {
    await h.wait()
    check('a killed command ends with an error', false)
  } catch (e) {
    check('a killed command ends with CommandExitError (signal: killed)',
      e instanceof CommandExitError && e.exitCode === -1 && /killed/.test(e.message), `${e.name} ${e.exitCode} ${e.message}`)
  }
  try {
    await attached.wait()
  } catch (e) {
    check('the attached handle sees the end too', e instanceof CommandExitError, e.name)
  }
  check('kill of an unknown pid returns false', (await sbx.commands.kill(h.pid)) === false)

  const cat = await sbx.commands.run('cat', { background: true, stdin: true })
  await sbx.commands.sendStdin(cat.pid, 'piped\n')
  await sbx.commands.closeStdin(cat.pid)
  const done = await cat.wait()
  check('closeStdin ends the input (cat exits 0)', done.exitCode === 0 && done.stdout === 'piped\n', JSON.stringify(done))
})

await step('files', async () => {
  const w = await sbx.files.write('/home/user/hello.txt', 'Hello, sbx!')
  check('files.write returns the entry', w.path === '/home/user/hello.txt' && w.name === 'hello.txt', JSON.stringify(w))
  check('files.read gives the text back', (await sbx.files.read('/home/user/hello.txt')) === 'Hello, sbx!')
  const bytes = new Uint8Array(256).map((_, i) => i)
  await sbx.files.write('bin/all.bin', bytes.buffer)
  const back = await sbx.files.read('/home/user/bin/all.bin', { format: 'bytes' })
  check('bytes round-trip (relative path, parents made)',
    back.length === 256 && back.every((b, i) => b === i), back.length)
  check('files.read of an empty file', (await (async () => { await sbx.files.write('empty', ''); return sbx.files.read('empty') })()) === '')
  const owner = await sbx.commands.run('stat -c %U:%a /home/user/hello.txt')
  check('written files belong to the user, mode 644', owner.stdout === 'user:644\n', owner.stdout)
  const many = await sbx.files.write([{ path: '/tmp/m/a.txt', data: 'A' }, { path: '/tmp/m/b.txt', data: 'B' }])
  check('files.write of several files', Array.isArray(many) && many.length === 2, JSON.stringify(many))

  check('exists: yes', await sbx.files.exists('/home/user/hello.txt'))
  check('exists: no', !(await sbx.files.exists('/home/user/nope.txt')))
  const info = await sbx.files.getInfo('/home/user/hello.txt')
  check('getInfo of a file', info.type === 'file' && info.size === 11 && info.owner === 'user' &&
    info.permissions === '-rw-r--r--' && info.modifiedTime instanceof Date, JSON.stringify(info))
  check('makeDir creates', await sbx.files.makeDir('/home/user/d1/d2'))
  check('makeDir of an existing dir returns false', !(await sbx.files.makeDir('/home/user/d1/d2')))
  const dinfo = await sbx.files.getInfo('/home/user/d1')
  check('getInfo of a directory', dinfo.type === 'dir' && dinfo.name === 'd1', JSON.stringify(dinfo))
  await sbx.files.write('/home/user/d1/d2/deep.txt', 'x')
  const ls = await sbx.files.list('/home/user')
  const names = ls.map((e) => e.name).sort()
  check('files.list', ['bin', 'd1', 'empty', 'hello.txt'].every((n) => names.includes(n)), names.join(','))
  const deep = await sbx.files.list('/home/user/d1', { depth: 2 })
  check('files.list with depth 2', deep.map((e) => e.path).sort().join(',') === '/home/user/d1/d2,/home/user/d1/d2/deep.txt',
    deep.map((e) => e.path).join(','))
  const moved = await sbx.files.rename('/home/user/hello.txt', '/home/user/d1/renamed.txt')
  check('rename returns the new entry', moved.path === '/home/user/d1/renamed.txt' && moved.type === 'file', JSON.stringify(moved))
  check('rename moved it', !(await sbx.files.exists('/home/user/hello.txt')) && (await sbx.files.read('/home/user/d1/renamed.txt')) === 'Hello, sbx!')
  await sbx.files.remove('/home/user/d1')
  check('remove deletes a directory tree', !(await sbx.files.exists('/home/user/d1')))
  try {
    await sbx.files.read('/home/user/nope.txt')
    check('reading a missing file throws', false)
  } catch (e) {
    check('reading a missing file throws FileNotFoundError', e instanceof FileNotFoundError, e.name)
  }
  try {
    await sbx.files.write('/etc/forbidden.txt', 'x')
    check('user cannot write to /etc', false)
  } catch (e) {
    check('user cannot write to /etc (as in the sandbox)', /permission|denied|403/i.test(e.message), e.message)
  }
  await sbx.files.write('/root/r.txt', 'r', { user: 'root' })
  check("files as user 'root'", (await sbx.files.read('/root/r.txt', { user: 'root' })) === 'r')

  // A large upload, streamed: octet-stream with a chunked request body.
  const size = 5 * 1024 * 1024
  const chunk = new Uint8Array(64 * 1024).map((_, i) => (i * 7) & 255)
  let sent = 0
  const stream = new ReadableStream({
    pull(ctl) {
      if (sent >= size) return ctl.close()
      ctl.enqueue(chunk)
      sent += chunk.length
    },
  })
  const t0 = Date.now()
  await sbx.files.write('/home/user/big.bin', stream)
  const big = await sbx.files.read('/home/user/big.bin', { format: 'bytes' })
  let same = big.length === size
  for (let i = 0; same && i < size; i += 4099) same = big[i] === ((i % chunk.length) * 7 & 255)
  check('5 MiB streamed (chunked) upload and read back', same, `${big.length} bytes in ${Date.now() - t0} ms`)
  const sum = await sbx.commands.run('stat -c %s /home/user/big.bin')
  check('the sandbox sees the 5 MiB file', sum.stdout === `${size}\n`, sum.stdout)
})

await step('watchDir', async () => {
  await sbx.files.makeDir('/home/user/w')
  const events = []
  const handle = await sbx.files.watchDir('/home/user/w', (ev) => events.push(`${ev.type}:${ev.name}`))
  await sbx.files.write('/home/user/w/new.txt', 'n')
  await sbx.commands.run('rm /home/user/w/new.txt')
  for (let i = 0; i < 40 && !events.includes('remove:new.txt'); i++) await sleep(50)
  await handle.stop()
  check('watchDir reports create and remove', events.includes('create:new.txt') && events.includes('remove:new.txt'),
    events.join(','))
})

await step('connect', async () => {
  const again = await Sandbox.connect(sbx.sandboxId)
  const r = await again.commands.run('echo $FROM_CREATE')
  check('Sandbox.connect gives a working sandbox', r.stdout === 'create-env\n', r.stdout)
  try {
    await Sandbox.connect('doesnotexist0000')
    check('connect to an unknown sandbox throws', false)
  } catch (e) {
    check('connect to an unknown sandbox throws SandboxNotFoundError', e instanceof SandboxNotFoundError, e.name)
  }
})

await step('timeout', async () => {
  const short = await Sandbox.create()
  created.push(short)
  await short.setTimeout(2000)
  const info = await short.getInfo()
  check('setTimeout moves endAt', info.endAt.getTime() - Date.now() < 2500, info.endAt)
  check('still there before the timeout', await inList(short.sandboxId))
  await sleep(3000)
  check('gone from list after its timeout', !(await inList(short.sandboxId)))
  try {
    await short.commands.run('true')
    check('commands on a timed-out sandbox fail', false)
  } catch (e) {
    check('commands on a timed-out sandbox fail', true)
  }
  check('kill of a timed-out sandbox returns false', (await short.kill()) === false)
  try {
    await short.setTimeout(1000)
    check('setTimeout of a gone sandbox throws', false)
  } catch (e) {
    check('setTimeout of a gone sandbox throws SandboxNotFoundError', e instanceof SandboxNotFoundError, e.name)
  }
})

await step('kill', async () => {
  check('kill returns true', (await sbx.kill()) === true)
  check('list no longer shows a killed sandbox', !(await inList(sbx.sandboxId)))
  check('isRunning is false after kill', !(await sbx.isRunning()))
  try {
    await sbx.getInfo()
    check('getInfo of a killed sandbox throws', false)
  } catch (e) {
    check('getInfo of a killed sandbox throws SandboxNotFoundError', e instanceof SandboxNotFoundError, e.name)
  }
})

for (const s of created) await s.kill().catch(() => {})
process.exitCode = failed ? 1 : 0
