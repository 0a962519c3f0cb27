import { readFile } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { assertOptions, integerOption } from '../core/assert.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { Subscription } from '../core/types.js';
import type { ObserverManager } from '../hub/observer-manager.js';
import type { SessionStoreLike } from '../store/store.js';
import { Auth, OPEN, type AuthOptions, type Grant } from './auth.js';
import { Connections, SILENT, type ServerContext, type ServerLog, type WatchLimits, type WatchTimers } from './connections.js';
import { WatchHistory } from './history.js';
import { HttpApi, type HttpLimits } from './http-api.js';
import { HttpError, logFailure, replyError } from './http-errors.js';
import { prometheusText } from './metrics.js';
import type { GrpcTransport } from './grpc.js';
import { SseTransport } from './sse.js';
import { WebSocketTransport } from './websocket.js';

/** Every limit of a server, each with its default (DESIGN 9.3). */
export interface ServerLimits extends HttpLimits, WatchLimits {
  /** Changes kept for replay; 0 keeps none, and every resume is a gap. @default 10000 */
  readonly history: number;
  /** Bytes of changes kept for replay at most. @default 67108864 (64 MiB) */
  readonly historyBytes: number;
}

/** Options of {@link createServer}. */
export interface ServerOptions {
  readonly hub: ObserverManager;
  readonly store: SessionStoreLike;
  /** Tokens (DESIGN 9.3). Without it, no token is asked for: keep such a server on loopback. */
  readonly auth?: AuthOptions;
  readonly limits?: Partial<ServerLimits>;
  /** SSE heartbeat and WebSocket ping periods. */
  readonly timers?: Partial<WatchTimers>;
  /** How long a watcher told to go (`server-closing`, `slow-consumer`, `token-expired`) may take its last frames before it is cut off. @default 5000 */
  readonly closeGraceMs?: number;
  /** Where the server tells what happened (a pino logger fits). @default silent */
  readonly log?: ServerLog;
  /**
   * Serve gRPC (`proto/herald.proto`) too, on this port of the same host (0:
   * any free one): grpc-js runs an HTTP/2 server of its own. Its dependencies
   * load only then. @default no gRPC
   */
  readonly grpcPort?: number;
}

/** A herald server: the store's HTTP API and its watchers over SSE and WebSocket on one HTTP server, and over gRPC on a port of its own. */
export interface HeraldServer {
  /** Starts listening; resolves with the address once it does. */
  listen(port?: number, host?: string): Promise<AddressInfo>;
  /** Where it listens, once it does. */
  readonly address: AddressInfo | undefined;
  /** The gRPC port, once it listens there (with `grpcPort`). */
  readonly grpcPort: number | undefined;
  /**
   * Stops accepting (new requests get 503 `HERALD_CLOSING`), ends every
   * watch with `server-closing`, lets requests under way finish, and resolves
   * once the server is closed. The hub and store stay open: they are the caller's.
   */
  close(): Promise<void>;
}

const SSE_PATH = /^\/v1\/sessions\/([^/]+)\/watch$/;

/** The live page (DESIGN 9.4): plain files of the package, served as they are. */
const UI_DIR = new URL('../../ui/', import.meta.url);
const PAGE_FILES: ReadonlyMap<string, { readonly file: string; readonly type: string }> = new Map([
  ['/', { file: 'index.html', type: 'text/html; charset=utf-8' }],
  ['/ui/app.js', { file: 'app.js', type: 'text/javascript; charset=utf-8' }],
  ['/ui/style.css', { file: 'style.css', type: 'text/css; charset=utf-8' }],
]);

/**
 * A server for a program that embeds herald: a hub's store over HTTP (DESIGN
 * 9.1), watched over SSE and WebSocket (9.2), with tokens and limits (9.3)
 * and `/healthz`, `/readyz`, `/metrics` (9.4).
 *
 * @example
 * ```ts
 * import { ObserverManager, SessionStore } from 'herald';
 * import { createServer } from 'herald/server';
 * const hub = new ObserverManager();
 * const server = createServer({ hub, store: new SessionStore({ hub }), auth: { secret: process.env.HERALD_TOKEN_SECRET! } });
 * const { port } = await server.listen(7070, '127.0.0.1');
 * ```
 */
export function createServer(options: ServerOptions): HeraldServer {
  assertOptions(options, 'options');
  const { hub, store } = options;
  if (typeof hub?.notify !== 'function') throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.hub', 'an ObserverManager', hub);
  if (typeof store?.transaction !== 'function') throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.store', 'a session store', store);
  const limits = serverLimits(options.limits);
  assertOptions(options.timers, 'options.timers');
  const timers: WatchTimers = {
    heartbeatMs: integerOption(options.timers?.heartbeatMs, 'options.timers.heartbeatMs', 15_000, 10),
    pingIntervalMs: integerOption(options.timers?.pingIntervalMs, 'options.timers.pingIntervalMs', 25_000, 10),
  };
  const closeGraceMs = integerOption(options.closeGraceMs, 'options.closeGraceMs', 5000, 0);
  const grpcPort = options.grpcPort === undefined ? undefined : integerOption(options.grpcPort, 'options.grpcPort', 0, 0, 65535);
  let grpc: GrpcTransport | undefined;
  const log = options.log ?? SILENT;
  if (typeof log.debug !== 'function' || typeof log.warn !== 'function' || typeof log.error !== 'function') {
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.log', 'a logger with debug, warn and error (a pino logger fits)', log);
  }
  const auth = authOf(options.auth);

  const history = new WatchHistory(hub, { events: limits.history, bytes: limits.historyBytes });
  // On a cluster, this node hears every session's changes, so any node can replay them; a gap means some may be missing.
  const interest: Subscription | undefined = hub.backplane === undefined
    ? undefined
    : hub.observePattern('session/**', () => undefined, { label: 'herald server history', onGap: (gap) => history.breakReplay(gap) });
  const connections = new Connections(limits.maxConnections);
  const context: ServerContext = { hub, store, history, auth, limits, timers, connections, log, closeGraceMs };
  const api = new HttpApi(hub, store, limits, log);
  const sse = new SseTransport(context);
  const ws = new WebSocketTransport(context);
  let closing = false;

  const grantOf = (request: IncomingMessage, url: URL): Promise<Grant> => (auth === undefined ? Promise.resolve(OPEN) : auth.grant(request, url));

  /** Requests being answered (not watch streams): close() lets them finish. */
  const answering = new Set<ServerResponse>();
  const http: HttpServer = createHttpServer((request: IncomingMessage, response: ServerResponse) => {
    answering.add(response);
    response.once('close', () => answering.delete(response));
    void route(request, response).catch((error: unknown) => {
      logFailure(log, error, { method: request.method, url: request.url });
      replyError(response, error);
    });
  });
  async function route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://herald');
    const path = url.pathname;
    if (closing) return replyError(response, new HttpError(503, 'HERALD_CLOSING', 'the server is closing'));
    if (path === '/healthz') return void response.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    if (path === '/readyz') {
      const problem = await readiness(hub, store);
      return void response.writeHead(problem === undefined ? 200 : 503, { 'content-type': 'text/plain' }).end(problem === undefined ? 'ready\n' : `not ready: ${problem}\n`);
    }
    // The page's files hold no data: they need no token (its calls to the API do).
    const page = PAGE_FILES.get(path);
    if (page !== undefined) {
      if (request.method !== 'GET' && request.method !== 'HEAD') throw new HttpError(405, 'HERALD_METHOD_NOT_ALLOWED', `${request.method ?? '?'} ${path} is not allowed: use GET`);
      const body = await readFile(new URL(page.file, UI_DIR));
      return void response.writeHead(200, {
        'content-type': page.type, 'content-length': body.length, 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff',
        // Its own scripts and API only, and never inside another site's frame.
        'content-security-policy': "default-src 'self'; frame-ancestors 'none'", 'x-frame-options': 'DENY',
      }).end(request.method === 'HEAD' ? undefined : body);
    }
    assertSameOrigin(request, auth);
    const grant = await grantOf(request, url);
    if (path === '/metrics') {
      return void response.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(prometheusText(hub.getStats(), connections.counters));
    }
    const watch = SSE_PATH.exec(path);
    if (watch !== null) {
      if (request.method !== 'GET') throw new HttpError(405, 'HERALD_METHOD_NOT_ALLOWED', `${request.method ?? '?'} ${path} is not allowed: use GET`);
      let session: string;
      try {
        session = decodeURIComponent(watch[1]!);
      } catch {
        throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', 'the session in the path is not valid percent-encoding');
      }
      answering.delete(response);
      return sse.watch(request, response, url, session, grant);
    }
    if (api.handles(path)) return api.handle(request, response, path, grant);
    throw new HttpError(404, 'HERALD_NOT_FOUND', `no route ${request.method ?? '?'} ${path}`);
  }

  http.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const url = new URL(request.url ?? '/', 'http://herald');
    void (async () => {
      if (url.pathname !== '/v1/ws') throw new HttpError(404, 'HERALD_NOT_FOUND', `no WebSocket at ${url.pathname}: use /v1/ws`);
      if (closing) throw new HttpError(503, 'HERALD_CLOSING', 'the server is closing');
      assertSameOrigin(request, auth, true);
      const release = connections.reserve();
      try {
        const grant = await grantOf(request, url);
        if (closing) throw new HttpError(503, 'HERALD_CLOSING', 'the server is closing');
        ws.upgrade(request, socket, head, grant, release);
      } catch (error) {
        release();
        throw error;
      }
    })().catch((error: unknown) => {
      logFailure(log, error, { transport: 'ws', path: url.pathname });
      WebSocketTransport.refuse(socket, error);
    });
  });

  let closed: Promise<void> | undefined;
  return {
    async listen(port = 7070, host = '127.0.0.1') {
      const address = await new Promise<AddressInfo>((resolve, reject) => {
        http.once('error', reject);
        http.listen(port, host, () => {
          http.off('error', reject);
          resolve(http.address() as AddressInfo);
        });
      });
      if (grpcPort !== undefined) {
        const { GrpcTransport } = await import('./grpc.js');
        grpc = new GrpcTransport(context);
        try {
          await grpc.listen(grpcPort, host);
        } catch (error) {
          await new Promise((resolve) => http.close(resolve));
          throw error;
        }
      }
      return address;
    },
    get grpcPort() {
      return grpc?.port;
    },
    get address() {
      const address = http.address();
      return address === null || typeof address === 'string' ? undefined : address;
    },
    close() {
      return (closed ??= (async () => {
        closing = true;
        const stopped = new Promise<void>((resolve) => http.close(() => resolve()));
        const started = Date.now();
        await connections.shutdown('server-closing', closeGraceMs);
        ws.close();
        sse.close();
        await grpc?.close(Math.max(0, closeGraceMs - (Date.now() - started)));
        interest?.unsubscribe();
        history.close();
        // Requests under way finish (within what is left of the grace); then every connection goes, idle or not.
        await Promise.race([
          Promise.all([...answering].map((response) => new Promise((resolve) => response.once('close', resolve)))),
          new Promise((resolve) => setTimeout(resolve, Math.max(0, closeGraceMs - (Date.now() - started))).unref()),
        ]);
        http.closeAllConnections();
        await stopped;
      })());
    },
  };
}

/**
 * Without tokens, a browser's request from another site's page (its Origin
 * header not this server's) may not change anything, nor open a WebSocket:
 * else any page a user visits could write to a server on their machine. With
 * tokens, a browser never sends one by itself, so other origins are let in.
 */
function assertSameOrigin(request: IncomingMessage, auth: Auth | undefined, always = false): void {
  const origin = request.headers.origin;
  if (auth !== undefined || origin === undefined || (!always && (request.method === 'GET' || request.method === 'HEAD'))) return;
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    host = '';
  }
  if (host !== request.headers.host) throw new HttpError(403, 'HERALD_FORBIDDEN', `a request from another site's page (${origin.slice(0, 100)}) is refused by a server without tokens`);
}

function serverLimits(given: Partial<ServerLimits> | undefined): ServerLimits {
  assertOptions(given, 'options.limits');
  const limit = (name: keyof ServerLimits, fallback: number, min = 1): number => integerOption(given?.[name], `options.limits.${name}`, fallback, min);
  return {
    maxBodyBytes: limit('maxBodyBytes', 1024 * 1024),
    maxTransactionOps: limit('maxTransactionOps', 1000),
    maxConnections: limit('maxConnections', 10_000),
    maxSubscriptions: limit('maxSubscriptions', 128),
    subscribesPerSecond: limit('subscribesPerSecond', 100),
    maxFrameBytes: limit('maxFrameBytes', 64 * 1024, 64),
    maxBufferedBytes: limit('maxBufferedBytes', 1024 * 1024),
    maxHeldChanges: limit('maxHeldChanges', 10_000),
    maxNames: limit('maxNames', 256),
    history: limit('history', 10_000, 0),
    historyBytes: limit('historyBytes', 64 * 1024 * 1024, 0),
  };
}

function authOf(options: AuthOptions | undefined): Auth | undefined {
  if (options === undefined) return undefined;
  assertOptions(options, 'options.auth');
  const { secret, clockToleranceSeconds } = options;
  const bytes = typeof secret === 'string' ? Buffer.byteLength(secret) : secret instanceof Uint8Array ? secret.length : -1;
  // The message never shows the secret.
  if (bytes < 32) throw new InvalidArgumentError('HERALD_INVALID_OPTION', `\`options.auth.secret\` must be a string or Uint8Array of at least 32 bytes, got ${bytes < 0 ? typeof secret : `${bytes} bytes`}`);
  integerOption(clockToleranceSeconds, 'options.auth.clockToleranceSeconds', 30, 0, 3600);
  return new Auth(options);
}

/** Why the server is not ready (the hub closed, the store unreachable, the backplane not connected), or undefined. */
async function readiness(hub: ObserverManager, store: SessionStoreLike): Promise<string | undefined> {
  if (hub.closed) return 'the hub is closed';
  if (store.closed === true) return 'the store is closed';
  const state = hub.backplane?.state;
  if (state !== undefined && state !== 'connected') return `the backplane is ${state}`;
  try {
    await store.getSession('herald-readiness-probe');
    return undefined;
  } catch (error) {
    return `the store does not answer: ${(error as Error).message}`;
  }
}
