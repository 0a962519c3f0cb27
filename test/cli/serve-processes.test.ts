/**
 * `herald serve` as processes: the built binary, run as a user would, talked
 * to with clients written elsewhere (`fetch`, the `eventsource` package's
 * EventSource, the `ws` package's WebSocket, tokens signed with `jose`).
 * Every wait has a deadline; every process started is SIGKILLed when its
 * test ends; every PostgreSQL schema made is dropped.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { EventSource } from 'eventsource';
import { SignJWT } from 'jose';
import pg from 'pg';
import { WebSocket } from 'ws';
import { exitOf, within } from '../support/deadline.js';
import { freePort, herald, type Run } from '../support/herald-cli.js';
import { engineGate, urls } from '../support/engines.js';

const gates = {
  postgres: await engineGate('postgres'),
  redis: await engineGate('redis'),
  nats: await engineGate('nats'),
};

/** Polls `probe` until it returns something, within `timeoutMs`. */
function until<T>(probe: () => T | undefined | Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  return within((async () => {
    for (;;) {
      const value = await probe();
      if (value !== undefined) return value;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })(), timeoutMs, what);
}

/**
 * The URL a running `herald serve` says it listens on (as 127.0.0.1, for a
 * wildcard address); fails at once, with its stderr, if it exits first.
 */
async function listening(run: Run): Promise<string> {
  let exited: string | undefined;
  run.child.once('exit', (code, signal) => (exited = `herald exited (${code ?? signal}) before listening: ${run.stderr()}${run.stdout()}`));
  const url = await until(() => {
    if (exited !== undefined) throw new Error(exited);
    return /listening on (http:\/\/[^\s"]+)/.exec(run.stdout())?.[1];
  }, 15_000, 'herald serve to say where it listens');
  return url.replace('://0.0.0.0:', '://127.0.0.1:');
}

/** A fresh PostgreSQL schema name, dropped when the test ends. */
function schemaFor(t: TestContext): string {
  const schema = `herald_t_${randomBytes(6).toString('hex')}`;
  t.after(async () => {
    const client = new pg.Client({ connectionString: urls.postgres });
    await client.connect();
    try {
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    } finally {
      await client.end();
    }
  });
  return schema;
}

async function json(response: Response): Promise<Record<string, unknown>> {
  return (await response.json()) as Record<string, unknown>;
}

function send(url: string, method: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method, headers: { 'content-type': 'application/json', ...headers }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
}

async function createSession(base: string, id: string): Promise<void> {
  const response = await send(`${base}/v1/sessions`, 'POST', { id });
  assert.equal(response.status, 201, await response.text());
}

async function put(base: string, session: string, name: string, value: unknown): Promise<Response> {
  return send(`${base}/v1/sessions/${session}/variables/${name}`, 'PUT', { value });
}

/** Messages as they arrive, and a wait, with a deadline, for the first one that matches. */
class Inbox<T> {
  readonly seen: T[] = [];
  readonly #waiters = new Set<{ match: (message: T) => boolean; resolve: (message: T) => void }>();

  push(message: T): void {
    this.seen.push(message);
    for (const waiter of this.#waiters) {
      if (waiter.match(message)) {
        this.#waiters.delete(waiter);
        waiter.resolve(message);
      }
    }
  }

  wait(match: (message: T) => boolean, timeoutMs: number, what: string): Promise<T> {
    const found = this.seen.find(match);
    if (found !== undefined) return Promise.resolve(found);
    return within(new Promise<T>((resolve) => this.#waiters.add({ match, resolve })), timeoutMs, what);
  }
}

interface SseEvent {
  readonly type: string;
  readonly data: Record<string, unknown>;
}

/** An EventSource on a session's watch, open (and so live) once this resolves; closed when the test ends or its stream ends. */
async function sseWatcher(t: TestContext, base: string, session: string, query: string): Promise<Inbox<SseEvent>> {
  const inbox = new Inbox<SseEvent>();
  const source = new EventSource(`${base}/v1/sessions/${session}/watch?${query}`);
  t.after(() => source.close());
  for (const type of ['change', 'gap', 'end']) {
    source.addEventListener(type, (event: MessageEvent) => {
      // An ended stream is not resumed: EventSource would reconnect by itself.
      if (type === 'end') source.close();
      inbox.push({ type, data: JSON.parse(event.data as string) as Record<string, unknown> });
    });
  }
  await within(new Promise<void>((resolve, reject) => {
    source.onopen = () => resolve();
    source.onerror = (error) => reject(new Error(`EventSource failed: ${error.message ?? 'no message'} (code ${error.code ?? '?'})`));
  }), 10_000, `an SSE watch of ${session} to open`);
  return inbox;
}

interface WsWatcher {
  readonly socket: WebSocket;
  readonly inbox: Inbox<Record<string, unknown>>;
  readonly closed: Promise<{ code: number; reason: string }>;
}

/** A WebSocket subscribed to `names` of a session, live once this resolves; terminated when the test ends. */
async function wsWatcher(t: TestContext, base: string, session: string, names: string[] | undefined, token?: string): Promise<WsWatcher> {
  const inbox = new Inbox<Record<string, unknown>>();
  const socket = new WebSocket(`${base.replace(/^http/, 'ws')}/v1/ws${token === undefined ? '' : `?token=${token}`}`, 'herald.v1');
  t.after(() => socket.terminate());
  socket.on('message', (data) => inbox.push(JSON.parse((data as Buffer).toString('utf8')) as Record<string, unknown>));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => socket.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  await within(new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  }), 10_000, 'a WebSocket to open');
  assert.equal(socket.protocol, 'herald.v1');
  socket.send(JSON.stringify({ op: 'subscribe', id: 'w', session, ...(names === undefined ? {} : { names }) }));
  const first = await inbox.wait((m) => m['type'] === 'subscribed' || m['type'] === 'error', 10_000, `the WebSocket subscription to ${session}`);
  assert.equal(first['type'], 'subscribed', JSON.stringify(first));
  return { socket, inbox, closed };
}

const changeOf = (name: string, value: unknown) => (data: Record<string, unknown>): boolean => data['name'] === name && JSON.stringify(data['newValue']) === JSON.stringify(value);

// ----------------------------------------------------------------------------------------------------------------
// 1, 2. A cluster of two processes on one PostgreSQL schema, over each backplane.

const backplanes: { name: string; flags: string[]; gate: string | false }[] = [
  { name: 'Redis', flags: ['--redis', urls.redis], gate: gates.postgres || gates.redis },
  { name: 'NATS', flags: ['--nats', urls.nats], gate: gates.postgres || gates.nats },
  { name: 'PostgreSQL', flags: ['--pg-backplane'], gate: gates.postgres },
];

for (const backplane of backplanes) {
  test(`herald serve cluster over ${backplane.name} - a set through one process reaches SSE and WebSocket watchers on the other; with the first killed, the other still serves and is ready`, { skip: backplane.gate }, async (t) => {
    const schema = schemaFor(t);
    const args = ['serve', '--pg', urls.postgres, '--pg-schema', schema, ...backplane.flags, '--port', '0', '--log-level', 'info'];
    const a = herald(t, args);
    const b = herald(t, args);
    const [urlA, urlB] = await Promise.all([listening(a), listening(b)]);
    assert.notEqual(urlA, urlB);
    // Both nodes joined the backplane before anyone relies on it.
    for (const url of [urlA, urlB]) {
      await until(async () => (await fetch(`${url}/readyz`)).status === 200 || undefined, 10_000, `${url}/readyz to be 200`);
    }
    const session = `s-${randomUUID()}`;
    await createSession(urlA, session);

    const sse = await sseWatcher(t, urlB, session, 'names=mode');
    const ws = await wsWatcher(t, urlB, session, ['mode']);

    const set = await put(urlA, session, 'mode', 'eco');
    assert.equal(set.status, 200, await set.clone().text());
    assert.equal((await json(set))['version'], 1);
    const sseChange = await sse.wait((e) => e.type === 'change' && changeOf('mode', 'eco')(e.data), 10_000, 'B\'s SSE watcher to hear the set through A');
    assert.equal(sseChange.data['version'], 1);
    assert.equal(sseChange.data['session'], session);
    const wsChange = await ws.inbox.wait((m) => m['type'] === 'change' && changeOf('mode', 'eco')(m), 10_000, 'B\'s WebSocket watcher to hear the set through A');
    assert.equal(wsChange['id'], 'w');
    assert.equal(wsChange['version'], 1);

    a.child.kill('SIGKILL');
    assert.equal(await exitOf(a.child, 10_000), 'SIGKILL');

    const after = await put(urlB, session, 'mode', 'boost');
    assert.equal(after.status, 200, await after.clone().text());
    assert.equal((await json(after))['version'], 2);
    await sse.wait((e) => e.type === 'change' && changeOf('mode', 'boost')(e.data), 10_000, 'B\'s SSE watcher to hear a set through B after A died');
    await ws.inbox.wait((m) => m['type'] === 'change' && changeOf('mode', 'boost')(m), 10_000, 'B\'s WebSocket watcher to hear a set through B after A died');
    const ready = await fetch(`${urlB}/readyz`);
    assert.equal(ready.status, 200, await ready.text());
    assert.equal(sse.seen.filter((e) => e.type !== 'change').length, 0, 'no gap or end on B');
    assert.equal(b.child.exitCode, null, 'B still runs');
  });
}

// ----------------------------------------------------------------------------------------------------------------
// 3. Shutdown.

test('herald serve shutdown - SIGTERM during a stream of sets ends SSE and WebSocket watchers with server-closing (1001), exits 0 within 10 s, and every set answered 200 is in PostgreSQL', { skip: gates.postgres }, async (t) => {
  const schema = schemaFor(t);
  const run = herald(t, ['serve', '--pg', urls.postgres, '--pg-schema', schema, '--port', '0']);
  const url = await listening(run);
  const session = `s-${randomUUID()}`;
  await createSession(url, session);
  const sse = await sseWatcher(t, url, session, '');
  const ws = await wsWatcher(t, url, session, undefined);

  const total = 200;
  const answered: { name: string; status: number | string }[] = [];
  const stream = (async () => {
    for (let i = 0; i < total; i++) {
      const name = `v${i}`;
      try {
        const response = await put(url, session, name, i);
        await response.arrayBuffer();
        answered.push({ name, status: response.status });
      } catch (error) {
        answered.push({ name, status: `failed: ${(error as Error).message} ${String((error as Error).cause)}` });
      }
    }
  })();
  // SIGTERM lands in the middle of the stream.
  await until(() => answered.length >= 30 || undefined, 20_000, '30 sets to be answered');
  const stopping = Date.now();
  run.child.kill('SIGTERM');
  const exit = exitOf(run.child, 10_000);

  const sseEnd = await sse.wait((e) => e.type === 'end', 10_000, 'the SSE watcher\'s end event');
  assert.deepEqual(sseEnd.data, { reason: 'server-closing' });
  const wsEnd = await ws.inbox.wait((m) => m['type'] === 'end', 10_000, 'the WebSocket watcher\'s end frame');
  assert.deepEqual(wsEnd, { type: 'end', id: 'w', reason: 'server-closing' });
  const close = await within(ws.closed, 10_000, 'the WebSocket to close');
  assert.equal(close.code, 1001);
  assert.equal(close.reason, 'server-closing');

  assert.equal(await exit, 0, `herald serve did not exit 0 on SIGTERM: ${run.stderr()}`);
  assert.ok(Date.now() - stopping < 10_000, 'exited within 10 s of SIGTERM');
  await within(stream, 10_000, 'the stream of sets to finish');
  assert.match(run.stdout(), /herald stopped/);

  const ok = answered.filter((a) => a.status === 200).map((a) => a.name);
  t.diagnostic(JSON.stringify(answered.filter((a) => a.status !== 200).slice(0, 3)));
  t.diagnostic(`sets: ${ok.length} answered 200, ${answered.filter((a) => a.status === 503).length} answered 503, ${answered.filter((a) => typeof a.status === 'string').length} failed to connect, of ${total}`);
  assert.ok(ok.length >= 30 && ok.length < total, `SIGTERM came mid-stream: ${ok.length} of ${total} answered 200`);
  for (const a of answered) assert.ok(a.status === 200 || a.status === 503 || typeof a.status === 'string', `a set answered ${a.status}`);

  const client = new pg.Client({ connectionString: urls.postgres });
  await client.connect();
  let stored: Map<string, unknown>;
  try {
    const { rows } = await client.query<{ name: string; value: unknown }>(`SELECT name, value FROM "${schema}".variables WHERE session_id = $1`, [session]);
    stored = new Map(rows.map((row) => [row.name, row.value]));
  } finally {
    await client.end();
  }
  t.diagnostic(`failed yet stored: ${JSON.stringify(answered.filter((a) => a.status !== 200 && stored.has(a.name)).map((a) => a.name))}`);
  const missing = ok.filter((name) => !stored.has(name));
  assert.deepEqual(missing, [], 'sets answered 200 but not in PostgreSQL');
  for (const name of ok) assert.equal(stored.get(name), Number(name.slice(1)));
  // What the watchers heard before the end is what was stored, none made up.
  for (const event of sse.seen.filter((e) => e.type === 'change')) assert.ok(stored.has(event.data['name'] as string));
});

// ----------------------------------------------------------------------------------------------------------------
// 4. Configuration.

/** The first SSE event of a watch, read with fetch: its type. */
async function firstEventType(url: string): Promise<string> {
  const controller = new AbortController();
  const response = await fetch(url, { signal: controller.signal });
  assert.equal(response.status, 200);
  const reader = response.body!.getReader();
  let text = '';
  try {
    return await within((async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`the stream ended before any event: ${text}`);
        text += Buffer.from(value).toString();
        const match = /^event: (\w+)$/m.exec(text);
        if (match !== null) return match[1]!;
      }
    })(), 10_000, 'the first event of a resumed watch');
  } finally {
    controller.abort();
  }
}

/** Whether a resume from an old cursor is replayed (`change`) or a `gap`: the history setting in effect. */
async function resumeKind(t: TestContext, base: string): Promise<string> {
  const session = `s-${randomUUID()}`;
  await createSession(base, session);
  const watcher = await sseWatcher(t, base, session, 'names=a');
  assert.equal((await put(base, session, 'a', 1)).status, 200);
  const first = await watcher.wait((e) => e.type === 'change', 10_000, 'the first change');
  assert.equal((await put(base, session, 'a', 2)).status, 200);
  await watcher.wait((e) => e.type === 'change' && e.data['version'] === 2, 10_000, 'the second change');
  return firstEventType(`${base}/v1/sessions/${session}/watch?names=a&cursor=${encodeURIComponent(first.data['cursor'] as string)}`);
}

test('herald serve config - a --config file sets port and history; HERALD_PORT overrides the file, --port overrides HERALD_PORT', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'herald-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const [filePort, envPort, flagPort] = [await freePort(), await freePort(), await freePort()];
  assert.equal(new Set([filePort, envPort, flagPort]).size, 3);
  const config = join(dir, 'herald.json');
  writeFileSync(config, JSON.stringify({ port: filePort, history: 0 }));

  const stop = async (run: Run): Promise<void> => {
    run.child.kill('SIGTERM');
    assert.equal(await exitOf(run.child, 10_000), 0);
  };

  // The file alone: its port, and its history of 0 (a resume is a gap).
  const fromFile = herald(t, ['serve', '--config', config], { HERALD_PORT: '' });
  assert.equal(await listening(fromFile), `http://127.0.0.1:${filePort}`);
  assert.equal((await fetch(`http://127.0.0.1:${filePort}/healthz`)).status, 200);
  assert.equal(await resumeKind(t, `http://127.0.0.1:${filePort}`), 'gap');
  await stop(fromFile);

  // The environment over the file, for port and history alike; what the environment leaves alone stays the file's.
  const fromEnv = herald(t, ['serve', '--config', config], { HERALD_PORT: String(envPort) });
  assert.equal(await listening(fromEnv), `http://127.0.0.1:${envPort}`);
  assert.equal(await resumeKind(t, `http://127.0.0.1:${envPort}`), 'gap');
  await stop(fromEnv);
  const historyFromEnv = herald(t, ['serve', '--config', config], { HERALD_PORT: String(envPort), HERALD_HISTORY: '100' });
  assert.equal(await listening(historyFromEnv), `http://127.0.0.1:${envPort}`);
  assert.equal(await resumeKind(t, `http://127.0.0.1:${envPort}`), 'change');
  await stop(historyFromEnv);

  // A flag over the environment (and the file), the config file named by HERALD_CONFIG.
  const fromFlag = herald(t, ['serve', '--port', String(flagPort)], { HERALD_PORT: String(envPort), HERALD_CONFIG: config });
  assert.equal(await listening(fromFlag), `http://127.0.0.1:${flagPort}`);
  assert.equal((await fetch(`http://127.0.0.1:${flagPort}/healthz`)).status, 200);
  await assert.rejects(fetch(`http://127.0.0.1:${envPort}/healthz`), 'nothing on the environment\'s port');
  await assert.rejects(fetch(`http://127.0.0.1:${filePort}/healthz`), 'nothing on the file\'s port');
  await stop(fromFlag);
});

test('herald serve config - an unknown key in the config file, --pg-backplane without --pg, and --redis with --nats are each one line naming the mistake, exit code 2', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'herald-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'herald.json');
  writeFileSync(config, JSON.stringify({ port: 0, colour: 'blue' }));
  const cases: [string[], RegExp][] = [
    [['serve', '--config', config], /unknown setting "colour"/],
    [['serve', '--pg-backplane', '--port', '0'], /--pg-backplane .*--pg URL/],
    [['serve', '--redis', urls.redis, '--nats', urls.nats, '--port', '0'], /choose one backplane, not --redis and --nats/],
  ];
  for (const [args, message] of cases) {
    const run = herald(t, args, { HERALD_PORT: '', HERALD_PG: '', HERALD_CONFIG: '' });
    assert.equal(await exitOf(run.child, 10_000), 2, args.join(' '));
    const lines = run.stderr().trimEnd().split('\n');
    assert.equal(lines.length, 1, `one line: ${run.stderr()}`);
    assert.match(lines[0]!, message);
    assert.doesNotMatch(run.stdout(), /listening/);
  }
});

// ----------------------------------------------------------------------------------------------------------------
// 5. Tokens.

test('herald serve tokens - with --token-secret it listens on 0.0.0.0 without --insecure; no token is 401 HERALD_UNAUTHORIZED, a jose-signed HS256 token is let in', async (t) => {
  const secret = randomBytes(32).toString('hex');
  const run = herald(t, ['serve', '--host', '0.0.0.0', '--port', '0', '--token-secret', secret]);
  const url = await listening(run);
  assert.match(run.stdout(), /"tokens":true/);

  const session = `s-${randomUUID()}`;
  const refused = await send(`${url}/v1/sessions`, 'POST', { id: session });
  assert.equal(refused.status, 401);
  assert.equal((await json(refused) as { error: { code: string } }).error.code, 'HERALD_UNAUTHORIZED');
  const refusedGet = await fetch(`${url}/v1/sessions/${session}`);
  assert.equal(refusedGet.status, 401);
  assert.equal((await json(refusedGet) as { error: { code: string } }).error.code, 'HERALD_UNAUTHORIZED');
  const forged = await new SignJWT({ sessions: '*', scope: ['read', 'write'] })
    .setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m').sign(new TextEncoder().encode(`${secret}x`));
  const refusedForged = await send(`${url}/v1/sessions`, 'POST', { id: session }, { authorization: `Bearer ${forged}` });
  assert.equal(refusedForged.status, 401, 'a token signed with another secret');

  // Every session is `"sessions": "*"`; an array lists session ids.
  const token = await new SignJWT({ sessions: '*', scope: ['read', 'write'] })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + 300)
    .sign(new TextEncoder().encode(secret));
  const bearer = { authorization: `Bearer ${token}` };
  const created = await send(`${url}/v1/sessions`, 'POST', { id: session }, bearer);
  assert.equal(created.status, 201, await created.clone().text());
  const ws = await wsWatcher(t, url, session, ['mode'], token);
  const set = await send(`${url}/v1/sessions/${session}/variables/mode`, 'PUT', { value: 'eco' }, bearer);
  assert.equal(set.status, 200, await set.clone().text());
  await ws.inbox.wait((m) => m['type'] === 'change' && changeOf('mode', 'eco')(m), 10_000, 'the token-bearing WebSocket to hear the set');
  const got = await fetch(`${url}/v1/sessions/${session}/variables/mode`, { headers: bearer });
  assert.equal(got.status, 200);
  assert.deepEqual(await json(got), { name: 'mode', value: 'eco', version: 1 });

  // A token listing this one session, read-only: it reads it, and may not write.
  const narrow = await new SignJWT({ sessions: [session], scope: ['read'] })
    .setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m').sign(new TextEncoder().encode(secret));
  assert.equal((await fetch(`${url}/v1/sessions/${session}/variables/mode`, { headers: { authorization: `Bearer ${narrow}` } })).status, 200);
  const readOnly = await send(`${url}/v1/sessions/${session}/variables/mode`, 'PUT', { value: 'boost' }, { authorization: `Bearer ${narrow}` });
  assert.equal(readOnly.status, 403);
});
