import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const recorder = fileURLToPath(new URL('../support/record-loads.mjs', import.meta.url));

/** The node_modules packages a fresh process loads to import `entry` of the built package. */
function packagesLoadedBy(entry: string): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'herald-loads-'));
  try {
    const file = join(dir, 'loads.txt');
    const run = spawnSync(process.execPath, ['--import', recorder, '--input-type=module', '-e', `await import(${JSON.stringify(entry)});`], {
      cwd: root, env: { ...process.env, HERALD_LOADS: file }, encoding: 'utf8', timeout: 20_000,
    });
    assert.equal(run.status, 0, run.stderr);
    const urls = readFileSync(file, 'utf8').split('\n').filter((url) => url.includes('/node_modules/'));
    return [...new Set(urls.map((url) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)![1]!))].sort();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('importing herald loads no package at all: the server\'s dependencies (ws, jose, pino) stay unloaded', () => {
  assert.deepEqual(packagesLoadedBy('herald'), []);
});

test('herald/server loads ws and jose, and not the logger, which only the herald command uses', () => {
  assert.deepEqual(packagesLoadedBy('herald/server'), ['jose', 'ws']);
});
