import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { assertOptions, integerOption } from '../core/assert.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { ObserverManager } from '../hub/observer-manager.js';
import type { SessionStoreLike } from '../store/store.js';
import { HttpApi, type HttpLimits } from './http-api.js';
import { HttpError, toHttp } from './http-errors.js';
import { prometheusText } from './metrics.js';

/** Options of {@link createServer}. */
export interface ServerOptions {
  readonly hub: ObserverManager;
  readonly store: SessionStoreLike;
  readonly limits?: Partial<HttpLimits>;
}

/** A herald server: the store's HTTP API (DESIGN 9.1) on one HTTP server. */
export interface HeraldServer {
  /** Starts listening; resolves with the address once it does. */
  listen(port?: number, host?: string): Promise<AddressInfo>;
  /** Where it listens, once it does. */
  readonly address: AddressInfo | undefined;
  /** Stops accepting, ends open connections, and resolves once the server is closed. */
  close(): Promise<void>;
}

/**
 * A server for a program that embeds herald: the HTTP API of a hub's store.
 *
 * @example
 * ```ts
 * import { ObserverManager, SessionStore } from 'herald';
 * import { createServer } from 'herald/server';
 * const hub = new ObserverManager();
 * const server = createServer({ hub, store: new SessionStore({ hub }) });
 * const { port } = await server.listen(7070, '127.0.0.1');
 * ```
 */
export function createServer(options: ServerOptions): HeraldServer {
  assertOptions(options, 'options');
  if (typeof options.hub?.notify !== 'function') throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.hub', 'an ObserverManager', options.hub);
  if (typeof options.store?.transaction !== 'function') throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.store', 'a session store', options.store);
  assertOptions(options.limits, 'options.limits');
  const limits: HttpLimits = {
    maxBodyBytes: integerOption(options.limits?.maxBodyBytes, 'options.limits.maxBodyBytes', 1024 * 1024, 1),
    maxTransactionOps: integerOption(options.limits?.maxTransactionOps, 'options.limits.maxTransactionOps', 1000, 1),
  };
  const api = new HttpApi(options.store, limits);
  let closing = false;
  const http: HttpServer = createHttpServer((request: IncomingMessage, response: ServerResponse) => {
    const path = new URL(request.url ?? '/', 'http://herald').pathname;
    if (closing) return reply(response, new HttpError(503, 'HERALD_CLOSING', 'the server is closing'));
    if (path === '/healthz') return void response.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    if (path === '/readyz') return void readiness(options.hub, options.store).then((problem) => {
      response.writeHead(problem === undefined ? 200 : 503, { 'content-type': 'text/plain' }).end(problem === undefined ? 'ready\n' : `not ready: ${problem}\n`);
    });
    if (path === '/metrics') {
      return void response.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(prometheusText(options.hub.getStats()));
    }
    if (api.handles(path)) return void api.handle(request, response, path);
    reply(response, new HttpError(404, 'HERALD_NOT_FOUND', `no route ${request.method ?? '?'} ${path}`));
  });
  return {
    listen(port = 7070, host = '127.0.0.1') {
      return new Promise((resolve, reject) => {
        http.once('error', reject);
        http.listen(port, host, () => {
          http.off('error', reject);
          resolve(http.address() as AddressInfo);
        });
      });
    },
    get address() {
      const address = http.address();
      return address === null || typeof address === 'string' ? undefined : address;
    },
    close() {
      closing = true;
      return new Promise((resolve) => {
        http.close(() => resolve());
        http.closeIdleConnections();
      });
    },
  };
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

function reply(response: ServerResponse, error: HttpError): void {
  const { status, body } = toHttp(error);
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) }).end(text);
}
