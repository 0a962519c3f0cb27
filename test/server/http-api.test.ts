import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { connect } from 'node:net';
import { ObserverManager, SessionStore, type Change } from '../../src/index.js';
import { createServer } from '../../src/server.js';
import { within } from '../support/deadline.js';

/** A server on a free loopback port, with an in-memory store; `fetch` is the real client. */
async function serve(t: TestContext, limits?: { maxBodyBytes?: number; maxTransactionOps?: number }): Promise<{ base: string; hub: ObserverManager; store: SessionStore }> {
  const hub = new ObserverManager({ sweepIntervalMs: 0 });
  const store = new SessionStore({ hub, expiryCheckMs: 0 });
  const server = createServer({ hub, store, ...(limits === undefined ? {} : { limits }) });
  const { port } = await server.listen(0, '127.0.0.1');
  t.after(async () => {
    await server.close();
    await store.close();
    await hub.close();
  });
  return { base: `http://127.0.0.1:${port}/v1`, hub, store };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON of many shapes, each checked by the assertions that read it
async function call(url: string, method: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const response = await fetch(url, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, body: text === '' ? undefined : JSON.parse(text), headers: response.headers };
}

test('HTTP API - sessions: create (201 and Location), read, delete, and 404 and 409 with coded errors', async (t) => {
  const { base } = await serve(t);
  const created = await call(`${base}/sessions`, 'POST', { id: 's1', meta: { owner: 'ops' } });
  assert.equal(created.status, 201);
  assert.equal(created.headers.get('location'), '/v1/sessions/s1');
  assert.equal(created.body.id, 's1');
  assert.deepEqual(created.body.meta, { owner: 'ops' });
  assert.equal((await call(`${base}/sessions/s1`, 'GET')).body.id, 's1');
  const again = await call(`${base}/sessions`, 'POST', { id: 's1' });
  assert.deepEqual([again.status, again.body.error.code], [409, 'HERALD_SESSION_EXISTS']);
  const generated = await call(`${base}/sessions`, 'POST');
  assert.equal(generated.status, 201);
  assert.match(generated.body.id, /^[0-9a-f-]{36}$/);
  assert.deepEqual(await call(`${base}/sessions/s1`, 'DELETE').then((r) => [r.status, r.body as unknown]), [200, { deleted: true }]);
  const gone = await call(`${base}/sessions/s1`, 'GET');
  assert.deepEqual([gone.status, gone.body.error.code], [404, 'HERALD_NO_SESSION']);
  assert.equal((await call(`${base}/sessions/s1`, 'DELETE')).status, 404);
});

test('HTTP API - variables: set, read with its ETag, list, delete; an announcement reaches the hub\'s observers', async (t) => {
  const { base, hub } = await serve(t);
  await call(`${base}/sessions`, 'POST', { id: 'v' });
  const seen: Change[] = [];
  hub.observePattern('session/v/*', (change) => void seen.push(change));
  const set = await call(`${base}/sessions/v/variables/mode`, 'PUT', { value: 'eco', meta: { by: 'test' } });
  assert.deepEqual([set.status, set.body], [200, { name: 'mode', oldValue: null, newValue: 'eco', version: 1 }]);
  const read = await call(`${base}/sessions/v/variables/mode`, 'GET');
  assert.deepEqual(read.body, { name: 'mode', value: 'eco', version: 1 });
  assert.equal(read.headers.get('etag'), '"1"');
  await call(`${base}/sessions/v/variables/${encodeURIComponent('a/b c')}`, 'PUT', { value: { n: 1 } });
  const listed = (await call(`${base}/sessions/v/variables`, 'GET')).body as { name: string }[];
  assert.deepEqual(listed.sort((x, y) => (x.name < y.name ? -1 : 1)), [
    { name: 'a/b c', value: { n: 1 }, version: 1 },
    { name: 'mode', value: 'eco', version: 1 },
  ]);
  assert.deepEqual((await call(`${base}/sessions/v/variables/mode`, 'DELETE')).body, { deleted: true });
  assert.deepEqual((await call(`${base}/sessions/v/variables/mode`, 'DELETE')).body, { deleted: false });
  const missing = await call(`${base}/sessions/v/variables/mode`, 'GET');
  assert.deepEqual([missing.status, missing.body.error.code], [404, 'HERALD_NO_VARIABLE']);
  await hub.drain();
  assert.deepEqual(seen.map((c) => [c.meta['name'], c.newValue]), [['mode', 'eco'], ['a/b c', { n: 1 }], ['mode', undefined]]);
  assert.equal(seen[0]!.meta['by'], 'test');
});

test('HTTP API - If-Match is a compare-and-set: 412 when the version moved, and nothing is written; "0" means only if unset', async (t) => {
  const { base, store } = await serve(t);
  await call(`${base}/sessions`, 'POST', { id: 'c' });
  assert.equal((await call(`${base}/sessions/c/variables/n`, 'PUT', { value: 1 }, { 'if-match': '"0"' })).status, 200);
  const stale = await call(`${base}/sessions/c/variables/n`, 'PUT', { value: 2 }, { 'if-match': '"0"' });
  assert.deepEqual([stale.status, stale.body.error.code], [412, 'HERALD_VERSION_MISMATCH']);
  assert.equal(await store.get('c', 'n'), 1);
  assert.equal((await call(`${base}/sessions/c/variables/n`, 'PUT', { value: 2 }, { 'if-match': '1' })).body.version, 2);
  const bad = await call(`${base}/sessions/c/variables/n`, 'PUT', { value: 3 }, { 'if-match': 'yesterday' });
  assert.deepEqual([bad.status, bad.body.error.code], [400, 'HERALD_INVALID_ARGUMENT']);
  // Racing writers with the same expected version: exactly one wins.
  const racing = await Promise.all([5, 6, 7, 8].map((value) => call(`${base}/sessions/c/variables/n`, 'PUT', { value }, { 'if-match': '"2"' })));
  assert.deepEqual(racing.map((r) => r.status).sort(), [200, 412, 412, 412]);
});

test('HTTP API - a transaction is all or nothing, with one txId; a bad op is refused before anything is written', async (t) => {
  const { base, store, hub } = await serve(t, { maxTransactionOps: 3 });
  await call(`${base}/sessions`, 'POST', { id: 't' });
  const seen: Change[] = [];
  hub.observePattern('session/t/*', (change) => void seen.push(change));
  const done = await call(`${base}/sessions/t/transaction`, 'POST', { ops: [{ op: 'set', name: 'a', value: 1 }, { op: 'set', name: 'b', value: 2 }, { op: 'delete', name: 'zz' }] });
  assert.equal(done.status, 200);
  assert.deepEqual(done.body.results, [
    { op: 'set', name: 'a', oldValue: null, newValue: 1, version: 1 },
    { op: 'set', name: 'b', oldValue: null, newValue: 2, version: 1 },
    { op: 'delete', name: 'zz', deleted: false },
  ]);
  await hub.drain();
  assert.equal(new Set(seen.map((c) => c.meta['txId'])).size, 1, 'one txId for the whole transaction');
  assert.equal(seen[0]!.meta['txId'], done.body.txId);
  for (const ops of [[{ op: 'set', name: 'a', value: 9 }, { op: 'chmod', name: 'b' }], [{ op: 'set', name: 'a' }], 'all', [], [1, 2, 3, 4]]) {
    const refused = await call(`${base}/sessions/t/transaction`, 'POST', { ops });
    assert.ok([400, 413].includes(refused.status), JSON.stringify(ops));
  }
  const bad = await call(`${base}/sessions/t/transaction`, 'POST', { ops: [{ op: 'set', name: 'a', value: 9 }, { op: 'set', name: '', value: 1 }] });
  assert.deepEqual([bad.status, bad.body.error.code], [400, 'HERALD_INVALID_ARGUMENT']);
  assert.equal(await store.get('t', 'a'), 1, 'nothing of a failed transaction was written');
});

test('HTTP API - bad input: malformed JSON, a body that is not an object, a 2 MiB body, unknown routes and methods, __proto__ names', async (t) => {
  const { base } = await serve(t);
  await call(`${base}/sessions`, 'POST', { id: 'b' });
  const malformed = await call(`${base}/sessions/b/variables/x`, 'PUT', '{"value":');
  assert.deepEqual([malformed.status, malformed.body.error.code], [400, 'HERALD_INVALID_ARGUMENT']);
  assert.equal((await call(`${base}/sessions/b/variables/x`, 'PUT', [1, 2])).status, 400);
  assert.equal((await call(`${base}/sessions/b/variables/x`, 'PUT', {})).status, 400, 'a body without `value`');
  const huge = await call(`${base}/sessions/b/variables/x`, 'PUT', { value: 'x'.repeat(2 * 1024 * 1024) });
  assert.deepEqual([huge.status, huge.body.error.code], [413, 'HERALD_TOO_LARGE']);
  assert.equal((await call(`${base}/nothing`, 'GET')).body.error.code, 'HERALD_NOT_FOUND');
  const method = await call(`${base}/sessions/b`, 'PATCH');
  assert.deepEqual([method.status, method.body.error.code], [405, 'HERALD_METHOD_NOT_ALLOWED']);
  assert.equal((await call(`${base}/sessions/%E0%A4%A/variables`, 'GET')).status, 400, 'broken percent-encoding');
  const proto = await call(`${base}/sessions/b/variables/__proto__`, 'PUT', { value: 1 });
  assert.equal(proto.status, 200, '__proto__ is a name like any other');
  assert.deepEqual((await call(`${base}/sessions/b/variables`, 'GET')).body, [{ name: '__proto__', value: 1, version: 1 }]);
  const badValue = await call(`${base}/sessions/b/variables/y`, 'PUT', { value: '\u0000' });
  assert.equal(badValue.status, 400, 'the store\'s value rules hold over HTTP');
  assert.equal((await call(`${base}/sessions/nope/variables/y`, 'PUT', { value: 1 })).body.error.code, 'HERALD_NO_SESSION');
});

test('HTTP API - a 413 is answered in full before the connection closes, even while the client is still sending', async (t) => {
  const { base } = await serve(t, { maxBodyBytes: 1024 });
  const { port } = new URL(base);
  const socket = connect(Number(port), '127.0.0.1');
  t.after(() => socket.destroy());
  let received = '';
  socket.on('data', (chunk) => (received += chunk.toString()));
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.on('error', () => {});
  socket.write('PUT /v1/sessions/x/variables/y HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n');
  socket.write('{"value":"' + 'x'.repeat(4000));
  await within(closed, 10_000, 'the server to answer and close');
  assert.match(received, /^HTTP\/1\.1 413/);
  assert.match(received, /"code":"HERALD_TOO_LARGE"/);
});

test('/healthz, /readyz and /metrics: alive, ready while the store answers (503 once it does not), and the hub\'s stats as Prometheus text', async (t) => {
  const { base, hub, store } = await serve(t);
  const root = base.replace(/\/v1$/, '');
  assert.equal((await fetch(`${root}/healthz`)).status, 200);
  assert.equal((await fetch(`${root}/readyz`)).status, 200);
  await call(`${base}/sessions`, 'POST', { id: 'm' });
  hub.observe('any', () => {});
  await call(`${base}/sessions/m/variables/x`, 'PUT', { value: 1 });
  const metrics = await fetch(`${root}/metrics`);
  assert.match(metrics.headers.get('content-type') ?? '', /text\/plain; version=0\.0\.4/);
  const text = await metrics.text();
  assert.match(text, /^# TYPE herald_notifications_total counter$/m);
  assert.match(text, /^herald_notifications_total 1$/m);
  assert.match(text, /^herald_observers 1$/m);
  assert.doesNotMatch(text, /herald_backplane_/, 'no backplane metrics on a hub of one process');
  await store.close();
  const notReady = await fetch(`${root}/readyz`);
  assert.equal(notReady.status, 503);
  assert.match(await notReady.text(), /not ready/);
});
