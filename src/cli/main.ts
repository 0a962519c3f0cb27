#!/usr/bin/env node
/**
 * The `herald` command. This release has one command, `serve`; `watch`,
 * `set`, `get` and `stats` follow.
 * @module
 */
import { serve } from './serve.js';

const USAGE = `Usage: herald <command> [options]

Commands:
  serve    serve a session store over HTTP (herald serve --help)
`;

const [command, ...rest] = process.argv.slice(2);
const out = (line: string): void => void process.stdout.write(`${line}\n`);
const err = (line: string): void => void process.stderr.write(`${line}\n`);

if (command === 'serve') {
  process.exitCode = await serve(rest, out, err);
} else if (command === undefined || command === '--help' || command === '-h') {
  out(USAGE);
  process.exitCode = command === undefined ? 2 : 0;
} else {
  err(`herald: unknown command ${JSON.stringify(command)}\n${USAGE}`);
  process.exitCode = 2;
}
