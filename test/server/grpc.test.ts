import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { SignJWT } from 'jose';
import { within } from '../support/deadline.js';
import { grpcClient, startServer } from '../support/watchers.js';

/** The status a call was refused with, and its `herald-code` trailer. */
async function refusal(promise: Promise<unknown>): Promise<[grpc.status, string | undefined]> {
  try {
    await promise;
  } catch (error) {
    const e = error as grpc.ServiceError;
    return [e.code, e.metadata?.get('herald-code')[0] as string | undefined];
  }
  assert.fail('the call was not refused');
}

describe('gRPC: the store', () => {
  test('every unary RPC: sessions, variables with compare-and-set, transactions, each error as its status with herald-code', async (t) => {
    const { grpcPort, store } = await startServer(t);
    const herald = grpcClient(t, grpcPort);
    const session = await herald.call('CreateSession', { id: 's', ttl_ms: 60_000, meta_json: '{"owner":"py"}' });
    assert.equal(session['id'], 's');
    assert.equal(typeof session['expires_at'], 'number');
    assert.equal(session['meta_json'], '{"owner":"py"}');
    assert.deepEqual(await refusal(herald.call('CreateSession', { id: 's' })), [grpc.status.ALREADY_EXISTS, 'HERALD_SESSION_EXISTS']);
    assert.equal((await herald.call('GetSession', { session_id: 's' }))['id'], 's');
    const first = await herald.call('Set', { session_id: 's', name: 'mode', value_json: '"eco"' });
    assert.deepEqual([first['old_value_json'], first['new_value_json'], first['version']], [undefined, '"eco"', 1]);
    assert.deepEqual(await refusal(herald.call('Set', { session_id: 's', name: 'mode', value_json: '"boost"', expected_version: 0 })), [grpc.status.FAILED_PRECONDITION, 'HERALD_VERSION_MISMATCH']);
    const second = await herald.call('Set', { session_id: 's', name: 'mode', value_json: '"boost"', expected_version: 1, meta_json: '{"by":"grpc"}' });
    assert.deepEqual([second['old_value_json'], second['version']], ['"eco"', 2]);
    const variable = await herald.call('Get', { session_id: 's', name: 'mode' });
    assert.deepEqual([variable['name'], variable['value_json'], variable['version']], ['mode', '"boost"', 2]);
    assert.deepEqual(await refusal(herald.call('Get', { session_id: 's', name: 'nothing' })), [grpc.status.NOT_FOUND, 'HERALD_NO_VARIABLE']);
    const tx = await herald.call('Transaction', { session_id: 's', ops: [{ set: { name: 'a', value_json: '[1,2]' } }, { delete: { name: 'mode' } }] });
    assert.match(tx['tx_id'], /\S/);
    assert.deepEqual((await herald.call('List', { session_id: 's' }))['variables'].map((v: { name: string; value_json: string }) => [v.name, v.value_json]), [['a', '[1,2]']]);
    assert.deepEqual(await refusal(herald.call('Transaction', { session_id: 's', ops: [{ set: { name: 'b', value_json: '1' } }, { set: { name: 'c', value_json: 'not json' } }] })), [grpc.status.INVALID_ARGUMENT, 'HERALD_INVALID_ARGUMENT']);
    assert.equal(await store.get('s', 'b'), undefined, 'a refused transaction wrote nothing');
    assert.equal((await herald.call('Delete', { session_id: 's', name: 'a' }))['deleted'], true);
    assert.equal((await herald.call('Delete', { session_id: 's', name: 'a' }))['deleted'], false);
    assert.equal((await herald.call('DeleteSession', { session_id: 's' }))['deleted'], true);
    assert.deepEqual(await refusal(herald.call('GetSession', { session_id: 's' })), [grpc.status.NOT_FOUND, 'HERALD_NO_SESSION']);
  });

  test('a Transaction op that asks for what a transaction does not do (compare-and-set, meta) or names another session is refused, and nothing is written', async (t) => {
    const { grpcPort, store } = await startServer(t);
    await store.createSession('s');
    await store.createSession('other');
    const herald = grpcClient(t, grpcPort);
    for (const op of [
      { set: { name: 'a', value_json: '1', expected_version: 7 } },
      { set: { name: 'a', value_json: '1', meta_json: '{}' } },
      { set: { session_id: 'other', name: 'a', value_json: '1' } },
      { delete: { session_id: 'other', name: 'a' } },
      {},
    ]) {
      assert.deepEqual(await refusal(herald.call('Transaction', { session_id: 's', ops: [{ set: { name: 'b', value_json: '2' } }, op] })), [grpc.status.INVALID_ARGUMENT, 'HERALD_INVALID_ARGUMENT'], JSON.stringify(op));
    }
    assert.deepEqual(await store.list('s'), []);
    assert.deepEqual(await store.list('other'), []);
  });

  test('bad requests get their status: a missing session, bad JSON, a value over the size limit, an unknown session, a passed deadline', async (t) => {
    const { grpcPort, store } = await startServer(t);
    await store.createSession('s');
    const herald = grpcClient(t, grpcPort);
    assert.deepEqual(await refusal(herald.call('Get', { name: 'x' })), [grpc.status.INVALID_ARGUMENT, 'HERALD_INVALID_ARGUMENT']);
    assert.deepEqual(await refusal(herald.call('Set', { session_id: 's', name: 'x', value_json: '{' })), [grpc.status.INVALID_ARGUMENT, 'HERALD_INVALID_ARGUMENT']);
    assert.deepEqual(await refusal(herald.call('Set', { session_id: 's', name: 'x', value_json: '1', meta_json: '[]' })), [grpc.status.INVALID_ARGUMENT, 'HERALD_INVALID_ARGUMENT']);
    assert.deepEqual(await refusal(herald.call('Set', { session_id: 'nobody', name: 'x', value_json: '1' })), [grpc.status.NOT_FOUND, 'HERALD_NO_SESSION']);
    // grpc-js refuses a message over the server's limit (the HTTP body limit, 1 MiB) before herald sees it.
    const [code] = await refusal(herald.call('Set', { session_id: 's', name: 'x', value_json: JSON.stringify('x'.repeat(2 * 1024 * 1024)) }));
    assert.equal(code, grpc.status.RESOURCE_EXHAUSTED);
    const [late] = await refusal(herald.call('List', { session_id: 's' }, { deadline: Date.now() - 1 }));
    assert.equal(late, grpc.status.DEADLINE_EXCEEDED);
    assert.equal(await store.get('s', 'x'), undefined);
  });

  test('tokens in the authorization metadata: none is UNAUTHENTICATED, another session\'s or a read-only one writing is PERMISSION_DENIED', async (t) => {
    const secret = 'a-secret-of-at-least-thirty-two-bytes!';
    const { grpcPort, store } = await startServer(t, { auth: { secret } });
    await store.createSession('a');
    await store.createSession('b');
    const sign = (claims: object): Promise<string> => new SignJWT(claims as Record<string, unknown>).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(new TextEncoder().encode(secret));
    assert.deepEqual(await refusal(grpcClient(t, grpcPort).call('List', { session_id: 'a' })), [grpc.status.UNAUTHENTICATED, 'HERALD_UNAUTHORIZED']);
    const readA = grpcClient(t, grpcPort, await sign({ sessions: ['a'], scope: ['read'] }));
    assert.deepEqual((await readA.call('List', { session_id: 'a' }))['variables'], []);
    assert.deepEqual(await refusal(readA.call('List', { session_id: 'b' })), [grpc.status.PERMISSION_DENIED, 'HERALD_FORBIDDEN']);
    assert.deepEqual(await refusal(readA.call('Set', { session_id: 'a', name: 'x', value_json: '1' })), [grpc.status.PERMISSION_DENIED, 'HERALD_FORBIDDEN']);
    const watch = readA.watch({ session_id: 'b' });
    assert.equal((await within(watch.status, 10_000, 'the refused watch')).code, grpc.status.PERMISSION_DENIED);
  });
});

describe('gRPC: Watch', () => {
  test('live once its metadata is out; current values first; changes with cursors; resume by cursor replays what was missed; a foreign cursor is a gap with a snapshot', async (t) => {
    const { grpcPort, store } = await startServer(t);
    await store.createSession('w');
    await store.set('w', 'a', 1);
    const herald = grpcClient(t, grpcPort);
    const first = herald.watch({ session_id: 'w', variable_names: ['a'], include_current: true });
    await first.live;
    await store.set('w', 'a', 2);
    const { item: two } = await first.next((e) => e['change']?.['new_value_json'] === '2', 'a=2');
    assert.deepEqual(first.events.map((e): unknown[] => [e['event'], e['change']['new_value_json'], JSON.parse(e['change']['meta_json'])['current']]), [['change', '1', true], ['change', '2', undefined]]);
    first.call.cancel();
    await store.set('w', 'a', 3);
    await store.set('w', 'a', 4);
    const second = herald.watch({ session_id: 'w', variable_names: ['a'], cursor: two['cursor'] });
    await second.next((e) => e['change']?.['new_value_json'] === '4', 'the replay');
    assert.deepEqual(second.events.map((e): unknown => e['change']['new_value_json']), ['3', '4']);
    const foreign = herald.watch({ session_id: 'w', variable_names: ['a'], cursor: 'x.y.0.1' });
    const { item: gap } = await foreign.next(() => true, 'the gap');
    assert.equal(gap['event'], 'gap');
    assert.deepEqual(gap['gap']['snapshot'].map((v: { name: string; value_json: string; version: number }) => [v.name, v.value_json, v.version]), [['a', '4', 4]]);
  });

  test('endings: session-ended (after the removals) ends the stream OK; server-closing is UNAVAILABLE with herald-code HERALD_CLOSING', async (t) => {
    const { grpcPort, store, server } = await startServer(t);
    await store.createSession('e');
    await store.set('e', 'x', 1);
    await store.createSession('f');
    const herald = grpcClient(t, grpcPort);
    const ending = herald.watch({ session_id: 'e' });
    const closing = herald.watch({ session_id: 'f' });
    await ending.live;
    await closing.live;
    await store.deleteSession('e');
    const status = await within(ending.status, 10_000, 'the stream\'s status');
    assert.equal(status.code, grpc.status.OK);
    assert.deepEqual(ending.events.map((e): unknown => e['event']), ['change', 'end']);
    assert.equal(ending.events[1]!['end']['reason'], 'session-ended');
    await server.close();
    const closed = await within(closing.status, 10_000, 'the closing stream\'s status');
    assert.equal(closed.code, grpc.status.UNAVAILABLE);
    assert.equal(closed.metadata.get('herald-code')[0], 'HERALD_CLOSING');
    assert.equal(closing.events.at(-1)?.['end']?.['reason'], 'server-closing');
  });

  test('a token that runs out ends the stream with token-expired', async (t) => {
    const secret = 'a-secret-of-at-least-thirty-two-bytes!';
    const { grpcPort, store } = await startServer(t, { auth: { secret, clockToleranceSeconds: 0 } });
    await store.createSession('a');
    const token = await new SignJWT({ sessions: ['a'], scope: ['read'] }).setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime(Math.floor(Date.now() / 1000) + 2).sign(new TextEncoder().encode(secret));
    const watch = grpcClient(t, grpcPort, token).watch({ session_id: 'a' });
    await watch.live;
    await within(watch.status, 10_000, 'the end of the stream');
    assert.equal(watch.events.at(-1)?.['end']?.['reason'], 'token-expired');
  });

  test('streams that end leave the connection count: with maxConnections 3, three watches ended by their session leave room for more', async (t) => {
    const { grpcPort, store, base } = await startServer(t, { limits: { maxConnections: 3 } });
    const herald = grpcClient(t, grpcPort);
    for (let i = 0; i < 3; i++) {
      await store.createSession(`s${i}`);
      const watch = herald.watch({ session_id: `s${i}` });
      await watch.live;
      await store.deleteSession(`s${i}`);
      assert.equal((await within(watch.status, 10_000, 'the end')).code, grpc.status.OK);
    }
    await store.createSession('more');
    const deadline = Date.now() + 10_000;
    while (!(await (await fetch(`${base}/metrics`)).text()).includes('herald_connections{transport="grpc"} 0')) {
      assert.ok(Date.now() < deadline, 'the ended streams leave the count');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await herald.watch({ session_id: 'more' }).live;
  });

  test('a client that cancels its stream has its observer removed', async (t) => {
    const { grpcPort, store, hub } = await startServer(t);
    await store.createSession('c');
    const before = hub.observerCount();
    const watch = grpcClient(t, grpcPort).watch({ session_id: 'c', variable_names: ['a', 'b'] });
    await watch.live;
    assert.equal(hub.observerCount(), before + 2);
    watch.call.cancel();
    const deadline = Date.now() + 10_000;
    while (hub.observerCount() !== before) {
      assert.ok(Date.now() < deadline, 'the observers are removed');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  });

  test('a stream that is not read while 20 000 changes are made ends with slow-consumer; another stream gets every change', { timeout: 60_000 }, async (t) => {
    const { grpcPort, store } = await startServer(t, { closeGraceMs: 60_000 });
    await store.createSession('s');
    // Two connections: streams of one HTTP/2 connection share its flow-control window, so a stalled one would stall the other client-side.
    const slow = grpcClient(t, grpcPort, undefined, { 'grpc.use_local_subchannel_pool': 1 }).watch({ session_id: 's' });
    const fast = grpcClient(t, grpcPort, undefined, { 'grpc.use_local_subchannel_pool': 1 }).watch({ session_id: 's' });
    await slow.live;
    await fast.live;
    slow.call.pause();
    const value = 'v'.repeat(200);
    // A turn of the event loop per change, as between requests: grpc-js hands a stream about one message per turn.
    for (let i = 1; i <= 20_000; i++) {
      await store.set('s', 'x', `${value}${i}`);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await fast.next((e) => e['change']?.['new_value_json'] === JSON.stringify(`${value}20000`), 'the fast stream\'s last change', 0, 30_000);
    slow.call.resume();
    await within(slow.status, 30_000, 'the slow stream\'s end');
    assert.equal(slow.events.at(-1)?.['end']?.['reason'], 'slow-consumer');
    assert.ok(slow.events.length < 20_000, `the slow stream got ${slow.events.length} events`);
    assert.equal(fast.events.filter((e) => e['event'] === 'end').length, 0);
  });

  test('a stream that never reads its End is cut off after closeGraceMs', { timeout: 60_000 }, async (t) => {
    const { grpcPort, store, base } = await startServer(t, { limits: { maxBufferedBytes: 64 * 1024 }, closeGraceMs: 200 });
    await store.createSession('s');
    const slow = grpcClient(t, grpcPort, undefined, { 'grpc.use_local_subchannel_pool': 1 }).watch({ session_id: 's' });
    await slow.live;
    slow.call.pause();
    const count = async (): Promise<string> => (await (await fetch(`${base}/metrics`)).text()).match(/herald_connections\{transport="grpc"\} (\d+)/)![1]!;
    const value = 'v'.repeat(1000);
    for (let i = 1; (await count()) !== '0'; i++) {
      assert.ok(i < 20_000, 'the stream that does not read is cut off');
      await store.set('s', 'x', `${value}${i}`);
      await new Promise((resolve) => setImmediate(resolve));
    }
  });
});
