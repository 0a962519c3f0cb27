/**
 * herald/server: a hub's session store over HTTP (sessions, variables,
 * transactions), watched over Server-Sent Events and WebSocket with cursors,
 * replay and gaps; HS256 tokens, limits, `/healthz`, `/readyz`, `/metrics`.
 * The same server `herald serve` runs. Its dependencies (ws, jose) load only
 * with this entry point: `import 'herald'` never loads them.
 *
 * @example
 * ```ts
 * import { createServer } from 'herald/server';
 * const server = createServer({ hub, store, auth: { secret: process.env.HERALD_TOKEN_SECRET! } });
 * await server.listen(7070, '127.0.0.1');
 * ```
 * @module
 */
export { createServer, type HeraldServer, type ServerLimits, type ServerOptions } from './server/server.js';
export type { AuthOptions } from './server/auth.js';
export type { ServerLog, WatchLimits, WatchTimers } from './server/connections.js';
export type { HttpLimits } from './server/http-api.js';
export type { EndReason } from './server/watch.js';
