import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { CaseRun, nodeTestRunner, registerSkipped, within, type SuiteRunner } from './runner.js';

/** Options of {@link backplaneSuite}. */
export interface BackplaneSuiteOptions {
  /** Shown in the suite's title. */
  readonly name: string;
  /** A module that calls `serveClusterNode`; run as each node's process. */
  readonly node: string | URL;
  /** Node's flags for the node processes. @default ['--import', 'tsx'] */
  readonly execArgv?: readonly string[];
  /** Environment of the node processes, on top of this process's. Each suite run adds `HERALD_TEST_NAMESPACE`, unique to it. */
  readonly env?: Readonly<Record<string, string>>;
  /** The engine's limit the nodes run with (`maxMessageBytes`): a change past it must fail `notify`. */
  readonly maxMessageBytes: number;
  /** Publishes raw bytes where a change of `key` would travel, as a stranger on the engine would. */
  readonly publishRaw: (namespace: string, key: string, data: Buffer) => Promise<void>;
  /** Skips the whole suite, with the reason; `false` or omitted runs it. */
  readonly skipAll?: string | false;
  /**
   * The test runner to register the tests with; give it `after` (vitest's
   * `afterAll`), which ends the node processes however the tests went.
   * @default node:test
   */
  readonly runner?: SuiteRunner;
  /** How long one test may take before it fails; every wait inside a test has its own, shorter deadline too. @default 60000 */
  readonly timeoutMs?: number;
}

/** How long a node may take to answer a request, or to receive what a test waits for. */
const WAIT_MS = 15_000;

interface Received {
  readonly event: 'change' | 'gap';
  readonly sub: string;
  readonly key?: string;
  readonly newValue?: unknown;
  readonly seq?: number;
  readonly meta?: Record<string, unknown>;
  readonly reason?: string;
}

/** One node process of the suite, driven over its IPC channel. */
class Node {
  readonly received: Received[] = [];
  readonly #child: ChildProcess;
  readonly #calls = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  readonly #waiters = new Set<() => void>();
  readonly exited: Promise<number | null>;
  #next = 0;

  constructor(module: string | URL, execArgv: readonly string[], env: Record<string, string | undefined>) {
    this.#child = fork(module, [], { execArgv: [...execArgv], env, serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.exited = new Promise((resolve) => this.#child.once('exit', (code) => resolve(code)));
    this.#child.on('message', (message: { id?: number; ok?: boolean; value?: unknown; error?: { code?: string; message: string } } & Received) => {
      if (message.id === undefined) {
        this.received.push(message);
        for (const wake of [...this.#waiters]) wake();
        return;
      }
      const call = this.#calls.get(message.id);
      if (call === undefined) return; // answered after its deadline
      this.#calls.delete(message.id);
      if (message.ok === true) call.resolve(message.value);
      else call.reject(Object.assign(new Error(message.error!.message), { code: message.error!.code }));
    });
    void this.exited.then(() => {
      for (const call of this.#calls.values()) call.reject(new Error('the node process exited'));
    });
  }

  /** Sends a request and resolves with the node's answer; rejects when it does not come within `WAIT_MS`. */
  call<T = unknown>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    const id = ++this.#next;
    const answered = new Promise<T>((resolve, reject) => {
      this.#calls.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.#child.send({ id, op, ...args });
    });
    return within(answered, WAIT_MS, `node ${this.#child.pid} to answer "${op}"`).finally(() => this.#calls.delete(id));
  }

  /**
   * Resolves once `predicate` holds for what this node received; woken by
   * each arrival, and rejects, saying `what` it waited for, after `WAIT_MS`.
   */
  until(predicate: (received: readonly Received[]) => boolean, what = 'a change'): Promise<void> {
    if (predicate(this.received)) return Promise.resolve();
    let wake!: () => void;
    const reached = new Promise<void>((resolve) => {
      wake = (): void => {
        if (predicate(this.received)) resolve();
      };
      this.#waiters.add(wake);
    });
    return within(reached, WAIT_MS, `node ${this.#child.pid} to receive ${what}`).finally(() => this.#waiters.delete(wake));
  }

  changesOf(sub: string): Received[] {
    return this.received.filter((r) => r.event === 'change' && r.sub === sub);
  }

  kill(): void {
    this.#child.kill();
  }
}

let runs = 0;

/**
 * The backplane contract of DESIGN.md section 5 as tests, for node:test
 * (the default) or any runner given as `runner` (with its `after`), run
 * against three hubs in three separate processes on a real engine:
 * delivery to every node exactly once, no echo, patterns, per-origin order,
 * interest (engine subscriptions follow local observers), the codec's
 * refusals before any node sees a change, stores announcing across nodes
 * only after commit, malformed messages ignored and counted, and node
 * processes exiting by themselves after `hub.close()`.
 */
export function backplaneSuite(options: BackplaneSuiteOptions): void {
  const runner = options.runner ?? nodeTestRunner();
  const timeoutMs = options.timeoutMs ?? 60_000;
  const skipAll = options.skipAll === undefined || options.skipAll === false ? undefined : options.skipAll;
  runner.describe(`backplane conformance: ${options.name}`, () => {
    const namespace = `t${process.pid}x${++runs}`;
    const nodes: Node[] = [];
    let [a, b, c] = nodes as [Node, Node, Node];
    let started: Promise<void> | undefined;
    let closed = false;
    /** Starts the three node processes, once, for the first test that runs. */
    const start = (): Promise<void> => {
      started ??= (async () => {
        const env = { ...process.env, ...options.env, HERALD_TEST_NAMESPACE: namespace, HERALD_TEST_MAX_BYTES: String(options.maxMessageBytes) };
        for (let i = 0; i < 3; i++) nodes.push(new Node(options.node, options.execArgv ?? ['--import', 'tsx'], env));
        [a, b, c] = nodes as [Node, Node, Node];
        process.once('exit', stop); // a last resort, should the runner have no `after`
        await Promise.all(nodes.map((node) => node.call('stats')));
      })();
      return started;
    };
    const stop = (): void => {
      for (const node of nodes) node.kill();
    };
    runner.after?.(() => {
      stop();
      process.off('exit', stop);
      return Promise.resolve();
    });
    /** A test of the suite: the nodes started first, and none of their observers failed in it. */
    const test = (name: string, fn: () => Promise<void>): void => {
      if (skipAll !== undefined) {
        registerSkipped(runner, name, skipAll);
        return;
      }
      runner.test(name, () => new CaseRun().run(name, timeoutMs, async () => {
        await start();
        await fn();
        if (closed) return;
        const errors = await Promise.all(nodes.map((node) => node.call<{ deliveryErrors: number }>('stats').then((s) => s.deliveryErrors)));
        assert.deepEqual(errors, [0, 0, 0], "no error reached a node hub's onError");
      }));
    };
    let keyCount = 0;
    const key = (name: string): string => `${name}/${++keyCount}`;
    /**
     * Everything `from` published before this call has reached `to` once `to` has received a
     * change that `from` notified after it: the engine keeps one origin's changes in order.
     */
    const barrier = async (from: Node, ...to: Node[]): Promise<void> => {
      const k = key('barrier');
      const subs = await Promise.all(to.map((node) => node.call<string>('observe', { key: k })));
      await from.call('notify', { key: k, oldValue: 0, newValue: 1 });
      await Promise.all(to.map((node, i) => node.until(() => node.changesOf(subs[i]!).length === 1, `the barrier change of ${k}`)));
      await Promise.all(to.map((node, i) => node.call('unobserve', { sub: subs[i] })));
    };

    test('a change notified on one node reaches the observers of its key on every node, exactly once each', async () => {
      const k = key('once');
      const [sa, sb, sc] = await Promise.all([a.call<string>('observe', { key: k }), b.call<string>('observe', { key: k }), c.call<string>('observe', { key: k })]);
      for (let i = 1; i <= 3; i++) await a.call('notify', { key: k, oldValue: i - 1, newValue: i, meta: { by: 'a' } });
      await b.until(() => b.changesOf(sb).length >= 3, `3 changes of ${k}`);
      await c.until(() => c.changesOf(sc).length >= 3, `3 changes of ${k}`);
      // Anything the engine would deliver twice, or echo back to a, would arrive before these barriers.
      await barrier(b, a, c);
      await barrier(a, b, c);
      for (const [node, sub] of [[a, sa], [b, sb], [c, sc]] as const) {
        assert.deepEqual(node.changesOf(sub).map((r) => r.newValue), [1, 2, 3]);
        assert.deepEqual(node.changesOf(sub).map((r) => r.meta), [{ by: 'a' }, { by: 'a' }, { by: 'a' }]);
      }
      const stats = await a.call<{ backplane: { echoes: number; published: number } }>('stats');
      assert.ok(stats.backplane.published >= 3);
    });

    test('patterns on other nodes: "*" matches one segment, "**" one or more', async () => {
      const root = key('pat');
      const one = await b.call<string>('observe', { key: `${root}/*/x`, pattern: true });
      const many = await c.call<string>('observe', { key: `${root}/**`, pattern: true });
      await a.call('notify', { key: `${root}/1/x`, oldValue: 0, newValue: 'x' });
      await a.call('notify', { key: `${root}/1/y`, oldValue: 0, newValue: 'y' });
      await a.call('notify', { key: `${root}/1/x/z`, oldValue: 0, newValue: 'z' });
      await c.until(() => c.changesOf(many).length >= 3, `3 changes matching ${root}/**`);
      await barrier(a, b);
      assert.deepEqual(b.changesOf(one).map((r) => r.key), [`${root}/1/x`]);
      assert.deepEqual(c.changesOf(many).map((r) => r.newValue), ['x', 'y', 'z']);
    });

    test('per key and origin, changes arrive in the order they were notified, and seq only grows', async () => {
      const k = key('order');
      const sub = await c.call<string>('observe', { key: k });
      const count = 100;
      const burst = (node: Node, name: string): Promise<unknown[]> =>
        Promise.all(Array.from({ length: count }, (_, i) => node.call('notify', { key: k, oldValue: `${name}${i}`, newValue: `${name}${i + 1}`, meta: { origin: name, i: i + 1 } })));
      await Promise.all([burst(a, 'a'), burst(b, 'b')]);
      await c.until(() => c.changesOf(sub).length >= 2 * count, `${2 * count} changes of ${k}`);
      const got = c.changesOf(sub);
      for (const origin of ['a', 'b']) {
        assert.deepEqual(got.filter((r) => r.meta!['origin'] === origin).map((r) => r.meta!['i']), Array.from({ length: count }, (_, i) => i + 1));
      }
      const seqs = got.map((r) => r.seq!);
      assert.ok(seqs.every((s, i) => i === 0 || s > seqs[i - 1]!), 'seq grows');
    });

    test('interest: a node holds engine subscriptions only while it has observers, and none once the last one goes', async () => {
      const k = key('interest');
      const before = await b.call<number>('engineSubscriptions');
      const sub = await b.call<string>('observe', { key: k });
      const pattern = await b.call<string>('observe', { key: `${k}/*`, pattern: true });
      assert.equal(await b.call<number>('engineSubscriptions'), before + 2);
      const inspection = await b.call<{ backplane: { subscribed: boolean; state: string } }>('inspect', { key: k });
      assert.deepEqual(inspection.backplane, { subscribed: true, state: 'connected' });
      await b.call('unobserve', { sub });
      await b.call('unobserve', { sub: pattern });
      assert.equal(await b.call<number>('engineSubscriptions'), before);
      const stats = await b.call<{ backplane: { subscriptions: number; received: number } }>('stats');
      // A change of a key b no longer observes never reaches it.
      await a.call('notify', { key: k, oldValue: 0, newValue: 1 });
      await barrier(a, b);
      const later = await b.call<{ backplane: { received: number } }>('stats');
      assert.equal(later.backplane.received, stats.backplane.received + 1, 'only the barrier arrived');
    });

    test('a value the codec cannot carry, or one past the engine limit, fails notify before any node sees it', async () => {
      const k = key('codec');
      const [sa, sb] = await Promise.all([a.call<string>('observe', { key: k }), b.call<string>('observe', { key: k })]);
      for (const [bad, code] of [[{ bad: 'bigint' }, 'HERALD_UNSERIALIZABLE'], [{ bad: 'function' }, 'HERALD_UNSERIALIZABLE'], [{ bad: 'large', size: options.maxMessageBytes + 1 }, 'HERALD_TOO_LARGE']] as const) {
        await assert.rejects(a.call('notify', { key: k, oldValue: 0, newValue: bad }), { code });
      }
      await a.call('notify', { key: k, oldValue: 0, newValue: 'fine' });
      await b.until(() => b.changesOf(sb).length >= 1, `a change of ${k}`);
      await barrier(a, b);
      assert.deepEqual(a.changesOf(sa).map((r) => r.newValue), ['fine']);
      assert.deepEqual(b.changesOf(sb).map((r) => r.newValue), ['fine']);
    });

    test('a store on a clustered hub announces to other nodes after commit, and a rolled-back transaction nowhere', async () => {
      const session = key('session').replace('/', '-');
      const sub = await b.call<string>('observe', { key: `session/${session}/mode` });
      await a.call('set', { session, name: 'mode', value: 1, fail: true });
      await a.call('set', { session, name: 'mode', value: 2 });
      await b.until(() => b.changesOf(sub).length >= 1, 'the change');
      await barrier(a, b);
      assert.deepEqual(b.changesOf(sub).map((r) => r.newValue), [2]);
    });

    test('malformed messages from someone else on the engine are counted and ignored', async () => {
      const k = key('malformed');
      const sub = await b.call<string>('observe', { key: k });
      const before = await b.call<{ backplane: { malformed: number } }>('stats');
      for (const data of ['not json', '{"o":"x"}', '[]', 'null', '{"o":"x","n":-1,"k":"a","t":1}']) {
        await options.publishRaw(namespace, k, Buffer.from(data));
      }
      await options.publishRaw(namespace, k, Buffer.from([0xff, 0xfe, 0x00]));
      await a.call('notify', { key: k, oldValue: 0, newValue: 'real' });
      await b.until(() => b.changesOf(sub).length >= 1, 'the change');
      const stats = await b.call<{ backplane: { malformed: number } }>('stats');
      assert.equal(stats.backplane.malformed - before.backplane.malformed, 6);
      assert.deepEqual(b.changesOf(sub).map((r) => r.newValue), ['real']);
    });

    test('stats show the backplane connected, with what it published and received', async () => {
      const stats = await c.call<{ backplane: { engine: string; state: string; connected: boolean; received: number; gaps: number; reconnects: number } }>('stats');
      assert.equal(stats.backplane.engine, options.name);
      assert.equal(stats.backplane.state, 'connected');
      assert.equal(stats.backplane.connected, true);
      assert.ok(stats.backplane.received > 0);
      assert.equal(stats.backplane.gaps, 0);
      assert.equal(stats.backplane.reconnects, 0);
    });

    test('after hub.close() a node process exits by itself: nothing keeps it alive', async () => {
      closed = true;
      await Promise.all(nodes.map((node) => node.call('close')));
      const codes = await within(Promise.all(nodes.map((node) => node.exited)), WAIT_MS, 'the node processes to exit by themselves after hub.close()');
      assert.deepEqual(codes, [0, 0, 0]);
    });
  });
}
