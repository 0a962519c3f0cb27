import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import fc from 'fast-check';
import WebSocket from 'ws';
import { ObserverManager, SessionStore, type VariableEntry } from '../../src/index.js';
import { RedisBackplane } from '../../src/redis.js';
import { engineGate, urls } from '../support/engines.js';
import { TcpProxy } from '../support/proxy.js';
import { call, grpcClient, SseWatcher, startServer, WsWatcher, type Frame, type SseEvent } from '../support/watchers.js';

/** An in-memory store whose `list` takes a turn of the event loop, as a database's would: writes land while a watch reads. */
class SlowReads extends SessionStore {
  override async list(sessionId: string): Promise<VariableEntry[]> {
    await new Promise((resolve) => setImmediate(resolve));
    return super.list(sessionId);
  }
}

/** Versions of `name` in the change events, in the order they came. */
function versionsOf(events: readonly Record<string, unknown>[], name: string): number[] {
  return events.filter((e) => e['name'] === name).map((e) => e['version'] as number);
}

/** Every name's versions run without a hole or a repeat up to `last`, and current values come before any later change. */
function assertUnbroken(events: readonly Record<string, unknown>[], last: Record<string, number>): void {
  for (const [name, version] of Object.entries(last)) {
    const versions = versionsOf(events, name);
    assert.ok(versions.length > 0, `${name}: something arrived`);
    const first = versions[0]!;
    assert.deepEqual(versions, Array.from({ length: version - first + 1 }, (_, i) => first + i), `${name}: versions ${first}..${version}, each once, in order`);
  }
  const currents = events.map((e, i) => ((e['meta'] as Record<string, unknown>)['current'] === true ? i : -1)).filter((i) => i >= 0);
  const firstLive = events.findIndex((e) => (e['meta'] as Record<string, unknown>)['current'] !== true);
  if (currents.length > 0 && firstLive !== -1) assert.ok(Math.max(...currents) < firstLive, 'every current value before any later change');
}

describe('watching: includeCurrent while writes race', () => {
  const NAMES = ['a', 'b', 'c'];

  /**
   * Sets variables (by `writes`, cyclically) without pause, letting I/O in
   * every `every` sets, until the watch is live and `extra` more after: the
   * watch starts in the middle of the writes.
   */
  async function race(t: TestContext, writes: number[], every: number, extra: number, transport: 'ws' | 'sse' | 'grpc'): Promise<void> {
    const hub = new ObserverManager();
    const store = new SlowReads({ hub });
    const { base, wsUrl, grpcPort } = await startServer(t, { hub, store });
    const session = `race-${transport}`;
    await store.createSession(session);
    for (const name of NAMES) await store.set(session, name, -1);
    let live = false;
    let received: () => Record<string, unknown>[] = () => [];
    const writer = (async () => {
      let i = 0;
      for (let after = 0; after <= extra; i++) {
        await store.set(session, NAMES[writes[i % writes.length]!]!, i);
        if (i % every === 0) await new Promise((resolve) => setImmediate(resolve));
        if (live) after++;
        if (i > 100_000) throw new Error('the watch never went live');
      }
    })();
    if (transport === 'ws') {
      const ws = await WsWatcher.open(t, wsUrl);
      assert.equal((await ws.subscribe({ id: 'w', session, names: NAMES, includeCurrent: true })).type, 'subscribed');
      received = () => ws.changes('w');
    } else if (transport === 'sse') {
      const sse = await SseWatcher.open(t, `${base}/v1/sessions/${session}/watch?names=a,b,c&includeCurrent=1`);
      received = () => sse.events.filter((e) => e.type === 'change').map((e) => e.data);
    } else {
      const watch = grpcClient(t, grpcPort).watch({ session_id: session, variable_names: NAMES, include_current: true });
      await watch.live;
      received = () => watch.events.filter((e) => e['event'] === 'change')
        .map((e) => ({ name: e['change']['name'], version: e['change']['version'], meta: JSON.parse(e['change']['meta_json']) as unknown }));
    }
    live = true;
    await writer;
    const last = Object.fromEntries((await store.list(session)).map((e) => [e.name, e.version]));
    const deadline = Date.now() + 10_000;
    while (!NAMES.every((name) => versionsOf(received(), name).at(-1) === last[name])) {
      assert.ok(Date.now() < deadline, `every last version arrives (got ${JSON.stringify(NAMES.map((n) => versionsOf(received(), n).at(-1)))}, want ${JSON.stringify(last)})`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assertUnbroken(received(), last);
  }

  for (const transport of ['ws', 'sse', 'grpc'] as const) {
    test(`${transport}: each variable's versions arrive once each, in order, from its current value on (fast-check)`, async (t) => {
      await fc.assert(fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 20 }), fc.integer({ min: 1, max: 8 }), fc.nat({ max: 30 }),
        async (writes, every, extra) => {
          await t.test(`writes ${JSON.stringify(writes)}, I/O every ${every}, ${extra} after`, (sub) => race(sub, writes, every, extra, transport));
        },
      ), { numRuns: 12 });
    });
  }
});

describe('watching: resume by cursor', () => {
  test('ws: a watcher that comes back with its last cursor gets exactly what it missed, in order, then live changes', async (t) => {
    const { store, wsUrl } = await startServer(t);
    await store.createSession('r');
    const first = await WsWatcher.open(t, wsUrl);
    await first.subscribe({ id: 1, session: 'r', names: ['x'] }); // ids may be integers
    for (let i = 1; i <= 3; i++) await store.set('r', 'x', i);
    const { item: third } = await first.next((f) => f.type === 'change' && f['newValue'] === 3, 'the third change');
    first.socket.terminate();
    await first.closed;
    for (let i = 4; i <= 8; i++) await store.set('r', 'x', i);
    await store.set('r', 'other', 'not watched');
    const second = await WsWatcher.open(t, wsUrl);
    assert.equal((await second.subscribe({ id: 1, session: 'r', names: ['x'], cursor: third['cursor'] })).type, 'subscribed');
    await store.set('r', 'x', 9);
    await second.next((f) => f['newValue'] === 9, 'the live change after the replay');
    assert.deepEqual(second.frames.filter((f) => f.type === 'change' && f['id'] === 1).map((f) => f['newValue']), [4, 5, 6, 7, 8, 9]);
    assert.equal(second.frames.filter((f) => f.type === 'gap').length, 0, 'no gap');
    // Each event's cursor resumes after it.
    const cursors = second.frames.filter((f) => f.type === 'change').map((f) => f['cursor']);
    assert.equal(new Set(cursors).size, cursors.length, 'one cursor per event');
  });

  test('sse: Last-Event-ID resumes after the last event seen, with the missed changes in order', async (t) => {
    const { store, base } = await startServer(t);
    await store.createSession('r');
    await store.set('r', 'x', 0);
    const first = await SseWatcher.open(t, `${base}/v1/sessions/r/watch?name=x`);
    await store.set('r', 'x', 1);
    await store.set('r', 'x', 2);
    const { item } = await first.next((e) => e.data['newValue'] === 2, 'the second change');
    first.source.close();
    for (let i = 3; i <= 6; i++) await store.set('r', 'x', i);
    const second = await SseWatcher.open(t, `${base}/v1/sessions/r/watch?name=x`, { 'Last-Event-ID': item.id });
    await store.set('r', 'x', 7);
    await second.next((e) => e.data['newValue'] === 7, 'the live change');
    assert.deepEqual(second.events.map((e) => [e.type, e.data['newValue']]), [['change', 3], ['change', 4], ['change', 5], ['change', 6], ['change', 7]]);
    assert.ok(second.events.every((e) => e.id === e.data['cursor']), 'the SSE id is the cursor');
  });

  test('a cursor the history no longer reaches, from another server, or malformed gets a gap with a snapshot of the watched variables, then live changes', async (t) => {
    const { store, wsUrl, base } = await startServer(t, { limits: { history: 3 } });
    const other = await startServer(t);
    await store.createSession('g');
    await other.store.createSession('g');
    await store.set('g', 'x', 'x0');
    await store.set('g', 'y', 'y0');
    const watcher = await WsWatcher.open(t, wsUrl);
    await watcher.subscribe({ id: 'old', session: 'g', names: ['x', 'y'] });
    await store.set('g', 'x', 'x1');
    const { item: seen } = await watcher.next((f) => f['newValue'] === 'x1', 'x1');
    for (let i = 2; i <= 6; i++) await store.set('g', 'x', `x${i}`);
    await store.delete('g', 'y');
    await store.set('g', 'z', 'not watched');
    await other.store.set('g', 'x', 'elsewhere');
    const elsewhere = await WsWatcher.open(t, other.wsUrl);
    await elsewhere.subscribe({ id: 'o', session: 'g', includeCurrent: true });
    const otherCursor = (await elsewhere.next((f) => f.type === 'change', 'a change from the other server')).item['cursor'];
    for (const [id, cursor] of [['passed', seen['cursor']], ['foreign', otherCursor], ['malformed', 'not a cursor']] as const) {
      const from = watcher.frames.length;
      assert.equal((await watcher.subscribe({ id, session: 'g', names: ['x', 'y'], cursor })).type, 'subscribed', id);
      const { item: gap } = await watcher.next((f) => f['id'] === id && f.type !== 'subscribed', `${id}: its first event`, from);
      assert.equal(gap.type, 'gap', id);
      // y was deleted: a name left out of the snapshot is unset.
      assert.deepEqual(gap['snapshot'], [{ name: 'x', value: 'x6', version: 7 }], id);
      assert.equal(typeof gap['cursor'], 'string');
    }
    await store.set('g', 'x', 'x7');
    for (const id of ['passed', 'foreign', 'malformed']) await watcher.next((f) => f['id'] === id && f['newValue'] === 'x7', `${id}: live after the gap`);

    const sse = await SseWatcher.open(t, `${base}/v1/sessions/g/watch?names=x`, { 'Last-Event-ID': seen['cursor'] as string });
    const { item: gap } = await sse.next(() => true, 'the SSE gap');
    assert.deepEqual([gap.type, gap.data['snapshot']], ['gap', [{ name: 'x', value: 'x7', version: 8 }]]);
  });

  test('a cursor resumes only a watch of the same session and names (in any order): another session\'s, or a wider set of names\', is a gap with a snapshot', async (t) => {
    const { store, wsUrl } = await startServer(t);
    await store.createSession('s1');
    await store.createSession('s2');
    await store.set('s1', 'b', 'b before');
    await store.set('s2', 'a', 'a of s2');
    const first = await WsWatcher.open(t, wsUrl);
    await first.subscribe({ id: 'ab', session: 's1', names: ['a', 'b'] });
    await first.subscribe({ id: 'a', session: 's1', names: ['a'] });
    await store.set('s1', 'a', 1);
    const { item: ofAb } = await first.next((f) => f['id'] === 'ab' && f['newValue'] === 1, 'a=1 on ab');
    const { item: ofA } = await first.next((f) => f['id'] === 'a' && f['newValue'] === 1, 'a=1 on a');
    await store.set('s1', 'a', 2);
    const second = await WsWatcher.open(t, wsUrl);
    const firstEvent = async (id: string, frame: Record<string, unknown>): Promise<Frame> => {
      const from = second.frames.length;
      assert.equal((await second.subscribe({ id, ...frame })).type, 'subscribed', id);
      return (await second.next((f) => f['id'] === id && f.type !== 'subscribed', `${id}: its first event`, from)).item;
    };
    const sameInAnyOrder = await firstEvent('ba', { session: 's1', names: ['b', 'a'], cursor: ofAb['cursor'] });
    assert.deepEqual([sameInAnyOrder.type, sameInAnyOrder['newValue']], ['change', 2], 'the same names in another order: replayed');
    const wider = await firstEvent('wider', { session: 's1', names: ['a', 'b'], cursor: ofA['cursor'] });
    assert.equal(wider.type, 'gap', 'names the cursor\'s watch did not have: b\'s state would be missing');
    const byName = (a: { name: string }, b: { name: string }): number => a.name.localeCompare(b.name);
    assert.deepEqual((wider['snapshot'] as { name: string }[]).sort(byName), [{ name: 'a', value: 2, version: 2 }, { name: 'b', value: 'b before', version: 1 }]);
    const otherSession = await firstEvent('other', { session: 's2', names: ['a', 'b'], cursor: ofAb['cursor'] });
    assert.deepEqual([otherSession.type, otherSession['snapshot']], ['gap', [{ name: 'a', value: 'a of s2', version: 1 }]]);
  });

  test('a gap\'s cursor resumes: what was set after the gap is replayed', async (t) => {
    const { store, wsUrl } = await startServer(t);
    await store.createSession('gc');
    await store.set('gc', 'x', 1);
    const a = await WsWatcher.open(t, wsUrl);
    await a.subscribe({ id: 'a', session: 'gc', cursor: 'x.0.0' });
    const { item: gap } = await a.next((f) => f.type === 'gap', 'the gap');
    a.socket.terminate();
    await store.set('gc', 'x', 2);
    const b = await WsWatcher.open(t, wsUrl);
    await b.subscribe({ id: 'b', session: 'gc', cursor: gap['cursor'] });
    const { item } = await b.next((f) => f['id'] === 'b' && f.type !== 'subscribed', 'the replay');
    assert.deepEqual([item.type, item['newValue']], ['change', 2]);
  });
});

describe('watching: what a watch covers and how it ends', () => {
  test('a whole-session watch gets every variable, a names watch only its names, with the change event\'s fields', async (t) => {
    const { store, wsUrl } = await startServer(t);
    await store.createSession('w');
    const ws = await WsWatcher.open(t, wsUrl);
    await ws.subscribe({ id: 'all', session: 'w' });
    await ws.subscribe({ id: 'some', session: 'w', names: ['b'] });
    await store.set('w', 'a', { n: 1 }, { by: 'test' });
    await store.set('w', 'b', null);
    await store.delete('w', 'b');
    await ws.next((f) => f['id'] === 'all' && f['name'] === 'b' && f['version'] === 2, 'the delete of b');
    await ws.next((f) => f['id'] === 'some' && f['version'] === 2, 'the delete of b, to the names watch');
    assert.deepEqual(ws.changes('all').map((f) => [f['name'], f['oldValue'], f['newValue'], f['version']]), [['a', undefined, { n: 1 }, 1], ['b', undefined, null, 1], ['b', null, undefined, 2]]);
    assert.deepEqual(ws.changes('some').map((f) => f['name']), ['b', 'b']);
    const change = ws.changes('all')[0]!;
    assert.deepEqual(Object.keys(change).sort(), ['at', 'cursor', 'id', 'key', 'meta', 'name', 'newValue', 'session', 'type', 'version']);
    assert.equal(change['session'], 'w');
    assert.equal(change['key'], 'session/w/a');
    assert.equal((change['meta'] as Record<string, unknown>)['by'], 'test');
  });

  test('deleting a session delivers its removals, then end session-ended, on both transports; the observers are gone', async (t) => {
    const { hub, store, wsUrl, base } = await startServer(t);
    const before = hub.observerCount();
    await store.createSession('d');
    await store.set('d', 'x', 1);
    await store.set('d', 'y', 2);
    const ws = await WsWatcher.open(t, wsUrl);
    await ws.subscribe({ id: 'd', session: 'd', names: ['x', 'y'] });
    const sse = await SseWatcher.open(t, `${base}/v1/sessions/d/watch`);
    assert.equal((await call(base, 'DELETE', '/v1/sessions/d')).status, 200);
    await ws.next((f) => f.type === 'end', 'the end frame');
    await sse.next((e) => e.type === 'end', 'the end event');
    const wsTail = ws.frames.filter((f) => f['id'] === 'd').slice(-3);
    assert.deepEqual(wsTail.map((f) => [f.type, f['name'] ?? f['reason']]).sort(), [['change', 'x'], ['change', 'y'], ['end', 'session-ended']].sort());
    assert.equal(wsTail.at(-1)!.type, 'end', 'end comes last');
    assert.deepEqual(sse.events.map((e: SseEvent) => [e.type, e.data['name'] ?? e.data['reason']]), [['change', 'x'], ['change', 'y'], ['end', 'session-ended']]);
    assert.equal(hub.observerCount(), before, 'no observer left');
  });

  test('unsubscribe answers end unsubscribed and removes the watch\'s observers; other subscriptions go on', async (t) => {
    const { hub, store, wsUrl } = await startServer(t);
    await store.createSession('u');
    const before = hub.observerCount();
    const ws = await WsWatcher.open(t, wsUrl);
    await ws.subscribe({ id: 'one', session: 'u', names: ['x', 'y'] });
    await ws.subscribe({ id: 'two', session: 'u', names: ['x'] });
    assert.equal(hub.observerCount(), before + 3);
    ws.send({ op: 'unsubscribe', id: 'one' });
    const { item } = await ws.next((f) => f['id'] === 'one' && f.type === 'end', 'the end frame');
    assert.equal(item['reason'], 'unsubscribed');
    assert.equal(hub.observerCount(), before + 1);
    await store.set('u', 'x', 1);
    await ws.next((f) => f['id'] === 'two' && f['newValue'] === 1, 'the other subscription\'s change');
    assert.equal(ws.changes('one').length, 0);
    ws.send({ op: 'unsubscribe', id: 'one' });
    assert.equal((await ws.next((f) => f.type === 'error', 'an error for an unknown id')).item['code'], 'HERALD_NOT_FOUND');
  });

  test('a session deleted while a watch of several names registers: the watcher gets HERALD_NO_SESSION (404 for SSE), never an end before subscribed', async (t) => {
    let between: (() => Promise<void>) | undefined;
    /** Runs `between` once, after the first name's observer is registered and before the second's. */
    class Paused extends SessionStore {
      override async watch(...args: Parameters<SessionStore['watch']>): ReturnType<SessionStore['watch']> {
        const sub = await super.watch(...args);
        const step = between;
        between = undefined;
        await step?.();
        return sub;
      }
    }
    const hub = new ObserverManager();
    const store = new Paused({ hub });
    const { base, wsUrl } = await startServer(t, { hub, store });
    const ws = await WsWatcher.open(t, wsUrl);
    for (const transport of ['ws', 'sse', 'grpc'] as const) {
      await store.createSession('gone');
      between = async () => void (await store.deleteSession('gone'));
      if (transport === 'ws') {
        const answer = await ws.subscribe({ id: 'g', session: 'gone', names: ['a', 'b'] });
        assert.deepEqual([answer.type, answer['code']], ['error', 'HERALD_NO_SESSION']);
        assert.deepEqual(ws.frames.map((f) => f.type), ['error'], 'no end frame for a watch that never started');
      } else {
        const response = await fetch(`${base}/v1/sessions/gone/watch?names=a,b`);
        assert.equal(response.status, 404);
        assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'HERALD_NO_SESSION');
      }
    }
    assert.equal(hub.observerCount(), 0);
  });

  test('a watch of a session that does not exist is refused: a coded error frame, a 404 for SSE, and nothing registered', async (t) => {
    const { hub, base, wsUrl } = await startServer(t);
    const before = hub.observerCount();
    const ws = await WsWatcher.open(t, wsUrl);
    const refused = await ws.subscribe({ id: 'n', session: 'nobody' });
    assert.deepEqual([refused.type, refused['code']], ['error', 'HERALD_NO_SESSION']);
    const response = await fetch(`${base}/v1/sessions/nobody/watch`);
    assert.equal(response.status, 404);
    assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'HERALD_NO_SESSION');
    assert.equal(hub.observerCount(), before);
  });
});

const redisSkip = await engineGate('redis');

describe('watching on a cluster', { skip: redisSkip }, () => {
  test('while the backplane is away /readyz is 503; its gap reaches each watcher as a gap event with a fresh snapshot, and cursors from before it are not replayed', { timeout: 60_000 }, async (t) => {
    const proxy = await TcpProxy.start(urls.redis);
    const prefix = `herald-test-${process.pid}-${Date.now()}:`;
    const hub = new ObserverManager({ backplane: new RedisBackplane({ url: proxy.url(urls.redis), prefix, onError: () => {}, reconnect: { maxDelayMs: 100 } }) });
    const other = new ObserverManager({ backplane: new RedisBackplane({ url: urls.redis, prefix }) });
    const store = new SessionStore({ hub });
    t.after(async () => {
      await other.close();
      await proxy.close();
    });
    const { wsUrl, base } = await startServer(t, { hub, store });
    await hub.backplane!.ready();
    const readyz = async (): Promise<number> => (await fetch(`${base}/readyz`)).status;
    assert.equal(await readyz(), 200);
    await other.backplane!.ready();
    await store.createSession('c');
    await store.set('c', 'x', 1);
    const ws = await WsWatcher.open(t, wsUrl);
    await ws.subscribe({ id: 'c', session: 'c', names: ['x'] });
    await store.set('c', 'x', 2);
    const { item: before } = await ws.next((f: Frame) => f['newValue'] === 2, 'a change before the gap');
    proxy.cut();
    const deadline = Date.now() + 15_000;
    while ((await readyz()) !== 503) assert.ok(Date.now() < deadline, '/readyz is 503 while the backplane is away');
    proxy.restore();
    await hub.backplane!.ready({ timeoutMs: 15_000 });
    assert.equal(await readyz(), 200);
    const { item: gap } = await ws.next((f) => f.type === 'gap', 'the gap event', 0, 15_000);
    assert.deepEqual(gap['snapshot'], [{ name: 'x', value: 2, version: 2 }]);
    const late = await WsWatcher.open(t, wsUrl);
    await late.subscribe({ id: 'late', session: 'c', names: ['x'], cursor: before['cursor'] });
    assert.equal((await late.next((f) => f['id'] === 'late' && f.type !== 'subscribed', 'its first event')).item.type, 'gap');
  });
});

describe('what the live page reads', () => {
  test('GET /v1/sessions lists every session (a token for "*"), and GET /v1/sessions/:id/inspect tells who watches each variable', async (t) => {
    const secret = 'a-secret-of-at-least-thirty-two-bytes!';
    const { base, store, wsUrl } = await startServer(t, { auth: { secret } });
    const { SignJWT } = await import('jose');
    const sign = (claims: object): Promise<string> => new SignJWT(claims as Record<string, unknown>).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(new TextEncoder().encode(secret));
    const all = { authorization: `Bearer ${await sign({ sessions: '*', scope: ['read'] })}` };
    const onlyA = { authorization: `Bearer ${await sign({ sessions: ['a'], scope: ['read'] })}` };
    await store.createSession('a');
    await store.createSession('b');
    await store.set('a', 'x', 1);
    await store.set('a', 'y', 2);
    const listed = await call(base, 'GET', '/v1/sessions', undefined, all);
    assert.deepEqual(listed.body.map((s: { id: string }) => s.id).sort(), ['a', 'b']);
    assert.equal((await call(base, 'GET', '/v1/sessions', undefined, onlyA)).status, 403);
    const ws = await WsWatcher.open(t, `${wsUrl}?token=${onlyA.authorization.slice(7)}`);
    await ws.subscribe({ id: 1, session: 'a', names: ['x'] });
    await ws.subscribe({ id: 2, session: 'a' });
    const inspected = await call(base, 'GET', '/v1/sessions/a/inspect', undefined, onlyA);
    assert.deepEqual(inspected.body.map((k: { name: string; observerCount: number }) => [k.name, k.observerCount]).sort(), [['x', 2], ['y', 1]]);
    assert.equal(inspected.body.find((k: { name: string }) => k.name === 'y').observers[0].pattern, 'session/a/*');
    assert.equal((await call(base, 'GET', '/v1/sessions/b/inspect', undefined, onlyA)).status, 403);
  });
});

describe('a server without tokens and other sites', () => {
  test('a browser\'s write or WebSocket from another site\'s page is refused (403); the same site\'s, and any with tokens, are let in; the page cannot be framed', async (t) => {
    const { base, store, wsUrl } = await startServer(t);
    await store.createSession('o');
    const host = new URL(base).host;
    const evil = await call(base, 'PUT', '/v1/sessions/o/variables/x', { value: 1 }, { origin: 'https://evil.example' });
    assert.deepEqual([evil.status, evil.body.error.code], [403, 'HERALD_FORBIDDEN']);
    assert.equal((await call(base, 'PUT', '/v1/sessions/o/variables/x', { value: 1 }, { origin: `http://${host}` })).status, 200);
    assert.equal((await call(base, 'GET', '/v1/sessions/o/variables', undefined, { origin: 'https://evil.example' })).status, 200, 'reads are not blocked by origin');
    const status = await new Promise<number>((resolve) => {
      const socket = new WebSocket(wsUrl, 'herald.v1', { headers: { origin: 'https://evil.example' } });
      socket.once('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
      socket.once('open', () => resolve(101));
      socket.once('error', () => {});
    });
    assert.equal(status, 403);
    const page = await fetch(`${base}/`);
    assert.match(page.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
    const withTokens = await startServer(t, { auth: { secret: 'a-secret-of-at-least-thirty-two-bytes!' } });
    const refused = await call(withTokens.base, 'PUT', '/v1/sessions/o/variables/x', { value: 1 }, { origin: 'https://evil.example' });
    assert.equal(refused.body.error.code, 'HERALD_UNAUTHORIZED', 'with tokens, the token decides, not the origin');
  });
});
