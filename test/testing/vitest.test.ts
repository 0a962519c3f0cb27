import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const DEADLINE_MS = 60_000;

interface VitestReport {
  readonly success: boolean;
  readonly numTotalTests: number;
  readonly numPassedTests: number;
  readonly numFailedTests: number;
  readonly testResults: readonly { readonly assertionResults: readonly { readonly fullName: string; readonly status: string }[] }[];
}

test('conformance suites - run under vitest, given its describe and test, and pass', { timeout: DEADLINE_MS + 10_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'herald-vitest-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const report = join(dir, 'report.json');
  const vitest = join(root, 'node_modules', 'vitest', 'vitest.mjs');
  const child = spawn(process.execPath, [
    vitest, 'run', 'test/vitest/suites.vitest.ts', '--config', 'test/vitest/vitest.config.ts', '--reporter=json', `--outputFile=${report}`,
  ], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => void (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => void (output += chunk.toString()));
  const code = await new Promise<number | string | null>((resolve) => {
    const deadline = setTimeout(() => {
      child.kill('SIGKILL');
      resolve(`killed after ${DEADLINE_MS} ms`);
    }, DEADLINE_MS);
    child.once('exit', (exitCode, signal) => {
      clearTimeout(deadline);
      resolve(exitCode ?? signal);
    });
  });
  assert.equal(code, 0, `vitest exited with ${String(code)}:\n${output}`);
  const result = JSON.parse(await readFile(report, 'utf8')) as VitestReport;
  const names = result.testResults.flatMap((file) => file.assertionResults.map((r) => r.fullName));
  assert.equal(result.success, true);
  assert.equal(result.numFailedTests, 0);
  assert.ok(result.numPassedTests > 50, `only ${result.numPassedTests} tests passed`);
  assert.equal(result.numPassedTests, result.numTotalTests, 'nothing skipped');
  assert.ok(names.some((name) => name.startsWith('hub conformance: ObserverManager under vitest')), 'the hub suite ran');
  assert.ok(names.some((name) => name.startsWith('store conformance: SessionStore (memory) under vitest')), 'the store suite ran');
  assert.ok(names.includes('herald/testing - importing it loads no node:test'));
});
