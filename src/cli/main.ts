#!/usr/bin/env node
/**
 * The `herald` command: `serve` runs a server; `watch`, `set`, `get` and
 * `stats` talk to one. A user's mistake is one line on stderr and a non-zero
 * exit code, never a stack trace.
 * @module
 */
import { CommandError, EXIT, type Io } from './remote.js';
import { serve } from './serve.js';
import { stats } from './stats.js';
import { get, set } from './variables.js';
import { watch } from './watch.js';

const USAGE = `Usage: herald <command> [options]   (herald <command> --help for each)

Commands:
  serve                            serve a session store over HTTP and gRPC
  watch URL SESSION [NAMES...]     print a session's changes as they come
  set URL SESSION NAME JSON        set a variable (--if-version N: compare-and-set)
  get URL SESSION [NAME]           print a variable, or all of a session's
  stats URL                        print a server's statistics

Examples:
  herald serve
  herald watch http://127.0.0.1:7070 42
  herald set http://127.0.0.1:7070 42 mode '"eco"'
`;

const [command, ...rest] = process.argv.slice(2);
const io: Io = {
  out: (line) => void process.stdout.write(`${line}\n`),
  err: (line) => void process.stderr.write(`${line}\n`),
  tty: process.stdout.isTTY === true,
  errTty: process.stderr.isTTY === true,
  backlog: () => process.stdout.writableLength,
  onDrain: (fn) => void process.stdout.once('drain', fn),
  env: process.env,
};

// The reader of a pipe went (herald watch … | head -n 3): that is the end, not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(EXIT.ok);
  throw error;
});

async function run(): Promise<number> {
  switch (command) {
    case 'serve':
      return serve(rest, io.out, io.err);
    case 'set':
      return set(rest, io);
    case 'get':
      return get(rest, io);
    case 'stats':
      return stats(rest, io);
    case 'watch': {
      const stop = new AbortController();
      process.once('SIGINT', () => stop.abort());
      process.once('SIGTERM', () => stop.abort());
      return watch(rest, io, stop.signal);
    }
    case undefined:
      io.err(USAGE);
      return EXIT.usage;
    case '--help':
    case '-h':
      io.out(USAGE);
      return EXIT.ok;
    default:
      io.err(`herald: unknown command ${JSON.stringify(command)}\n${USAGE}`);
      return EXIT.usage;
  }
}

try {
  process.exitCode = await run();
} catch (error) {
  if (!(error instanceof CommandError)) throw error;
  io.err(`herald ${command ?? ''}: ${error.message}${error.exitCode === EXIT.usage ? ` (herald ${command ?? ''} --help)` : ''}`);
  process.exitCode = error.exitCode;
}
