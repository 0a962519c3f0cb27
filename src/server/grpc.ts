import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { JsonValue } from '../core/json.js';
import type { SessionInfo, VariableEntry } from '../store/store.js';
import { authorize, OPEN, type Grant } from './auth.js';
import type { ServerContext } from './connections.js';
import { HttpError, logFailure, toHttp } from './http-errors.js';
import { assertOpCount, getVariable, runTransaction, setVariable, type TransactionOp } from './operations.js';
import type { EndReason, WatchEvent, WatchSpec } from './watch.js';
import { WatchStream } from './watch-stream.js';

/** RST_STREAM's CANCEL code (RFC 9113). */
const NGHTTP2_CANCEL = 0x8;

/** Where the package keeps the proto: `proto/herald.proto`, beside `dist/` and `src/`. */
export const PROTO_PATH: string = fileURLToPath(new URL('../../proto/herald.proto', import.meta.url));

/** The gRPC status of each HTTP status the operations answer with (DESIGN 9.2). */
const STATUS_OF: Readonly<Record<number, grpc.status>> = {
  400: grpc.status.INVALID_ARGUMENT,
  401: grpc.status.UNAUTHENTICATED,
  403: grpc.status.PERMISSION_DENIED,
  404: grpc.status.NOT_FOUND,
  405: grpc.status.UNIMPLEMENTED,
  409: grpc.status.ALREADY_EXISTS,
  412: grpc.status.FAILED_PRECONDITION,
  413: grpc.status.RESOURCE_EXHAUSTED,
  429: grpc.status.RESOURCE_EXHAUSTED,
  503: grpc.status.UNAVAILABLE,
};

/** An error as a gRPC status, with the `HERALD_*` code in the trailing metadata key `herald-code`. */
function toStatus(error: unknown): Partial<grpc.StatusObject> {
  const { status, body } = toHttp(error);
  const metadata = new grpc.Metadata();
  metadata.set('herald-code', body.error.code);
  return { code: STATUS_OF[status] ?? grpc.status.INTERNAL, details: body.error.message, metadata };
}

// ---- the messages, as proto-loader hands them over (keepCase, longs as numbers) ----

interface SessionRef { session_id: string }
interface VariableRef { session_id: string; name: string }
interface SetRequest { session_id: string; name: string; value_json: string; expected_version?: number; meta_json?: string }
interface CreateSessionRequest { id: string; ttl_ms?: number; meta_json?: string }
interface TransactionRequest { session_id: string; ops: { set?: SetRequest; delete?: VariableRef; op?: string }[] }
interface WatchRequest { session_id: string; variable_names: string[]; include_current: boolean; cursor?: string }
interface GrpcVariable { name: string; value_json: string | undefined; version: number }

type Access = 'read' | 'write' | 'create';

/**
 * Watching and the store over gRPC (DESIGN 9.2): service `herald.v1.Herald`
 * of `proto/herald.proto`, on a port of its own (grpc-js serves HTTP/2 with
 * a server of its own). The same store, tokens, limits, cursors, gaps and
 * endings as the other transports.
 */
export class GrpcTransport {
  readonly #server: grpc.Server;
  readonly #last: FrameCache = { event: undefined, scope: '', frame: Buffer.alloc(0) };
  /** Serializes a WatchEvent message. */
  readonly #serializeEvent: (value: object) => Buffer;
  #port: number | undefined;

  constructor(readonly context: ServerContext) {
    const definition = protoLoader.loadSync(PROTO_PATH, { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
    const service = (grpc.loadPackageDefinition(definition)['herald'] as grpc.GrpcObject)['v1'] as grpc.GrpcObject;
    const herald = (service['Herald'] as grpc.ServiceClientConstructor).service;
    const watch = herald['Watch']!;
    this.#serializeEvent = watch.responseSerialize as (value: object) => Buffer;
    // Watch events are serialized by the transport, once for every stream of a change: they go out as they are.
    const services: grpc.ServiceDefinition = { ...herald, Watch: { ...watch, responseSerialize: (value: Buffer) => value } };
    const { limits, timers } = context;
    this.#server = new grpc.Server({
      'grpc.max_receive_message_length': limits.maxBodyBytes,
      'grpc.keepalive_time_ms': timers.pingIntervalMs,
      'grpc.keepalive_timeout_ms': timers.pingIntervalMs,
    });
    const store = context.store;
    this.#server.addService(services, {
      CreateSession: this.#unary<CreateSessionRequest>('create', (r) => r.id, async (request, grant) => {
        const id = request.id === '' ? globalThis.crypto.randomUUID() : request.id;
        authorize(grant, request.id === '' ? undefined : request.id, true);
        const options: { ttlMs?: number; meta?: JsonValue } = {};
        if (request.ttl_ms !== undefined) options.ttlMs = request.ttl_ms;
        if (request.meta_json !== undefined) options.meta = parseJson(request.meta_json, 'meta_json') as JsonValue;
        return sessionMessage(await store.createSession(id, options));
      }),
      GetSession: this.#unary<SessionRef>('read', (r) => r.session_id, async (request) => {
        const info = await store.getSession(request.session_id);
        if (info === undefined) throw new HttpError(404, 'HERALD_NO_SESSION', `no session ${JSON.stringify(request.session_id)}`);
        return sessionMessage(info);
      }),
      DeleteSession: this.#unary<SessionRef>('write', (r) => r.session_id, async (request) => {
        if (!(await store.deleteSession(request.session_id))) throw new HttpError(404, 'HERALD_NO_SESSION', `no session ${JSON.stringify(request.session_id)}`);
        return { deleted: true };
      }),
      Get: this.#unary<VariableRef>('read', (r) => r.session_id, async (request) => variableMessage(await getVariable(store, request.session_id, request.name))),
      List: this.#unary<SessionRef>('read', (r) => r.session_id, async (request) => ({ variables: (await store.list(request.session_id)).filter((e) => e.value !== undefined).map(variableMessage) })),
      Set: this.#unary<SetRequest>('write', (r) => r.session_id, async (request) => {
        const meta = request.meta_json === undefined ? undefined : objectJson(request.meta_json, 'meta_json');
        const result = await setVariable(store, request.session_id, request.name, parseJson(request.value_json, 'value_json'), meta, request.expected_version);
        return { old_value_json: jsonText(result.oldValue), new_value_json: JSON.stringify(result.newValue), version: result.version };
      }),
      Delete: this.#unary<VariableRef>('write', (r) => r.session_id, async (request) => ({ deleted: await store.delete(request.session_id, request.name) })),
      Transaction: this.#unary<TransactionRequest>('write', (r) => r.session_id, async (request) => {
        assertOpCount(request.ops.length, limits.maxTransactionOps);
        const ops = request.ops.map((op, i): TransactionOp => {
          // Both members of the oneof on the wire: refused rather than guessed at (protobufjs does not keep the last one, as proto3 wants).
          if (op.set !== undefined && op.set !== null && op.delete !== undefined && op.delete !== null) {
            throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', `ops[${i}] holds both a set and a delete`);
          }
          if (op.op === 'set' && op.set !== undefined && op.set !== null) {
            const { set } = op;
            if (set.expected_version !== undefined || set.meta_json !== undefined) {
              throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', `ops[${i}].set: expected_version and meta_json are not taken inside a transaction (use Set)`);
            }
            sameSession(set.session_id, request.session_id, i);
            return { op: 'set', name: set.name, value: parseJson(set.value_json, `ops[${i}].set.value_json`) };
          }
          if (op.op === 'delete' && op.delete !== undefined && op.delete !== null) {
            sameSession(op.delete.session_id, request.session_id, i);
            return { op: 'delete', name: op.delete.name };
          }
          throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', `ops[${i}] must be a set or a delete`);
        });
        return { tx_id: (await runTransaction(store, request.session_id, ops)).txId };
      }),
      Watch: (call: grpc.ServerWritableStream<WatchRequest, Buffer>) => void this.#watch(call),
    });
  }

  /** Starts serving on `port` (0: any free one); resolves with the port. */
  async listen(port: number, host: string): Promise<number> {
    const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    this.#port = await new Promise<number>((resolve, reject) => {
      this.#server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error)));
    });
    return this.#port;
  }

  get port(): number | undefined {
    return this.#port;
  }

  /** Ends every stream (already done by the server's shutdown of connections), then the server: what has not finished within `graceMs` is cut. */
  async close(graceMs: number): Promise<void> {
    if (this.#port === undefined) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#server.forceShutdown();
        resolve();
      }, graceMs);
      timer.unref();
      this.#server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** A unary handler: the token, its access to the request's session, the work, and errors as statuses. */
  #unary<Request>(access: Access, sessionOf: (request: Request) => string, work: (request: Request, grant: Grant) => Promise<object>): grpc.handleUnaryCall<Request, object> {
    return (call, callback) => {
      void (async () => {
        const grant = await this.#grant(call.metadata);
        if (access !== 'create') {
          const session = sessionOf(call.request);
          if (typeof session !== 'string' || session === '') throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', '`session_id` must be a non-empty string');
          authorize(grant, session, access === 'write');
        }
        return work(call.request, grant);
      })().then(
        (reply) => callback(null, reply),
        (error: unknown) => {
          logFailure(this.context.log, error, { transport: 'grpc', path: call.getPath() });
          callback(toStatus(error));
        },
      );
    };
  }

  async #grant(metadata: grpc.Metadata): Promise<Grant> {
    const auth = this.context.auth;
    if (auth === undefined) return OPEN;
    const [header] = metadata.get('authorization');
    if (header === undefined) throw new HttpError(401, 'HERALD_UNAUTHORIZED', 'a token is needed: send the metadata authorization: Bearer <token>');
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (match === null) throw new HttpError(401, 'HERALD_UNAUTHORIZED', 'the authorization metadata must be "Bearer <token>"');
    return auth.verify(match[1]!);
  }

  async #watch(call: grpc.ServerWritableStream<WatchRequest, Buffer>): Promise<void> {
    let stream: GrpcStream;
    let spec: WatchSpec;
    let grant: Grant;
    try {
      grant = await this.#grant(call.metadata);
      spec = watchSpec(call.request, this.context.limits.maxNames);
      authorize(grant, spec.session, false);
      if (call.cancelled) return;
      this.context.connections.assertRoom();
      stream = new GrpcStream(this.context, call, this.#last, this.#serializeEvent);
    } catch (error) {
      logFailure(this.context.log, error, { transport: 'grpc', path: call.getPath() });
      return void call.emit('error', toStatus(error));
    }
    try {
      await stream.start(spec, grant);
    } catch (error) {
      stream.refused();
      logFailure(this.context.log, error, { transport: 'grpc', session: spec.session });
      call.emit('error', toStatus(error));
    }
  }
}

/** One serialized event, kept while the same event goes to one stream after another with the same scope. */
interface FrameCache {
  event: WatchEvent | undefined;
  scope: string;
  frame: Buffer;
}

/** One Watch stream and its watch. */
class GrpcStream extends WatchStream {
  /** Bytes handed to grpc-js and not yet taken by the HTTP/2 stream. */
  #pending = 0;

  constructor(
    context: ServerContext, readonly call: grpc.ServerWritableStream<WatchRequest, Buffer>,
    readonly last: FrameCache, readonly serialize: (value: object) => Buffer,
  ) {
    super('grpc', context);
    // However it ended (an end of ours, a cancel, a lost connection), the stream leaves the server's count.
    call.once('cancelled', () => this.gone());
    call.once('close', () => this.gone());
  }

  /**
   * Resets the HTTP/2 stream. grpc-js has no public way to drop a server
   * stream whose client does not read (its `end` waits for the writes), so
   * this reaches its HTTP/2 stream; failing that, the call is ended with a
   * status, which at least stops it once the client reads.
   */
  destroy(): void {
    const stream = (this.call as unknown as { call?: { stream?: { closed?: boolean; close?: (code: number) => void } } }).call?.stream;
    if (typeof stream?.close === 'function') {
      if (stream.closed !== true) stream.close(NGHTTP2_CANCEL);
    } else {
      this.call.emit('error', { code: grpc.status.CANCELLED, details: 'cut off' });
    }
  }

  protected opened(): void {
    // Headers once the watch is live: nothing committed after them is missed.
    this.call.sendMetadata(new grpc.Metadata());
  }

  protected buffered(): number {
    return this.#pending;
  }

  protected send(event: WatchEvent, scope: string): void {
    const last = this.last;
    if (last.event !== event || last.scope !== scope) {
      last.event = event;
      last.scope = scope;
      last.frame = this.serialize(eventMessage(event, scope));
    }
    this.#write(last.frame);
  }

  protected finish(reason: EndReason): void {
    this.cutOffLater();
    this.#write(this.serialize({ cursor: '', end: { reason } }));
    if (reason === 'server-closing') {
      const metadata = new grpc.Metadata();
      metadata.set('herald-code', 'HERALD_CLOSING');
      this.call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'server-closing', metadata });
    } else {
      this.call.end();
    }
  }

  #write(frame: Buffer): void {
    this.#pending += frame.length;
    this.call.write(frame, () => void (this.#pending -= frame.length));
  }
}

/** The watch a request asks for; INVALID_ARGUMENT naming the field that is wrong. */
function watchSpec(request: WatchRequest, maxNames: number): WatchSpec {
  if (typeof request.session_id !== 'string' || request.session_id === '') throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', '`session_id` must be a non-empty string');
  const names = request.variable_names;
  if (names.length > maxNames) throw new HttpError(429, 'HERALD_LIMIT', `a watch may name ${maxNames} variables at most, got ${names.length}: watch the whole session instead`);
  return {
    session: request.session_id,
    names: names.length === 0 ? undefined : [...new Set(names)],
    includeCurrent: request.include_current,
    cursor: request.cursor === undefined || request.cursor === '' ? undefined : request.cursor,
  };
}

/** A watch event as the proto's WatchEvent. */
function eventMessage(event: WatchEvent, scope: string): object {
  const cursor = `${scope}.${event.position}`;
  if (event.type === 'gap') return { cursor, gap: { snapshot: event.snapshot.map(variableMessage) } };
  const f = event.fields;
  return {
    cursor,
    change: {
      key: f.key, session_id: f.session, name: f.name, old_value_json: f.oldJson, new_value_json: f.newJson,
      version: f.version, at: f.at, meta_json: f.metaJson,
    },
  };
}

/** An op's own session_id, when given, must be the transaction's: an op never reaches another session. */
function sameSession(given: string, session: string, i: number): void {
  if (given !== '' && given !== session) {
    throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', `ops[${i}] names session ${JSON.stringify(given)}, not the transaction's ${JSON.stringify(session)}`);
  }
}

function sessionMessage(info: SessionInfo): object {
  return { id: info.id, created_at: info.createdAt, expires_at: info.expiresAt, meta_json: JSON.stringify(info.meta ?? null) };
}

function variableMessage(entry: Pick<VariableEntry, 'name' | 'value' | 'version'>): GrpcVariable {
  return { name: entry.name, value_json: jsonText(entry.value), version: entry.version };
}

function jsonText(value: JsonValue | undefined): string | undefined {
  return value === undefined ? undefined : JSON.stringify(value);
}

function parseJson(text: string, field: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', `\`${field}\` must be JSON text, got ${JSON.stringify(text.slice(0, 40))}`);
  }
}

function objectJson(text: string, field: string): Record<string, unknown> {
  const value = parseJson(text, field);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', `\`${field}\` must be a JSON object`);
  return value as Record<string, unknown>;
}
