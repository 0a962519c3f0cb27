import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/** A running `herald` command and what it has written so far. */
export interface Run {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
}

/** Runs the built `herald` binary, as a user would; SIGKILLed when the test ends. */
export function herald(t: TestContext, args: string[], env: Record<string, string> = {}): Run {
  assert.ok(existsSync(BIN), `${BIN} is missing: run \`npm run build\` first`);
  // Servers of parallel tests must not meet on the default gRPC port.
  if (args[0] === 'serve' && !args.includes('--grpc-port') && env['HERALD_GRPC_PORT'] === undefined) args = [...args, '--grpc-port', '0'];
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  t.after(() => void child.kill('SIGKILL'));
  return { child, stdout: () => stdout, stderr: () => stderr };
}

/** A free loopback port, as the kernel hands one out. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
