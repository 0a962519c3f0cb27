import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { EventSource } from 'eventsource';
import WebSocket from 'ws';
import { ObserverManager, SessionStore } from '../../src/index.js';
import { createServer, type HeraldServer, type ServerOptions } from '../../src/server.js';
import { within } from './deadline.js';

/** The proto the package ships. */
export const PROTO = fileURLToPath(new URL('../../proto/herald.proto', import.meta.url));

/** A server on a free loopback port, with its own hub and in-memory store (unless given), closed when the test ends. */
export async function startServer(t: TestContext, options: Partial<ServerOptions> = {}): Promise<{
  hub: ObserverManager; store: ServerOptions['store']; server: HeraldServer; base: string; wsUrl: string; grpcPort: number;
}> {
  const hub = options.hub ?? new ObserverManager();
  const store = options.store ?? new SessionStore({ hub });
  const server = createServer({ grpcPort: 0, ...options, hub, store });
  const { port } = await server.listen(0, '127.0.0.1');
  t.after(async () => {
    await server.close();
    await store.close();
    await hub.close();
  });
  return { hub, store, server, base: `http://127.0.0.1:${port}`, wsUrl: `ws://127.0.0.1:${port}/v1/ws`, grpcPort: server.grpcPort! };
}

/** Waits, with a deadline, for the first item of `items` from `from` on that `accepts`; resolves with its index. */
class Inbox<T> {
  readonly items: T[] = [];
  #waiters: (() => void)[] = [];

  push(item: T): void {
    this.items.push(item);
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** The first item from index `from` on that `accepts`, within `timeoutMs`. */
  async find(accepts: (item: T) => boolean, what: string, from = 0, timeoutMs = 10_000): Promise<{ item: T; index: number }> {
    const look = async (): Promise<{ item: T; index: number }> => {
      for (;;) {
        const index = this.items.findIndex((item, i) => i >= from && accepts(item));
        if (index !== -1) return { item: this.items[index]!, index };
        await new Promise<void>((resolve) => this.#waiters.push(resolve));
      }
    };
    return within(look(), timeoutMs, what);
  }
}

/** A server frame, as parsed JSON. */
export type Frame = Record<string, unknown> & { type: string };

/** A `ws` client on `/v1/ws`: every frame it receives, kept in order, and how it closed. */
export class WsWatcher {
  readonly inbox = new Inbox<Frame>();
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(readonly socket: WebSocket) {
    socket.on('message', (data) => this.inbox.push(JSON.parse((data as Buffer).toString('utf8')) as Frame));
    this.closed = new Promise((resolve) => socket.once('close', (code, reason) => resolve({ code, reason: String(reason) })));
  }

  static async open(t: TestContext, url: string, headers: Record<string, string> = {}): Promise<WsWatcher> {
    const socket = new WebSocket(url, 'herald.v1', { headers });
    const watcher = new WsWatcher(socket);
    t.after(() => socket.terminate());
    await within(new Promise<void>((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    }), 10_000, `a WebSocket to ${url}`);
    return watcher;
  }

  get frames(): Frame[] {
    return this.inbox.items;
  }

  send(frame: unknown): void {
    this.socket.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Subscribes and waits for `subscribed` (or the error frame, which it returns instead). */
  async subscribe(frame: Record<string, unknown>): Promise<Frame> {
    const from = this.frames.length;
    this.send({ op: 'subscribe', ...frame });
    const { item } = await this.next((f) => f['id'] === frame['id'] && (f.type === 'subscribed' || f.type === 'error'), `subscribed ${String(frame['id'])}`, from);
    return item;
  }

  async next(accepts: (frame: Frame) => boolean, what: string, from = 0, timeoutMs?: number): Promise<{ item: Frame; index: number }> {
    return this.inbox.find(accepts, what, from, timeoutMs);
  }

  /** Changes of subscription `id` received so far. */
  changes(id: string): Frame[] {
    return this.frames.filter((f) => f.type === 'change' && f['id'] === id);
  }
}

/** An SSE event as the `eventsource` client hands it over. */
export interface SseEvent {
  readonly type: string;
  readonly id: string;
  readonly data: Record<string, unknown>;
}

/** An `eventsource` client: every change, gap and end event, in order. */
export class SseWatcher {
  readonly inbox = new Inbox<SseEvent>();
  readonly errors: { code?: number | undefined; message?: string | undefined }[] = [];

  private constructor(readonly source: EventSource) {
    for (const type of ['change', 'gap', 'end']) {
      source.addEventListener(type, (event) => {
        this.inbox.push({ type, id: event.lastEventId, data: JSON.parse(event.data as string) as Record<string, unknown> });
        // The stream is over: no reconnection.
        if (type === 'end') source.close();
      });
    }
    source.addEventListener('error', (event) => void this.errors.push({ code: event.code, message: event.message }));
  }

  /** Opens `url`; `headers` go with every request (a token, a `Last-Event-ID`). Resolves once the stream is open. */
  static async open(t: TestContext, url: string, headers: Record<string, string> = {}): Promise<SseWatcher> {
    const source = new EventSource(url, {
      fetch: (input, init) => fetch(input, { ...init, headers: { ...init.headers, ...headers } }),
    });
    const watcher = new SseWatcher(source);
    t.after(() => source.close());
    await within(new Promise<void>((resolve, reject) => {
      source.addEventListener('open', () => resolve());
      source.addEventListener('error', (event) => {
        source.close();
        reject(new Error(`the stream was refused: ${event.code ?? '?'} ${event.message ?? ''}`));
      });
    }), 10_000, `an SSE stream from ${url}`);
    return watcher;
  }

  get events(): SseEvent[] {
    return this.inbox.items;
  }

  async next(accepts: (event: SseEvent) => boolean, what: string, from = 0, timeoutMs?: number): Promise<{ item: SseEvent; index: number }> {
    return this.inbox.find(accepts, what, from, timeoutMs);
  }
}

/** A JSON request to the server; resolves with the status and the parsed body. */
export async function call(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> /* eslint-disable-line @typescript-eslint/no-explicit-any -- a body of any shape, read by the test */ {
  const response = await fetch(`${base}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await response.text();
  return { status: response.status, body: text === '' ? undefined : JSON.parse(text) };
}

/** A gRPC message as grpc-js hands it over, of any shape, read by the tests. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Message = Record<string, any>;

/** The herald.v1.Herald client of grpc-js, loaded from the shipped proto. */
export function grpcClient(t: TestContext, port: number, token?: string, options: grpc.ChannelOptions = {}): GrpcHerald {
  const definition = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, defaults: true, oneofs: true });
  const Herald = ((grpc.loadPackageDefinition(definition)['herald'] as grpc.GrpcObject)['v1'] as grpc.GrpcObject)['Herald'] as grpc.ServiceClientConstructor;
  const client = new Herald(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), options) as unknown as grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  t.after(() => client.close());
  const metadata = (): grpc.Metadata => {
    const m = new grpc.Metadata();
    if (token !== undefined) m.set('authorization', `Bearer ${token}`);
    return m;
  };
  return {
    client,
    call: (method, request, options = {}) => within(new Promise((resolve, reject) => {
      client[method]!(request, metadata(), options, (error: grpc.ServiceError | null, reply: unknown) => (error === null ? resolve(reply as Message) : reject(error)));
    }), 10_000, `${method} to answer`),
    watch: (request) => new GrpcWatcher(client['Watch']!(request, metadata()) as grpc.ClientReadableStream<Message>),
  };
}

/** A grpc-js client of herald: `call` a unary method (rejecting with the ServiceError), or `watch`. */
export interface GrpcHerald {
  readonly client: grpc.Client;
  call(method: string, request: object, options?: grpc.CallOptions): Promise<Message>;
  watch(request: object): GrpcWatcher;
}

/** A Watch stream: its events in order, when it went live (initial metadata), and how it ended. */
export class GrpcWatcher {
  readonly inbox = new Inbox<Message>();
  readonly live: Promise<void>;
  readonly status: Promise<grpc.StatusObject>;

  constructor(readonly call: grpc.ClientReadableStream<Message>) {
    call.on('data', (event: Record<string, unknown>) => this.inbox.push(event));
    call.on('error', () => {});
    this.live = within(new Promise((resolve) => call.once('metadata', () => resolve())), 10_000, 'the watch to go live');
    // A watch that is refused never goes live: only a test that waits for it fails.
    this.live.catch(() => {});
    this.status = new Promise((resolve) => call.once('status', resolve));
  }

  get events(): Message[] {
    return this.inbox.items;
  }

  async next(accepts: (event: Message) => boolean, what: string, from = 0, timeoutMs?: number): Promise<{ item: Message; index: number }> {
    return this.inbox.find(accepts, what, from, timeoutMs);
  }
}
