import { parseArgs } from 'node:util';
import { ObserverManager } from '../hub/observer-manager.js';
import { SessionStore } from '../store/session-store.js';
import { createServer } from '../server/server.js';

const USAGE = `Usage: herald serve [options]

Serves an in-memory session store over HTTP (the JSON API under /v1).

Options (each also an environment variable):
  --port N       port to listen on (HERALD_PORT)                       default 7070
  --host HOST    address to listen on (HERALD_HOST)                    default 127.0.0.1
  --insecure     allow an address other than loopback; this release has
                 no tokens yet, so anyone who reaches it may read and write
  -h, --help     this text

Example:
  herald serve --port 7070
  curl -X POST http://127.0.0.1:7070/v1/sessions -d '{"id":"42"}'
`;

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/** `herald serve`: returns the exit code once the server has stopped (on SIGINT or SIGTERM), or at once for a user's mistake. */
export async function serve(args: readonly string[], out: (line: string) => void, err: (line: string) => void): Promise<number> {
  let values: { port?: string; host?: string; insecure?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: [...args],
      options: { port: { type: 'string' }, host: { type: 'string' }, insecure: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }));
  } catch (error) {
    err(`herald serve: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help === true) {
    out(USAGE);
    return 0;
  }
  const portText = values.port ?? process.env['HERALD_PORT'] ?? '7070';
  const port = Number(portText);
  if (!/^\d{1,5}$/.test(portText) || port > 65535) {
    err(`herald serve: --port must be a number from 0 to 65535, got ${JSON.stringify(portText)}`);
    return 2;
  }
  const host = values.host ?? process.env['HERALD_HOST'] ?? '127.0.0.1';
  if (!LOOPBACK.has(host) && values.insecure !== true) {
    err(`herald serve: refusing to listen on ${host} without tokens (not in this release); use a loopback address, or --insecure to accept anyone who reaches it`);
    return 2;
  }
  const hub = new ObserverManager();
  const store = new SessionStore({ hub });
  const server = createServer({ hub, store });
  try {
    await server.listen(port, host);
  } catch (error) {
    err(`herald serve: cannot listen on ${host}:${port}: ${(error as Error).message}`);
    await store.close();
    await hub.close();
    return 1;
  }
  const address = server.address!;
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  out(`herald listening on http://${shown}:${address.port} (in-memory store)`);
  out(`  try: curl -X POST http://${shown}:${address.port}/v1/sessions -d '{"id":"42"}'`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await server.close();
  await store.close();
  await hub.close();
  out('herald stopped');
  return 0;
}
