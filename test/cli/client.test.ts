import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { SignJWT } from 'jose';
import { exitOf, within } from '../support/deadline.js';
import { herald, type Run } from '../support/herald-cli.js';
import { TcpProxy } from '../support/proxy.js';
import { startServer } from '../support/watchers.js';

const BIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/** Waits until `run` has printed `count` lines on stdout. */
async function lines(run: Run, count: number, what: string): Promise<Record<string, unknown>[]> {
  return within((async () => {
    for (;;) {
      const out = run.stdout().split('\n').filter((line) => line !== '');
      if (out.length >= count) return out.map((line) => JSON.parse(line) as Record<string, unknown>);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })(), 15_000, what);
}

/** Runs a command to its end: its exit code and output. */
async function finished(run: Run): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const code = await exitOf(run.child, 15_000);
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}

test('herald set and get: values as JSON when piped, compare-and-set with --if-version (exit 5), a missing session (exit 3), mistakes as one line (exit 2)', async (t) => {
  const { base, store } = await startServer(t);
  await store.createSession('42');
  const first = await finished(herald(t, ['set', base, '42', 'mode', '"eco"']));
  assert.equal(first.code, 0, first.stderr);
  assert.deepEqual(JSON.parse(first.stdout), { name: 'mode', oldValue: null, newValue: 'eco', version: 1 });
  assert.equal((await finished(herald(t, ['set', base, '42', 'mode', '"boost"', '--if-version', '1']))).code, 0);
  const moved = await finished(herald(t, ['set', base, '42', 'mode', '"nope"', '--if-version', '1']));
  assert.equal(moved.code, 5);
  assert.match(moved.stderr, /HERALD_VERSION_MISMATCH: variable "mode" is at version 2, not 1/);
  assert.equal(await store.get('42', 'mode'), 'boost');
  const got = await finished(herald(t, ['get', base, '42', 'mode']));
  assert.deepEqual(JSON.parse(got.stdout), { name: 'mode', value: 'boost', version: 2 });
  const all = await finished(herald(t, ['get', base, '42']));
  assert.deepEqual(JSON.parse(all.stdout), [{ name: 'mode', value: 'boost', version: 2 }]);
  const missing = await finished(herald(t, ['get', base, 'nobody']));
  assert.equal(missing.code, 3);
  assert.match(missing.stderr, /HERALD_NO_SESSION/);
  for (const [args, message] of [
    [['set', base, '42', 'mode', 'eco'], /the value must be JSON/],
    [['set', base, '42'], /give URL SESSION NAME JSON/],
    [['get', 'not a url', '42'], /is not a URL/],
    [['set', base, '42', 'mode', '1', '--if-version', 'x'], /--if-version must be a version/],
    [['stats', base, '--bogus'], /Unknown option '--bogus'/],
  ] as const) {
    const run = await finished(herald(t, [...args]));
    assert.equal(run.code, 2, args.join(' '));
    assert.match(run.stderr, message);
    assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(run.stderr.trim().split('\n').length, 1, 'one line');
  }
  const down = await finished(herald(t, ['get', 'http://127.0.0.1:1', '42']));
  assert.equal(down.code, 1);
  assert.match(down.stderr, /cannot reach http:\/\/127\.0\.0\.1:1/);
});

test('every command has --help with an example', async (t) => {
  for (const command of ['serve', 'watch', 'set', 'get', 'stats']) {
    const run = await finished(herald(t, [command, '--help']));
    assert.equal(run.code, 0, command);
    assert.match(run.stdout, new RegExp(`Usage: herald ${command}`));
    assert.match(run.stdout, /Examples?:\n {2}herald /);
  }
  const top = await finished(herald(t, ['--help']));
  assert.match(top.stdout, /watch URL SESSION/);
});

test('on a terminal, set, get and stats print readable lines, and watch a line per change', async (t) => {
  const { base, store } = await startServer(t);
  await store.createSession('42');
  await store.set('42', 'mode', 'eco');
  /** Runs the binary under `script`, which gives it a terminal. */
  const onTerminal = (args: string[]): Run => {
    const command = [process.execPath, BIN, ...args].map((a) => `'${a.replaceAll('\'', '\'\\\'\'')}'`).join(' ');
    const child = spawn('script', ['-qec', command, '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    t.after(() => void child.kill('SIGKILL'));
    return { child, stdout: () => stdout.replaceAll('\r', ''), stderr: () => '' };
  };
  const got = await finished(onTerminal(['get', base, '42']));
  assert.match(got.stdout, /^mode {2}"eco" {2}\(version 1\)$/m);
  const set = await finished(onTerminal(['set', base, '42', 'mode', '"boost"']));
  assert.match(set.stdout, /mode = "boost" \(version 2, was "eco"\)/);
  const stats = await finished(onTerminal(['stats', base]));
  assert.match(stats.stdout, /herald_notifications_total\s+2/);
  assert.match(stats.stdout, /herald_connections\s+0\s+0\s+0/);
  const watching = onTerminal(['watch', base, '42']);
  await within((async () => {
    while (!watching.stdout().includes('mode = "boost"  (v2, current)')) await new Promise((resolve) => setTimeout(resolve, 10));
  })(), 15_000, 'the current value, readable');
  await store.set('42', 'mode', 'off');
  await store.delete('42', 'mode');
  await within((async () => {
    while (!watching.stdout().includes('mode deleted  (v4)')) await new Promise((resolve) => setTimeout(resolve, 10));
  })(), 15_000, 'the delete, readable');
  assert.match(watching.stdout(), /\d\d:\d\d:\d\d\.\d{3} {2}mode = "off" {2}\(v3, was "boost"\)/);
});

test('herald watch | head -n 3: JSON lines of the current value and changes; with head gone, the next change ends it with exit code 0', async (t) => {
  const { base, store } = await startServer(t);
  await store.createSession('p');
  await store.set('p', 'a', 1);
  const pipeline = spawn('bash', ['-c', `set -o pipefail; '${process.execPath}' '${BIN}' watch ${base} p a | head -n 3`], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => void pipeline.kill('SIGKILL'));
  let out = '';
  pipeline.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  // head holds its output till it exits: the server's count tells when the watch is live.
  await within((async () => {
    while (!(await (await fetch(`${base}/metrics`)).text()).includes('herald_subscriptions{transport="ws"} 1')) await new Promise((resolve) => setTimeout(resolve, 10));
  })(), 15_000, 'the watch to be live');
  // The current value and two changes make three lines; once head has gone, the next change finds the pipe closed.
  const exited = exitOf(pipeline, 15_000);
  let done = false;
  void exited.then(() => (done = true));
  for (let i = 2; !done; i++) {
    await store.set('p', 'a', i);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.equal(await exited, 0, 'the pipeline (watch included, by pipefail) exits 0');
  const events = out.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  assert.deepEqual(events.map((e) => [e['type'], e['newValue']]), [['change', 1], ['change', 2], ['change', 3]]);
});

test('herald watch reconnects and resumes by cursor: the changes made while it was cut off come once, in order; past the history it prints a gap', async (t) => {
  const { base, store } = await startServer(t, { limits: { history: 5 } });
  const proxy = await TcpProxy.start(base);
  t.after(() => proxy.close());
  await store.createSession('r');
  await store.set('r', 'x', 0);
  const run = herald(t, ['watch', proxy.url(base), 'r', '--json']);
  await lines(run, 1, 'the current value');
  proxy.cut();
  for (let i = 1; i <= 3; i++) await store.set('r', 'x', i);
  proxy.restore();
  const resumed = await lines(run, 4, 'the changes made while cut off');
  assert.deepEqual(resumed.map((e) => [e['type'], e['newValue']]), [['change', 0], ['change', 1], ['change', 2], ['change', 3]]);
  proxy.cut();
  for (let i = 4; i <= 12; i++) await store.set('r', 'x', i);
  proxy.restore();
  const after = await lines(run, 5, 'the gap');
  assert.equal(after[4]!['type'], 'gap');
  assert.deepEqual(after[4]!['snapshot'], [{ name: 'x', value: 12, version: 13 }]);
});

test('herald watch exits 3 when its session ends and 4 when its token is refused, each with one clear line', async (t) => {
  const secret = 'a-secret-of-at-least-thirty-two-bytes!';
  const { base, store } = await startServer(t, { auth: { secret } });
  await store.createSession('e');
  const token = await new SignJWT({ sessions: ['e'], scope: ['read'] }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(new TextEncoder().encode(secret));
  const watching = herald(t, ['watch', base, 'e', '--token', token]);
  await within((async () => {
    while ((await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text()).includes('herald_subscriptions{transport="ws"} 0')) await new Promise((resolve) => setTimeout(resolve, 10));
  })(), 15_000, 'the watch to start');
  await store.deleteSession('e');
  const ended = await finished(watching);
  assert.equal(ended.code, 3);
  assert.match(ended.stderr, /session "e" ended/);
  const refused = await finished(herald(t, ['watch', base, 'e'], { HERALD_TOKEN: 'not-a-token' }));
  assert.equal(refused.code, 4);
  assert.match(refused.stderr, /HERALD_UNAUTHORIZED/);
  assert.equal(refused.stderr.trim().split('\n').length, 1);
});

test('a server that is not herald, a value JSON cannot carry, and a URL with a password each get one line and an exit code, never a stack trace', async (t) => {
  const { createServer: createHttp } = await import('node:http');
  const other = createHttp((_request, response) => response.writeHead(200, { 'content-type': 'text/html' }).end('<html>login</html>'));
  await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
  t.after(() => other.close());
  const otherUrl = `http://127.0.0.1:${(other.address() as { port: number }).port}`;
  const { base, store } = await startServer(t);
  await store.createSession('s');
  for (const [args, code, message] of [
    [['get', otherUrl, 's'], 1, /did not answer like a herald server/],
    [['stats', otherUrl], 1, /not a herald server's/],
    [['set', base, 's', 'big', '1e400'], 2, /a number JSON cannot carry/],
    [['get', 'http://user:secret@127.0.0.1:1', 's'], 2, /must not hold a user or password/],
  ] as const) {
    const run = await finished(herald(t, [...args]));
    assert.equal(run.code, code, args.join(' '));
    assert.match(run.stderr, message);
    assert.doesNotMatch(run.stderr, /\n\s+at |secret/, 'no stack trace, no password');
    assert.equal(run.stderr.trim().split('\n').length, 1);
  }
  assert.equal(await store.get('s', 'big'), undefined);
});
