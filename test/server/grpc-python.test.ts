import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { within } from '../support/deadline.js';
import { call, PROTO, startServer } from '../support/watchers.js';

/** Debian's Python, with python3-grpcio and python3-protobuf; protoc and grpc_python_plugin from protobuf-compiler(-grpc). */
const PYTHON = process.env['HERALD_PYTHON'] ?? '/usr/bin/python3';
const PLUGIN = '/usr/bin/grpc_python_plugin';
const WORKER = fileURLToPath(new URL('../python/watch_worker.py', import.meta.url));

/** Why the Python side cannot run here, or false. */
function pythonProblem(): string | false {
  const probe = spawnSync(PYTHON, ['-c', 'import grpc, google.protobuf'], { encoding: 'utf8' });
  if (probe.status !== 0) return `${PYTHON} cannot import grpc and protobuf (apt-get install python3-grpcio python3-protobuf)`;
  if (spawnSync('protoc', ['--version']).status !== 0 || !existsSync(PLUGIN)) return 'protoc or grpc_python_plugin is missing (apt-get install protobuf-compiler protobuf-compiler-grpc)';
  return false;
}

const problem = pythonProblem();
if (problem !== false && process.env['CI'] === 'true') test('the Python gRPC client can run (CI requires it)', () => assert.fail(problem));

test('a Python worker on grpcio, with stubs generated from the shipped proto, watches a session, gets a change set over HTTP, and resumes by cursor after reconnecting', { skip: problem, timeout: 60_000 }, async (t) => {
  const stubs = mkdtempSync(join(tmpdir(), 'herald-py-'));
  t.after(() => rmSync(stubs, { recursive: true, force: true }));
  const generated = spawnSync('protoc', [`-I${dirname(PROTO)}`, `--python_out=${stubs}`, `--grpc_python_out=${stubs}`, `--plugin=protoc-gen-grpc_python=${PLUGIN}`, PROTO], { encoding: 'utf8' });
  assert.equal(generated.status, 0, generated.stderr);

  const { base, grpcPort, store } = await startServer(t);
  await store.createSession('worker');
  await store.set('worker', 'mode', 'initial');
  const worker = spawn(PYTHON, [WORKER, stubs, `127.0.0.1:${grpcPort}`, 'worker'], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.after(() => void worker.kill('SIGKILL'));
  let stderr = '';
  worker.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const lines: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: worker.stdout }).on('line', (line) => {
    lines.push(JSON.parse(line) as Record<string, unknown>);
    for (const wake of waiters) wake();
  });
  const step = (name: string): Promise<Record<string, unknown>> => within(new Promise((resolve) => {
    const check = (): void => {
      const found = lines.find((line) => line['step'] === name);
      if (found !== undefined) {
        waiters.delete(check);
        resolve(found);
      }
    };
    waiters.add(check);
    check();
  }), 30_000, `the worker's "${name}" (stderr: ${stderr})`);

  await step('live');
  assert.equal((await call(base, 'PUT', '/v1/sessions/worker/variables/mode', { value: 'from-http' })).status, 200);
  await step('disconnected');
  // While it is away: two changes it must get on resuming, in order.
  await call(base, 'PUT', '/v1/sessions/worker/variables/mode', { value: 'after-1' });
  await call(base, 'PUT', '/v1/sessions/worker/variables/mode', { value: 'after-2' });
  worker.stdin.write('go\n');
  await step('done');
  const exit = await within(new Promise<number | null>((resolve) => worker.once('exit', resolve)), 10_000, 'the worker to exit');
  assert.equal(exit, 0, stderr);
  const changes = lines.filter((line) => line['step'] === 'change').map((line) => [line['value'], line['version'], line['current']]);
  assert.deepEqual(changes, [['initial', 1, true], ['from-http', 2, false]]);
  const replayed = lines.filter((line) => line['step'] === 'replayed').map((line) => [line['value'], line['version']]);
  assert.deepEqual(replayed, [['after-1', 3], ['after-2', 4]], 'exactly what it missed, in order');
  const error = lines.find((line) => line['step'] === 'error');
  assert.deepEqual([error?.['code'], error?.['herald_code']], ['NOT_FOUND', 'HERALD_NO_VARIABLE']);
});
