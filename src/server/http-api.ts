import type { IncomingMessage, ServerResponse } from 'node:http';
import type { JsonValue } from '../core/json.js';
import type { ObserverManager } from '../hub/observer-manager.js';
import { variableKey, type SessionInfo, type SessionStoreLike } from '../store/store.js';
import { authorize, type Grant } from './auth.js';
import type { ServerLog } from './connections.js';
import { HttpError, logFailure, toHttp } from './http-errors.js';
import { assertOpCount, getVariable, runTransaction, setVariable, type TransactionOp } from './operations.js';

/** Limits of the HTTP API. */
export interface HttpLimits {
  /** A request body longer than this is refused with 413 `HERALD_TOO_LARGE`. @default 1048576 (1 MiB) */
  readonly maxBodyBytes: number;
  /** Operations in one transaction request at most. @default 1000 */
  readonly maxTransactionOps: number;
}

type Params = readonly string[];
type Handler = (request: IncomingMessage, params: Params, limits: HttpLimits, grant: Grant) => Promise<Reply>;
/** What a route needs of a token: reading or writing the session of its path, or (create) what its handler checks. */
type Access = 'read' | 'write' | 'create';
interface Reply {
  readonly status: number;
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * The JSON API of DESIGN 9.1 under `/v1`, on a session store: sessions,
 * variables (with `If-Match` compare-and-set) and all-or-nothing
 * transactions. Every error is `{ error: { code, message } }` with its status.
 */
export class HttpApi {
  readonly #routes: readonly (readonly [method: string, path: RegExp, access: Access, handler: Handler])[];

  constructor(readonly hub: ObserverManager, readonly store: SessionStoreLike, readonly limits: HttpLimits, readonly log: ServerLog) {
    const segment = '([^/]+)';
    this.#routes = [
      ['POST', /^\/v1\/sessions$/, 'create', (request, _params, l, grant) => this.#createSession(request, l, grant)],
      ['GET', /^\/v1\/sessions$/, 'create', (_request, _params, _l, grant) => this.#listSessions(grant)],
      ['GET', new RegExp(`^/v1/sessions/${segment}/inspect$`), 'read', (_request, [id]) => this.#inspect(id!)],
      ['GET', new RegExp(`^/v1/sessions/${segment}$`), 'read', (_request, [id]) => this.#getSession(id!)],
      ['DELETE', new RegExp(`^/v1/sessions/${segment}$`), 'write', (_request, [id]) => this.#deleteSession(id!)],
      ['GET', new RegExp(`^/v1/sessions/${segment}/variables$`), 'read', (_request, [id]) => this.#list(id!)],
      ['GET', new RegExp(`^/v1/sessions/${segment}/variables/${segment}$`), 'read', (_request, [id, name]) => this.#get(id!, name!)],
      ['PUT', new RegExp(`^/v1/sessions/${segment}/variables/${segment}$`), 'write', (request, [id, name], l) => this.#put(request, id!, name!, l)],
      ['DELETE', new RegExp(`^/v1/sessions/${segment}/variables/${segment}$`), 'write', (_request, [id, name]) => this.#delete(id!, name!)],
      ['POST', new RegExp(`^/v1/sessions/${segment}/transaction$`), 'write', (request, [id], l) => this.#transaction(request, id!, l)],
    ];
  }

  /** Whether `path` is one of the API's: the server sends anything else elsewhere (or 404). */
  handles(path: string): boolean {
    return path === '/v1' || path.startsWith('/v1/');
  }

  /** Answers one request; never throws. */
  async handle(request: IncomingMessage, response: ServerResponse, path: string, grant: Grant): Promise<void> {
    let reply: Reply;
    try {
      reply = await this.#route(request, path, grant);
    } catch (error) {
      logFailure(this.log, error, { method: request.method, path });
      const { status, body } = toHttp(error);
      reply = { status, body };
    }
    send(response, reply);
  }

  async #route(request: IncomingMessage, path: string, grant: Grant): Promise<Reply> {
    let allowed: string[] | undefined;
    for (const [method, pattern, access, handler] of this.#routes) {
      const match = pattern.exec(path);
      if (match === null) continue;
      if (method !== request.method) {
        (allowed ??= []).push(method);
        continue;
      }
      const params = match.slice(1).map(decodePart);
      if (access !== 'create') authorize(grant, params[0], access === 'write');
      return handler(request, params, this.limits, grant);
    }
    if (allowed !== undefined) throw new HttpError(405, 'HERALD_METHOD_NOT_ALLOWED', `${request.method ?? '?'} ${path} is not allowed: use ${allowed.join(' or ')}`);
    throw new HttpError(404, 'HERALD_NOT_FOUND', `no route ${request.method ?? '?'} ${path}`);
  }

  async #createSession(request: IncomingMessage, limits: HttpLimits, grant: Grant): Promise<Reply> {
    const body = objectBody(await readJson(request, limits), 'the body');
    // Without an id the server makes one up, which only a token for every session may cover.
    authorize(grant, typeof body['id'] === 'string' ? body['id'] : undefined, true);
    const id = body['id'] === undefined ? globalThis.crypto.randomUUID() : body['id'];
    const options: { ttlMs?: number; meta?: JsonValue } = {};
    if (body['ttlMs'] !== undefined) options.ttlMs = body['ttlMs'] as number;
    if (body['meta'] !== undefined) options.meta = body['meta'] as JsonValue;
    const info = await this.store.createSession(id as string, options);
    return { status: 201, body: sessionJson(info), headers: { location: `/v1/sessions/${encodeURIComponent(info.id)}` } };
  }

  /** Every session: needs a token for every session ("*"). */
  async #listSessions(grant: Grant): Promise<Reply> {
    authorize(grant, undefined, false);
    return { status: 200, body: (await this.store.listSessions()).map(sessionJson) };
  }

  /** The observers of each of a session's variables, as the hub reports them (`hub.inspect`). */
  async #inspect(id: string): Promise<Reply> {
    const hub = this.hub;
    const entries = await this.store.list(id);
    const body = entries.filter((e) => e.value !== undefined).map((e) => {
      const inspection = hub.inspect(variableKey(id, e.name));
      return {
        name: e.name,
        key: inspection.key,
        observerCount: inspection.observerCount,
        observers: inspection.observers.map((o) => ({ id: o.id, label: o.label ?? null, pattern: o.pattern ?? null, ageMs: o.ageMs })),
      };
    });
    return { status: 200, body };
  }

  async #getSession(id: string): Promise<Reply> {
    const info = await this.store.getSession(id);
    if (info === undefined) throw new HttpError(404, 'HERALD_NO_SESSION', `no session ${JSON.stringify(id)}`);
    return { status: 200, body: sessionJson(info) };
  }

  async #deleteSession(id: string): Promise<Reply> {
    if (!(await this.store.deleteSession(id))) throw new HttpError(404, 'HERALD_NO_SESSION', `no session ${JSON.stringify(id)}`);
    return { status: 200, body: { deleted: true } };
  }

  async #list(id: string): Promise<Reply> {
    const entries = await this.store.list(id);
    return { status: 200, body: entries.map((e) => ({ name: e.name, value: e.value ?? null, version: e.version })) };
  }

  async #get(id: string, name: string): Promise<Reply> {
    const entry = await getVariable(this.store, id, name);
    return { status: 200, body: { name, value: entry.value, version: entry.version }, headers: { etag: `"${entry.version}"` } };
  }

  async #put(request: IncomingMessage, id: string, name: string, limits: HttpLimits): Promise<Reply> {
    const body = objectBody(await readJson(request, limits), 'the body');
    if (!('value' in body)) throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', 'the body must have a `value`');
    const meta = body['meta'] === undefined ? undefined : objectBody(body['meta'], '`meta`');
    const result = await setVariable(this.store, id, name, body['value'], meta, ifMatch(request.headers['if-match']));
    return { status: 200, body: { name, oldValue: result.oldValue ?? null, newValue: result.newValue, version: result.version }, headers: { etag: `"${result.version}"` } };
  }

  async #delete(id: string, name: string): Promise<Reply> {
    return { status: 200, body: { deleted: await this.store.delete(id, name) } };
  }

  async #transaction(request: IncomingMessage, id: string, limits: HttpLimits): Promise<Reply> {
    const body = objectBody(await readJson(request, limits), 'the body');
    const ops = body['ops'];
    if (!Array.isArray(ops)) throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', '`ops` must be a non-empty array');
    assertOpCount(ops.length, limits.maxTransactionOps);
    // Every op is checked before the transaction starts: a bad one changes nothing.
    const checked = ops.map((op: unknown, i): TransactionOp => {
      const entry = objectBody(op, `ops[${i}]`);
      if (typeof entry['name'] !== 'string') throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', `ops[${i}].name must be a string`);
      if (entry['op'] === 'set') {
        if (!('value' in entry)) throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', `ops[${i}] sets no \`value\``);
        return { op: 'set' as const, name: entry['name'], value: entry['value'] };
      }
      if (entry['op'] === 'delete') return { op: 'delete' as const, name: entry['name'] };
      throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', `ops[${i}].op must be "set" or "delete", got ${JSON.stringify(entry['op']) ?? 'nothing'}`);
    });
    const { txId, results } = await runTransaction(this.store, id, checked);
    return { status: 200, body: { txId, results: results.map((r) => (r.op === 'set' ? { ...r, oldValue: r.oldValue ?? null } : r)) } };
  }
}

function sessionJson(info: SessionInfo): Record<string, unknown> {
  return { id: info.id, createdAt: info.createdAt, expiresAt: info.expiresAt ?? null, meta: info.meta ?? null };
}

function send(response: ServerResponse, reply: Reply): void {
  const text = reply.body === undefined ? '' : JSON.stringify(reply.body);
  response.writeHead(reply.status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    // A body refused for its size is not read to its end: the connection closes once the answer is out.
    ...(reply.status === 413 ? { connection: 'close' } : {}),
    ...reply.headers,
  });
  response.end(text);
}

/** A path segment, percent-decoded; a malformed escape is a bad request. */
function decodePart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', `the path segment ${JSON.stringify(part.slice(0, 40))} is not valid percent-encoding`);
  }
}

/** `If-Match: "3"`, `3` or `"0"` (only if unset); absent → undefined. */
function ifMatch(header: string | undefined): number | undefined {
  if (header === undefined) return undefined;
  const match = /^\s*"?(\d{1,15})"?\s*$/.exec(header);
  if (match === null) throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', `If-Match must be a version such as "3", got ${JSON.stringify(header.slice(0, 40))}`);
  return Number(match[1]);
}

function objectBody(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', `${what} must be a JSON object`);
  }
  return value as Record<string, unknown>;
}

/** The request's JSON body, within `maxBodyBytes`: past it, 413 before the rest is read. */
async function readJson(request: IncomingMessage, limits: HttpLimits): Promise<unknown> {
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > limits.maxBodyBytes) throw tooLarge(limits);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limits.maxBodyBytes) throw tooLarge(limits);
    chunks.push(chunk);
  }
  if (size === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', 'the body is not valid JSON');
  }
}

function tooLarge(limits: HttpLimits): HttpError {
  return new HttpError(413, 'HERALD_TOO_LARGE', `the body is over the ${limits.maxBodyBytes} bytes a request may carry`);
}
