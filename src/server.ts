/**
 * herald/server: a hub's session store over HTTP, for programs that embed
 * herald and for `herald serve`. This release serves the JSON API of
 * sessions, variables and transactions; watching over SSE, WebSocket and
 * gRPC follows.
 *
 * @example
 * ```ts
 * import { createServer } from 'herald/server';
 * const server = createServer({ hub, store });
 * await server.listen(7070, '127.0.0.1');
 * ```
 * @module
 */
export { createServer, type HeraldServer, type ServerOptions } from './server/server.js';
export type { HttpLimits } from './server/http-api.js';
