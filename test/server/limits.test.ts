import assert from 'node:assert/strict';
import { get, type IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import parsePrometheus from 'parse-prometheus-text-format';
import WebSocket from 'ws';
import { within } from '../support/deadline.js';
import { call, SseWatcher, startServer, WsWatcher } from '../support/watchers.js';

const gc = (globalThis as { gc?: () => void }).gc;

/** The TCP socket under a `ws` client. */
const socketOf = (watcher: WsWatcher): Socket => (watcher.socket as unknown as { _socket: Socket })._socket;

/** Polls `condition` until it holds, for at most `timeoutMs`. */
async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  await within((async () => {
    while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
  })(), timeoutMs, what);
}

describe('limits of a WebSocket', () => {
  test('bad frames (too large, not JSON, not an object, binary, an unknown op, a bad member) each get a coded error; the socket and its other subscriptions go on', async (t) => {
    const { store, wsUrl } = await startServer(t);
    await store.createSession('s');
    const ws = await WsWatcher.open(t, wsUrl);
    await ws.subscribe({ id: 'keep', session: 's' });
    const bad: [string, string | Buffer, string][] = [
      ['a 100 KiB frame', JSON.stringify({ op: 'subscribe', id: 'big', session: 's', names: ['x'.repeat(100 * 1024)] }), 'HERALD_TOO_LARGE'],
      ['malformed JSON', '{"op": "subscribe",', 'HERALD_INVALID_ARGUMENT'],
      ['an array', '[1, 2]', 'HERALD_INVALID_ARGUMENT'],
      ['a number', '42', 'HERALD_INVALID_ARGUMENT'],
      ['null', 'null', 'HERALD_INVALID_ARGUMENT'],
      ['binary', Buffer.from('{"op":"subscribe"}'), 'HERALD_INVALID_ARGUMENT'],
      ['an unknown op', '{"op":"publish","id":"p"}', 'HERALD_INVALID_ARGUMENT'],
      ['no op', '{"id":"p"}', 'HERALD_INVALID_ARGUMENT'],
      ['an op under __proto__', '{"__proto__":{"op":"subscribe","id":"q","session":"s"}}', 'HERALD_INVALID_ARGUMENT'],
      ['no id', '{"op":"subscribe","session":"s"}', 'HERALD_INVALID_ARGUMENT'],
      ['an id in use', '{"op":"subscribe","id":"keep","session":"s"}', 'HERALD_INVALID_ARGUMENT'],
      ['names not an array', '{"op":"subscribe","id":"n","session":"s","names":"x"}', 'HERALD_INVALID_ARGUMENT'],
      ['an empty session', '{"op":"subscribe","id":"e","session":""}', 'HERALD_INVALID_ARGUMENT'],
      ['includeCurrent not a boolean', '{"op":"subscribe","id":"i","session":"s","includeCurrent":"yes"}', 'HERALD_INVALID_ARGUMENT'],
      ['a name the store refuses', '{"op":"subscribe","id":"l","session":"s","names":["bad\\u0000name"]}', 'HERALD_INVALID_ARGUMENT'],
    ];
    for (const [what, frame, code] of bad) {
      const from = ws.frames.length;
      ws.socket.send(frame);
      const { item } = await ws.next((f) => f.type === 'error', what, from);
      assert.equal(item['code'], code, what);
      assert.equal(typeof item['message'], 'string');
    }
    assert.equal(ws.socket.readyState, WebSocket.OPEN);
    assert.equal(Object.prototype.hasOwnProperty.call(Object.prototype, 'op'), false, 'nothing polluted');
    await store.set('s', 'x', 'still here');
    await ws.next((f) => f['id'] === 'keep' && f['newValue'] === 'still here', 'the other subscription\'s change');
  });

  test('a frame past 16 times the frame limit closes that socket with 1009; the server and other sockets go on', async (t) => {
    const { store, wsUrl } = await startServer(t, { limits: { maxFrameBytes: 1024 } });
    await store.createSession('s');
    const other = await WsWatcher.open(t, wsUrl);
    await other.subscribe({ id: 'o', session: 's' });
    const ws = await WsWatcher.open(t, wsUrl);
    ws.send('x'.repeat(17 * 1024));
    assert.equal((await within(ws.closed, 10_000, 'the close')).code, 1009);
    await store.set('s', 'x', 1);
    await other.next((f) => f['newValue'] === 1, 'the other socket\'s change');
  });

  test('the 129th subscription of a socket gets HERALD_LIMIT; the 128 others receive', async (t) => {
    const { store, wsUrl } = await startServer(t);
    await store.createSession('s');
    const ws = await WsWatcher.open(t, wsUrl);
    for (let i = 0; i < 128; i++) ws.send({ op: 'subscribe', id: i, session: 's', names: ['x'] });
    await until(() => ws.frames.filter((f) => f.type === 'subscribed').length === 128, '128 subscriptions');
    const refused = await ws.subscribe({ id: 128, session: 's' });
    assert.deepEqual([refused.type, refused['code']], ['error', 'HERALD_LIMIT']);
    await store.set('s', 'x', 1);
    await until(() => ws.frames.filter((f) => f.type === 'change').length === 128, 'a change to each of the 128');
  });

  test('subscribes past the rate get HERALD_LIMIT', async (t) => {
    const { store, wsUrl } = await startServer(t, { limits: { subscribesPerSecond: 1, maxSubscriptions: 3 } });
    await store.createSession('s');
    const ws = await WsWatcher.open(t, wsUrl);
    for (let i = 0; i < 3; i++) {
      assert.equal((await ws.subscribe({ id: i, session: 's' })).type, 'subscribed');
      ws.send({ op: 'unsubscribe', id: i });
      await ws.next((f) => f.type === 'end' && f['id'] === i, `end ${i}`);
    }
    const refused = await ws.subscribe({ id: 'more', session: 's' });
    assert.deepEqual([refused.type, refused['code']], ['error', 'HERALD_LIMIT']);
    assert.match(refused['message'] as string, /1 times a second/);
  });

  test('past maxConnections, a WebSocket handshake and an SSE watch get 429 HERALD_LIMIT', async (t) => {
    const { store, wsUrl, base } = await startServer(t, { limits: { maxConnections: 2 } });
    await store.createSession('s');
    await WsWatcher.open(t, wsUrl);
    await SseWatcher.open(t, `${base}/v1/sessions/s/watch`);
    const sse = await call(base, 'GET', '/v1/sessions/s/watch');
    assert.deepEqual([sse.status, sse.body.error.code], [429, 'HERALD_LIMIT']);
    const status = await within(new Promise<number>((resolve) => {
      const socket = new WebSocket(wsUrl, 'herald.v1');
      socket.once('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
      socket.once('error', () => {});
    }), 10_000, 'the refused handshake');
    assert.equal(status, 429);
    assert.equal((await call(base, 'GET', '/v1/sessions/s')).status, 200, 'the API still answers');
  });

  test('__proto__ is a session and a variable name like any other: stored, read, watched, and nothing polluted', async (t) => {
    const { base, wsUrl } = await startServer(t);
    assert.equal((await call(base, 'POST', '/v1/sessions', { id: '__proto__' })).status, 201);
    const ws = await WsWatcher.open(t, wsUrl);
    await ws.subscribe({ id: '__proto__', session: '__proto__', names: ['__proto__', 'constructor'] });
    const set = await call(base, 'PUT', '/v1/sessions/__proto__/variables/__proto__', { value: { polluted: true } });
    assert.equal(set.status, 200);
    assert.deepEqual((await call(base, 'GET', '/v1/sessions/__proto__/variables/__proto__')).body, { name: '__proto__', value: { polluted: true }, version: 1 });
    const { item } = await ws.next((f) => f.type === 'change', 'the change of __proto__');
    assert.deepEqual([item['id'], item['session'], item['name'], item['newValue']], ['__proto__', '__proto__', '__proto__', { polluted: true }]);
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  });
});

describe('slow and vanished watchers', () => {
  test('a WebSocket that stops reading while 100 000 changes are made ends with slow-consumer (4008); the server\'s memory stays bounded; another watcher gets every change', { timeout: 120_000 }, async (t) => {
    // The slow client reads again only at the end: its close frame must wait for it that long.
    const { store, wsUrl, base } = await startServer(t, { closeGraceMs: 120_000 });
    await store.createSession('s');
    const slow = await WsWatcher.open(t, wsUrl);
    await slow.subscribe({ id: 'slow', session: 's', names: ['x'] });
    // The fast watcher keeps a count and the last frame only: this process's heap is the server's, not the clients'.
    const fast = new WebSocket(wsUrl, 'herald.v1');
    t.after(() => fast.terminate());
    let fastCount = 0;
    let fastLast: Record<string, unknown> = {};
    let fastEnded = false;
    fast.on('message', (data) => {
      fastLast = JSON.parse((data as Buffer).toString('utf8')) as Record<string, unknown>;
      if (fastLast['type'] === 'change') fastCount++;
      if (fastLast['type'] === 'end') fastEnded = true;
    });
    await within(new Promise((resolve) => fast.once('open', resolve)), 10_000, 'the fast socket');
    fast.send(JSON.stringify({ op: 'subscribe', id: 'fast', session: 's', names: ['x'] }));
    await until(() => fastLast['type'] === 'subscribed', 'the fast subscription');
    socketOf(slow).pause();
    gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    let heapPeak = heapBefore;
    const value = 'v'.repeat(100);
    for (let i = 1; i <= 100_000; i++) {
      await store.set('s', 'x', `${value}${i}`);
      if (i % 100 === 0) {
        // Let sockets drain, as a server does between requests.
        await new Promise((resolve) => setImmediate(resolve));
        if (i % 10_000 === 0) {
          gc?.();
          heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed);
        }
      }
    }
    await until(() => fastCount >= 100_000, 'the fast watcher\'s 100 000 changes', 60_000);
    gc?.();
    const heapAfter = process.memoryUsage().heapUsed;
    const grown = (Math.max(heapPeak, heapAfter) - heapBefore) / 1024 / 1024;
    t.diagnostic(`heap before ${(heapBefore / 1048576).toFixed(1)} MiB, peak growth ${grown.toFixed(1)} MiB over 100 000 changes of ~110 bytes (history 10 000)`);
    // 100 000 changes of ~250 encoded bytes are 25 MB: kept unbounded, the slow socket alone would hold that.
    assert.ok(grown < 24, `heap grew ${grown.toFixed(1)} MiB (after: ${((heapAfter - heapBefore) / 1048576).toFixed(1)} MiB)`);
    socketOf(slow).resume();
    const closed = await within(slow.closed, 30_000, 'the slow socket\'s close');
    assert.equal(closed.code, 4008);
    assert.equal(slow.frames.at(-1)?.type, 'end');
    assert.equal(slow.frames.at(-1)?.['reason'], 'slow-consumer');
    const slowChanges = slow.changes('slow').length;
    assert.ok(slowChanges < 100_000, `the slow watcher got ${slowChanges} changes, then its end`);
    assert.equal(fastLast['newValue'], `${value}100000`, 'the fast watcher has the last change');
    assert.equal(fastEnded, false, 'and was never ended');
    const metrics = parsePrometheus(await (await fetch(`${base}/metrics`)).text());
    const dropped = metrics.find((m) => m.name === 'herald_events_dropped_total')!.metrics.find((m) => m.labels?.['transport'] === 'ws')!;
    assert.ok(Number(dropped.value) >= 1, 'the dropped event is counted');
  });

  test('a WebSocket that sends bad frames and never reads is a slow consumer too: its error frames count against maxBufferedBytes, and it is closed', { timeout: 60_000 }, async (t) => {
    const { base, wsUrl } = await startServer(t, { limits: { maxBufferedBytes: 64 * 1024 }, timers: { pingIntervalMs: 60_000 }, closeGraceMs: 100 });
    const ws = await WsWatcher.open(t, wsUrl);
    socketOf(ws).pause();
    for (let i = 0; i < 100_000; i++) ws.socket.send('{');
    const count = async (): Promise<string> => (await (await fetch(`${base}/metrics`)).text()).match(/herald_connections\{transport="ws"\} (\d+)/)![1]!;
    const deadline = Date.now() + 30_000;
    // The socket is cut off once its grace (one ping interval) ends; till then it holds at most the bound.
    while (await count() !== '0') {
      assert.ok(Date.now() < deadline, 'the flooding socket is closed');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  });

  test('a client that vanishes (socket destroyed) or goes silent (never answers a ping) has its subscriptions removed, the silent one at the second ping tick at the latest', async (t) => {
    const pingIntervalMs = 250;
    const { hub, store, wsUrl } = await startServer(t, { timers: { pingIntervalMs } });
    await store.createSession('s');
    const before = hub.observerCount();
    const gone = await WsWatcher.open(t, wsUrl);
    await gone.subscribe({ id: 1, session: 's', names: ['a', 'b'] });
    assert.equal(hub.observerCount(), before + 2);
    socketOf(gone).destroy();
    await until(() => hub.observerCount() === before, 'the destroyed socket\'s observers removed');

    // A client that reads but never answers a ping, as a raw socket: the server must give up on it at its second ping tick.
    const { port } = new URL(wsUrl);
    const raw = connect(Number(port), '127.0.0.1');
    t.after(() => raw.destroy());
    await within(new Promise((resolve) => raw.once('connect', resolve)), 10_000, 'a raw connection');
    raw.write('GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n'
      + `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Protocol: herald.v1\r\n\r\n`);
    let received = Buffer.alloc(0);
    raw.on('data', (chunk: Buffer) => (received = Buffer.concat([received, chunk])));
    const ended = new Promise((resolve) => raw.once('close', resolve));
    await until(() => received.includes('\r\n\r\n'), 'the handshake');
    assert.match(received.toString('latin1'), /^HTTP\/1\.1 101/);
    const payload = Buffer.from(JSON.stringify({ op: 'subscribe', id: 2, session: 's' }));
    const mask = randomBytes(4);
    raw.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, payload.map((byte, i) => byte ^ mask[i % 4]!)]));
    await until(() => hub.observerCount() === before + 1, 'the raw socket\'s subscription');
    await within(ended, 10_000, 'the server closing the silent socket');
    // Server frames are not masked: an empty ping is 0x89 0x00.
    const pings = received.toString('latin1').split('\x89\x00').length - 1;
    t.diagnostic(`the silent socket got ${pings} ping(s) before the server closed it (ping interval ${pingIntervalMs} ms)`);
    assert.ok(pings >= 1 && pings <= 2, `closed after ${pings} pings`);
    await until(() => hub.observerCount() === before, 'the silent socket\'s observer removed');
  });
});

describe('SSE streams', () => {
  test('an SSE watcher that stops reading ends with slow-consumer once its response holds more than maxBufferedBytes; other watchers go on', { timeout: 60_000 }, async (t) => {
    const { store, base } = await startServer(t, { limits: { maxBufferedBytes: 64 * 1024 } });
    await store.createSession('s');
    const fast = await SseWatcher.open(t, `${base}/v1/sessions/s/watch`);
    const response = await within(new Promise<IncomingMessage>((resolve) => get(`${base}/v1/sessions/s/watch`, resolve)), 10_000, 'the slow stream');
    t.after(() => response.destroy());
    response.pause();
    const value = 'v'.repeat(200);
    for (let i = 1; i <= 20_000; i++) {
      await store.set('s', 'x', `${value}${i}`);
      if (i % 100 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    await fast.next((e) => e.data['newValue'] === `${value}20000`, 'the fast watcher\'s last change', 0, 30_000);
    assert.equal(fast.events.filter((e) => e.type === 'end').length, 0);
    let text = '';
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => (text += chunk));
    response.resume();
    await within(new Promise((resolve) => response.once('end', resolve)), 30_000, 'the slow stream\'s end');
    assert.match(text, /event: end\ndata: \{"reason":"slow-consumer"\}\n\n$/);
    const received = text.split('event: change').length - 1;
    assert.ok(received < 20_000, `the slow watcher got ${received} changes, then its end`);
  });

  test('a quiet SSE stream gets a comment line every heartbeatMs', async (t) => {
    const { store, base } = await startServer(t, { timers: { heartbeatMs: 50 } });
    await store.createSession('s');
    const response = await fetch(`${base}/v1/sessions/s/watch`);
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    t.after(() => reader.cancel());
    let text = '';
    await within((async () => {
      while (!text.includes(': heartbeat\n\n')) text += (await reader.read()).value ?? '';
    })(), 10_000, 'a heartbeat');
    assert.match(text, /^: live\n\n/);
  });
});

describe('metrics per transport', () => {
  test('/metrics parses as Prometheus text and counts connections, subscriptions and events sent per transport', async (t) => {
    const { store, wsUrl, base } = await startServer(t);
    await store.createSession('s');
    const ws = await WsWatcher.open(t, wsUrl);
    await ws.subscribe({ id: 1, session: 's' });
    await ws.subscribe({ id: 2, session: 's' });
    const sse = await SseWatcher.open(t, `${base}/v1/sessions/s/watch`);
    await store.set('s', 'x', 1);
    await ws.next((f) => f['id'] === 2 && f.type === 'change', 'ws change');
    await sse.next((e) => e.type === 'change', 'sse change');
    const read = async (): Promise<Record<string, Record<string, number>>> => {
      const families = parsePrometheus(await (await fetch(`${base}/metrics`)).text());
      const out: Record<string, Record<string, number>> = {};
      for (const family of families) {
        for (const metric of family.metrics) {
          const transport = metric.labels?.['transport'];
          if (transport !== undefined) (out[family.name] ??= {})[transport] = Number(metric.value);
        }
      }
      assert.ok(families.some((f) => f.name === 'herald_notifications_total' && f.type === 'COUNTER'));
      return out;
    };
    const m = await read();
    assert.deepEqual(m['herald_connections'], { sse: 1, ws: 1, grpc: 0 });
    assert.deepEqual(m['herald_subscriptions'], { sse: 1, ws: 2, grpc: 0 });
    assert.deepEqual(m['herald_events_sent_total'], { sse: 1, ws: 2, grpc: 0 });
    assert.deepEqual(m['herald_events_dropped_total'], { sse: 0, ws: 0, grpc: 0 });
    ws.socket.close();
    sse.source.close();
    await within(ws.closed, 10_000, 'the close');
    let after = await read();
    const deadline = Date.now() + 10_000;
    while (after['herald_connections']!['ws'] !== 0) {
      assert.ok(Date.now() < deadline, 'the closed socket leaves the count');
      await new Promise((resolve) => setTimeout(resolve, 10));
      after = await read();
    }
    assert.equal(after['herald_subscriptions']!['ws'], 0);
  });
});
