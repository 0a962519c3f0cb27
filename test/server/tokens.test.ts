import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { connect } from 'node:net';
import { SignJWT } from 'jose';
import WebSocket from 'ws';
import { within } from '../support/deadline.js';
import { call, SseWatcher, startServer, WsWatcher } from '../support/watchers.js';

const SECRET = 'a-secret-of-at-least-thirty-two-bytes!';
const key = new TextEncoder().encode(SECRET);

/** A token as a user's issuer would sign it. */
async function token(claims: { sessions?: unknown; scope?: unknown }, { expiresIn = '1h', secret = key, alg = 'HS256' }: { expiresIn?: string | number; secret?: Uint8Array; alg?: string } = {}): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg }).setIssuedAt().setExpirationTime(expiresIn).sign(secret);
}

const bearer = (t: string): Record<string, string> => ({ authorization: `Bearer ${t}` });

/** Opens a WebSocket expecting the handshake to be refused; resolves with the HTTP status. */
function refusedUpgrade(url: string, headers: Record<string, string> = {}): Promise<number> {
  return within(new Promise((resolve, reject) => {
    const socket = new WebSocket(url, 'herald.v1', { headers });
    socket.once('unexpected-response', (_request, response) => {
      resolve(response.statusCode ?? 0);
      socket.terminate();
    });
    socket.once('open', () => reject(new Error('the handshake was accepted')));
    socket.once('error', () => {});
  }), 10_000, 'the refused handshake');
}

describe('tokens', () => {
  test('no token, a bad signature, an expired token, another algorithm or a token without sessions: 401 HERALD_UNAUTHORIZED on HTTP, SSE and the WebSocket handshake', async (t) => {
    const { base, wsUrl, store } = await startServer(t, { auth: { secret: SECRET } });
    await store.createSession('a');
    const cases: [string, Record<string, string>][] = [
      ['no token', {}],
      ['a bad signature', bearer(await token({ sessions: ['a'], scope: ['read'] }, { secret: new TextEncoder().encode('another-secret-of-thirty-two-bytes!!') }))],
      ['an expired token', bearer(await token({ sessions: ['a'], scope: ['read'] }, { expiresIn: Math.floor(Date.now() / 1000) - 120 }))],
      ['HS512', bearer(await token({ sessions: ['a'], scope: ['read'] }, { alg: 'HS512' }))],
      ['no sessions claim', bearer(await token({ scope: ['read'] }))],
      ['no scope claim', bearer(await token({ sessions: ['a'] }))],
      ['"*" inside sessions', bearer(await token({ sessions: ['*'], scope: ['read'] }))],
      ['not a JWT', { authorization: 'Bearer nonsense' }],
      ['not Bearer', { authorization: 'Basic YTpi' }],
    ];
    for (const [what, headers] of cases) {
      const response = await call(base, 'GET', '/v1/sessions/a/variables', undefined, headers);
      assert.deepEqual([response.status, response.body.error.code], [401, 'HERALD_UNAUTHORIZED'], what);
      const sse = await fetch(`${base}/v1/sessions/a/watch`, { headers });
      assert.equal(sse.status, 401, `${what}: SSE`);
      await sse.body?.cancel();
      assert.equal(await refusedUpgrade(wsUrl, headers), 401, `${what}: WebSocket`);
    }
    const expired = await call(base, 'GET', '/v1/sessions/a', undefined, cases[2]![1]);
    assert.match(expired.body.error.message, /expired/);
  });

  test('a token for session A never reads or writes B: 403 HERALD_FORBIDDEN, and an error frame for a WebSocket subscribe', async (t) => {
    const { base, wsUrl, store } = await startServer(t, { auth: { secret: SECRET } });
    await store.createSession('a');
    await store.createSession('b');
    await store.set('b', 'x', 'secret of b');
    const forA = await token({ sessions: ['a'], scope: ['read', 'write'] });
    for (const [method, path, body] of [
      ['GET', '/v1/sessions/b', undefined], ['GET', '/v1/sessions/b/variables', undefined], ['GET', '/v1/sessions/b/variables/x', undefined],
      ['PUT', '/v1/sessions/b/variables/x', { value: 1 }], ['DELETE', '/v1/sessions/b/variables/x', undefined], ['DELETE', '/v1/sessions/b', undefined],
      ['POST', '/v1/sessions/b/transaction', { ops: [{ op: 'set', name: 'x', value: 1 }] }], ['POST', '/v1/sessions', { id: 'c' }], ['POST', '/v1/sessions', {}],
    ] as const) {
      const response = await call(base, method, path, body, bearer(forA));
      assert.deepEqual([response.status, response.body.error.code], [403, 'HERALD_FORBIDDEN'], `${method} ${path}`);
    }
    assert.equal(await store.get('b', 'x'), 'secret of b', 'nothing of b changed');
    assert.equal(await store.getSession('c'), undefined);
    const sse = await fetch(`${base}/v1/sessions/b/watch`, { headers: bearer(forA) });
    assert.equal(sse.status, 403);
    await sse.body?.cancel();
    const ws = await WsWatcher.open(t, wsUrl, bearer(forA));
    const refused = await ws.subscribe({ id: 'b', session: 'b' });
    assert.deepEqual([refused.type, refused['code']], ['error', 'HERALD_FORBIDDEN']);
    assert.equal((await ws.subscribe({ id: 'a', session: 'a' })).type, 'subscribed', 'the socket goes on, and A is watched');
    assert.equal((await call(base, 'PUT', '/v1/sessions/a/variables/x', { value: 1 }, bearer(forA))).status, 200);
    await ws.next((f) => f['id'] === 'a' && f['newValue'] === 1, 'the change of A');
  });

  test('a read-only token reads and watches, and is refused every write (403); a token for an id may create that session; "*" covers all', async (t) => {
    const { base, store } = await startServer(t, { auth: { secret: SECRET } });
    await store.createSession('a');
    const readOnly = await token({ sessions: ['a'], scope: ['read'] });
    assert.equal((await call(base, 'GET', '/v1/sessions/a/variables', undefined, bearer(readOnly))).status, 200);
    const write = await call(base, 'PUT', '/v1/sessions/a/variables/x', { value: 1 }, bearer(readOnly));
    assert.deepEqual([write.status, write.body.error.code], [403, 'HERALD_FORBIDDEN']);
    assert.match(write.body.error.message, /read-only/);
    assert.equal(await store.get('a', 'x'), undefined);
    const creator = await token({ sessions: ['new'], scope: ['write'] });
    assert.equal((await call(base, 'POST', '/v1/sessions', { id: 'new' }, bearer(creator))).status, 201);
    const all = await token({ sessions: '*', scope: ['write'] });
    const made = await call(base, 'POST', '/v1/sessions', {}, bearer(all));
    assert.equal(made.status, 201, 'an id made up by the server needs "*"');
    // The token can also come as ?token=, as browsers' EventSource and WebSocket cannot send headers.
    const sse = await SseWatcher.open(t, `${base}/v1/sessions/a/watch?token=${readOnly}`);
    await store.set('a', 'y', 2);
    await sse.next((e) => e.data['newValue'] === 2, 'the change, watched with ?token=');
  });

  test('/healthz and /readyz need no token; /metrics does', async (t) => {
    const { base } = await startServer(t, { auth: { secret: SECRET } });
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
    assert.equal((await fetch(`${base}/metrics`)).status, 401);
    assert.equal((await fetch(`${base}/metrics`, { headers: bearer(await token({ sessions: [], scope: ['read'] })) })).status, 200);
  });

  test('a stream ends with token-expired when its token runs out: SSE end event, WebSocket end frames and close 4001', async (t) => {
    const { base, wsUrl, store, hub } = await startServer(t, { auth: { secret: SECRET, clockToleranceSeconds: 0 } });
    await store.createSession('a');
    const before = hub.observerCount();
    const short = await token({ sessions: ['a'], scope: ['read'] }, { expiresIn: Math.floor(Date.now() / 1000) + 2 });
    const sse = await SseWatcher.open(t, `${base}/v1/sessions/a/watch`, bearer(short));
    const ws = await WsWatcher.open(t, `${wsUrl}?token=${short}`);
    await ws.subscribe({ id: 1, session: 'a' });
    await ws.subscribe({ id: 2, session: 'a', names: ['x'] });
    const { item } = await sse.next((e) => e.type === 'end', 'the SSE end', 0, 10_000);
    assert.equal(item.data['reason'], 'token-expired');
    const closed = await within(ws.closed, 10_000, 'the WebSocket close');
    assert.equal(closed.code, 4001);
    assert.deepEqual(ws.frames.filter((f) => f.type === 'end').map((f) => [f['id'], f['reason']]), [[1, 'token-expired'], [2, 'token-expired']]);
    assert.equal(hub.observerCount(), before);
  });

  test('SSE clients that go while their token is checked leave nothing behind: no connection counted, no observer', async (t) => {
    const { base, store, hub } = await startServer(t, { auth: { secret: SECRET }, limits: { maxConnections: 5 } });
    await store.createSession('a');
    const before = hub.observerCount();
    const good = await token({ sessions: ['a'], scope: ['read'] });
    const { port } = new URL(base);
    for (let i = 0; i < 50; i++) {
      const socket = connect(Number(port), '127.0.0.1');
      await within(new Promise((resolve) => socket.once('connect', resolve)), 10_000, 'a connection');
      socket.write(`GET /v1/sessions/a/watch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${good}\r\n\r\n`);
      // Gone at once, while the server checks the token.
      socket.resetAndDestroy();
    }
    const connections = async (): Promise<string> => (await (await fetch(`${base}/metrics`, { headers: bearer(good) })).text()).match(/herald_connections\{transport="sse"\} (\d+)/)![1]!;
    const deadline = Date.now() + 10_000;
    while (await connections() !== '0' || hub.observerCount() !== before) assert.ok(Date.now() < deadline, 'nothing left of the aborted watches');
    // And the limit of 5 is all there: five watchers get in.
    for (let i = 0; i < 5; i++) await SseWatcher.open(t, `${base}/v1/sessions/a/watch`, bearer(good));
  });

  test('a secret shorter than 32 bytes is refused, and the message does not show it', async () => {
    const { createServer } = await import('../../src/server.js');
    const { ObserverManager, SessionStore } = await import('../../src/index.js');
    const hub = new ObserverManager();
    assert.throws(() => createServer({ hub, store: new SessionStore({ hub }), auth: { secret: 'short-secret' } }), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'HERALD_INVALID_OPTION');
      assert.doesNotMatch(error.message, /short-secret/);
      return true;
    });
    await hub.close();
  });
});
