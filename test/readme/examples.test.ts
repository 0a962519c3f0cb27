/**
 * Keeps the README's examples true. Every ```ts block of README.md is
 * type-checked against the built package (`import … from 'herald'` resolves
 * to dist/ through the package's self-reference, so run `npm run build`
 * first), and the blocks marked to run are run, each in its own process,
 * and must exit by themselves with status 0.
 *
 * The marker is an HTML comment on the line right before the fence, e.g.
 * `<!-- example: setup=hub,app -->` or `<!-- example: run=2 engines=postgres -->`:
 * - `setup=a,b`: a fragment; the named setups of ./setups.ts (which declare
 *   its free names, such as `hub`) are put before it for the type check.
 * - `run`, `run=N`: a whole program; it is also run, N times in a row
 *   (default 1), each run in a fresh process that must end within 20 s.
 * - `engines=postgres,redis,nats`: what a run needs. Without one the run is
 *   skipped, saying why; under CI=true it fails (test/support/engines.ts).
 *   The engines' default URLs in a run's code are replaced by
 *   HERALD_PG_URL, HERALD_REDIS_URL and HERALD_NATS_URL when those are set;
 *   DATABASE_URL is set to the PostgreSQL URL.
 * A block without a marker is type-checked as a whole module. Examples are
 * checked with the repository's compiler settings, except that unused names
 * are allowed (an example may bind a value only to show what it is).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { engineGate, urls } from '../support/engines.js';
import { setups } from './setups.js';

type Engine = keyof typeof urls;

interface Example {
  /** README line of the opening fence. */
  readonly line: number;
  readonly code: string;
  readonly setups: readonly string[];
  readonly runs: number;
  readonly engines: readonly Engine[];
}

const root = fileURLToPath(new URL('../../', import.meta.url));
// Inside the package (so `herald` resolves to dist/ by self-reference), and ignored by git and eslint.
const workDir = join(root, 'scratch', 'readme-examples');
const RUN_DEADLINE_MS = 20_000;
const DEFAULT_URLS: Record<Engine, string> = {
  postgres: 'postgres://postgres@127.0.0.1:5432/test',
  redis: 'redis://127.0.0.1:6379',
  nats: 'nats://127.0.0.1:4222',
};

/** Every ```ts block of the README with its marker; throws on a marker it does not understand. */
function extractExamples(readme: string): Example[] {
  const lines = readme.split('\n');
  const examples: Example[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^```ts\s*$/.test(lines[i]!)) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]!); i++) body.push(lines[i]!);
    const marker = /^<!-- example:(.*)-->\s*$/.exec(lines[start - 1] ?? '')?.[1] ?? '';
    const example: { setups: string[]; runs: number; engines: Engine[] } = { setups: [], runs: 0, engines: [] };
    for (const word of marker.trim().split(/\s+/).filter(Boolean)) {
      const [name, value] = word.split('=') as [string, string | undefined];
      if (name === 'setup' && value !== undefined) {
        example.setups = value.split(',');
        for (const setup of example.setups) {
          if (!(setup in setups)) throw new Error(`README.md:${start}: unknown setup "${setup}" (known: ${Object.keys(setups).join(', ')})`);
        }
      } else if (name === 'run') {
        example.runs = value === undefined ? 1 : Number(value);
        if (!Number.isInteger(example.runs) || example.runs < 1) throw new Error(`README.md:${start}: run=${value} is not a count`);
      } else if (name === 'engines' && value !== undefined) {
        example.engines = value.split(',') as Engine[];
        for (const engine of example.engines) {
          if (!(engine in urls)) throw new Error(`README.md:${start}: unknown engine "${engine}" (known: ${Object.keys(urls).join(', ')})`);
        }
      } else {
        throw new Error(`README.md:${start}: unknown example marker "${word}"`);
      }
    }
    if (example.runs > 0 && example.setups.length > 0) throw new Error(`README.md:${start}: a block that runs must be whole, without setup`);
    examples.push({ line: start + 1, code: body.join('\n'), ...example });
  }
  return examples;
}

interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly timedOut: boolean;
  readonly output: string;
}

/** Runs a command to its end, or kills it once `deadlineMs` has passed. */
function runToEnd(args: readonly string[], env: NodeJS.ProcessEnv, deadlineMs: number): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, deadlineMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, timedOut, output });
    });
  });
}

const examples = extractExamples(readFileSync(join(root, 'README.md'), 'utf8'));
const built = existsSync(join(root, 'dist', 'index.d.ts'));
const notBuilt = 'dist/ is missing: run `npm run build` first (the examples are checked against the built package)';
if (!built && process.env['CI'] === 'true') test('README - the package is built (CI requires it)', () => assert.fail(notBuilt));

rmSync(workDir, { recursive: true, force: true });
mkdirSync(join(workDir, 'run'), { recursive: true });
writeFileSync(join(workDir, 'tsconfig.json'), `${JSON.stringify({
  extends: '../../tsconfig.base.json',
  compilerOptions: { noEmit: true, noUnusedLocals: false, noUnusedParameters: false },
  include: ['*.ts'],
}, null, 2)}\n`);
const preludeLines = new Map<number, number>();
for (const example of examples) {
  const prelude = example.setups.map((name) => setups[name]!).join('\n');
  const lines = prelude === '' ? 0 : prelude.split('\n').length;
  preludeLines.set(example.line, lines);
  // `export {}` makes every example a module of its own: top-level await, and no names shared between files.
  writeFileSync(join(workDir, `line-${example.line}.ts`), `${prelude === '' ? '' : `${prelude}\n`}${example.code}\nexport {};\n`);
}

/** tsc's diagnostics by README line of the example's fence, each located in README.md. */
async function typeCheck(): Promise<Map<number, string[]>> {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const result = await runToEnd([tsc, '-p', join(workDir, 'tsconfig.json'), '--pretty', 'false'], process.env, 120_000);
  if (result.timedOut) throw new Error('tsc did not finish within 120 s');
  const byExample = new Map<number, string[]>();
  let last: string[] | undefined;
  for (const text of result.output.split('\n')) {
    const located = /line-(\d+)\.ts\((\d+),(\d+)\): (.*)$/.exec(text);
    if (located !== null) {
      const [, fence, row, column, message] = located as unknown as [string, string, string, string, string];
      const readmeLine = Number(fence) + Number(row) - preludeLines.get(Number(fence))!;
      const where = Number(row) <= preludeLines.get(Number(fence))! ? `setup of README.md:${fence}` : `README.md:${readmeLine}:${column}`;
      last = byExample.get(Number(fence)) ?? [];
      byExample.set(Number(fence), last);
      last.push(`${where} ${message}`);
    } else if (/^\s/.test(text) && last !== undefined) {
      last[last.length - 1] += `\n${text}`;
    } else if (text.trim() !== '') {
      last = undefined;
      if (!/line-\d+\.ts/.test(text)) byExample.set(0, [...(byExample.get(0) ?? []), text]);
    }
  }
  if (result.code !== 0 && byExample.size === 0) byExample.set(0, [`tsc exited with ${result.code}:\n${result.output}`]);
  return byExample;
}

const diagnostics = built ? await typeCheck() : new Map<number, string[]>();

test('README - has ts examples, and tsc reports nothing outside them', { skip: !built && notBuilt }, () => {
  assert.ok(examples.length > 0, 'no ```ts block found in README.md');
  assert.deepEqual(diagnostics.get(0) ?? [], []);
});

for (const example of examples) {
  test(`README line ${example.line} - the example type-checks against the built package`, { skip: !built && notBuilt }, () => {
    const found = diagnostics.get(example.line) ?? [];
    if (found.length > 0) assert.fail(`the example at README.md:${example.line} does not type-check:\n${found.join('\n')}`);
  });
}

const gates = new Map<Engine, string | false>();
for (const engine of new Set(examples.flatMap((example) => example.engines))) gates.set(engine, await engineGate(engine));

const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: urls.postgres };
for (const example of examples.filter((e) => e.runs > 0)) {
  let code = example.code;
  for (const engine of Object.keys(DEFAULT_URLS) as Engine[]) code = code.replaceAll(DEFAULT_URLS[engine], urls[engine]);
  const file = join(workDir, 'run', `line-${example.line}.ts`);
  writeFileSync(file, `${code}\nexport {};\n`);
  const skip = !built ? notBuilt : example.engines.map((engine) => gates.get(engine)).find((why) => typeof why === 'string') ?? false;
  for (let run = 1; run <= example.runs; run++) {
    const title = `README line ${example.line} - the example runs and ends by itself${example.runs > 1 ? ` (run ${run} of ${example.runs})` : ''}`;
    test(title, { skip }, async () => {
      const exit = await runToEnd(['--import', 'tsx', file], env, RUN_DEADLINE_MS);
      if (exit.timedOut) assert.fail(`the example at README.md:${example.line} was still running after ${RUN_DEADLINE_MS / 1000} s and was killed; output:\n${exit.output}`);
      if (exit.code !== 0) assert.fail(`the example at README.md:${example.line} exited with ${exit.code ?? exit.signal}; output:\n${exit.output}`);
    });
  }
}

/** The field names of `export interface <name> { … }` in a source file of herald. */
function fieldsOf(file: string, name: string): string[] {
  const source = readFileSync(join(root, 'src', file), 'utf8');
  const body = new RegExp(`export interface ${name} \\{\\n([\\s\\S]*?)\\n\\}`).exec(source)?.[1];
  assert.ok(body !== undefined, `interface ${name} not found in src/${file}`);
  return [...body.matchAll(/^ {2}readonly (\w+)\??:/gm)].map((match) => match[1]!);
}

/** The README's text from a heading to the next heading. */
function section(heading: string): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const start = readme.indexOf(`\n${heading}\n`);
  assert.ok(start >= 0, `README.md has no heading ${heading}`);
  const end = readme.slice(start + 1).search(/\n#{2,3} /);
  return end < 0 ? readme.slice(start) : readme.slice(start, start + 1 + end);
}

test('README - the getStats() example names every field of Stats and LatencyStats, and no other', () => {
  const comment = section('### `hub.getStats()`').split('\n').filter((line) => line.startsWith('//')).join(' ');
  const named = new Set([...comment.matchAll(/\b([a-z][A-Za-z0-9]*)\??(?=\s*[:,}])/g)].map((match) => match[1]!));
  const fields = new Set([...fieldsOf('core/types.ts', 'Stats'), ...fieldsOf('core/types.ts', 'LatencyStats')]);
  assert.deepEqual([...named].sort(), [...fields].sort());
});

test('README - the backplane stats named under "Running a cluster" are the fields of BackplaneStats', () => {
  const sentence = /`getStats\(\)\.backplane` holds `\{ ([^}]*) \}`/.exec(section('## Running a cluster'))?.[1];
  assert.ok(sentence !== undefined, 'the sentence listing getStats().backplane is missing');
  assert.deepEqual(sentence.split(/,\s*/).sort(), fieldsOf('core/backplane-port.ts', 'BackplaneStats').sort());
});

test('README - the list of error codes is HeraldErrorCode, code for code', () => {
  const source = readFileSync(join(root, 'src', 'core', 'errors.ts'), 'utf8');
  const union = /export type HeraldErrorCode =([^;]*);/.exec(source)?.[1] ?? '';
  const codes = [...union.matchAll(/'(HERALD_[A-Z_]+)'/g)].map((match) => match[1]!);
  const paragraph = section('### Errors').split('\n').find((line) => line.startsWith('Codes: ')) ?? '';
  const listed = new Set([...paragraph.matchAll(/`(HERALD_[A-Z_]+)`/g)].map((match) => match[1]!));
  assert.ok(codes.length > 0, 'HeraldErrorCode not found in src/core/errors.ts');
  assert.deepEqual([...listed].sort(), [...new Set(codes)].sort());
});
