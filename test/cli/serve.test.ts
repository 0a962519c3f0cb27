import assert from 'node:assert/strict';
import { test } from 'node:test';
import { exitOf, within } from '../support/deadline.js';
import { herald } from '../support/herald-cli.js';

test('herald serve - prints where it listens; the API answers there; SIGTERM stops it with exit code 0', async (t) => {
  const run = herald(t, ['serve', '--port', '0']);
  const listening = within((async () => {
    for (;;) {
      const match = /listening on (http:\/\/\S+)/.exec(run.stdout());
      if (match !== null) return match[1]!;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })(), 15_000, 'herald serve to say where it listens');
  const url = await listening;
  const created = await fetch(`${url}/v1/sessions`, { method: 'POST', body: JSON.stringify({ id: '42' }) });
  assert.equal(created.status, 201);
  const set = await fetch(`${url}/v1/sessions/42/variables/mode`, { method: 'PUT', body: JSON.stringify({ value: 'eco' }) });
  assert.equal(((await set.json()) as { version: number }).version, 1);
  run.child.kill('SIGTERM');
  assert.equal(await exitOf(run.child, 10_000), 0);
  assert.match(run.stdout(), /herald stopped/);
});

test('herald serve - a user\'s mistake is one clear line and exit code 2, never a stack trace', async (t) => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [['serve', '--port', 'seven'], {}, /--port must be a (whole )?number/],
    [['serve', '--nonsense'], {}, /Unknown option '--nonsense'/],
    [['serve', '--host', '0.0.0.0'], {}, /refusing to listen on 0\.0\.0\.0 without --token-secret/],
    [['serve'], { HERALD_PORT: '99999' }, /--port must be a (whole )?number/],
    [['launch'], {}, /unknown command "launch"/],
  ];
  for (const [args, env, message] of cases) {
    const run = herald(t, args, env);
    assert.equal(await exitOf(run.child, 10_000), 2, args.join(' '));
    assert.match(run.stderr(), message);
    assert.doesNotMatch(run.stderr(), /\n\s+at /, 'no stack trace');
  }
  const help = herald(t, ['serve', '--help']);
  assert.equal(await exitOf(help.child, 10_000), 0);
  assert.match(help.stdout(), /Usage: herald serve/);
  assert.match(help.stdout(), /Examples:/);
});
