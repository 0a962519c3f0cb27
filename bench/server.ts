/**
 * Watching over the network, on 127.0.0.1: one `set` of a variable that
 * thousands of clients watch (10 000 by default), through `herald/server`
 * over WebSocket and over SSE, beside a bare `ws` server broadcasting the same
 * frame to the same number of clients (the floor) and socket.io broadcasting
 * it to a room (the peer; websocket transport only).
 *
 * A second scenario (`serverBench('grpc', …)`, a table of its own): one set →
 * thousands of server-streaming `Watch` calls of proto/herald.proto (5 000 by
 * default), herald's gRPC transport (`createServer({ grpcPort: 0 })`) beside
 * a bare grpc-js server implementing the same method (the floor: the same
 * WatchEvent fields serialized once per set, its bytes written to every
 * stream through a passthrough serializer, as src/server/grpc.ts does).
 * Clients are grpc-js channels, `streamsPerConnection` streams on each (a
 * local subchannel pool per channel, so each is its own HTTP/2 connection),
 * the same for both. Its throughput window is paced (at most GRPC_IN_FLIGHT
 * sets on their way): see there.
 *
 * Processes, the same arrangement for every contender: each server runs in a
 * child process of its own (so that the heap and RSS it grows per connection
 * are its own, not the clients'), and its clients are spread over
 * `clientProcesses` child processes of their own. This process only sends
 * commands and collects figures over IPC. All contenders stay connected for
 * the whole run, so that their rounds can be interleaved (idle sockets cost
 * no CPU: herald's pings and SSE heartbeats and socket.io's pings are set to
 * 5 minutes, longer than the run, for all of them alike).
 *
 * Where a set starts: in the server's process, at the command of this one,
 * `store.set(session, name, value)` for herald (the in-memory store, the hub,
 * the server's history and every watcher's frame), one `ws.send` per client
 * of the same JSON text for the floor, `io.to(room).emit` for socket.io. Not
 * a `PUT` over HTTP: that would add a request's parsing and a round trip that
 * the floor and socket.io have no counterpart for (they have no API that sets
 * a value), and the client issuing it would share the CPUs with the watchers.
 * Each is timed from just before that call.
 *
 * Clock: `process.hrtime` reads CLOCK_MONOTONIC, one clock for every process
 * of the machine, so a set's time taken in the server's process and a
 * receipt's taken in a client's are comparable. A receipt is the moment the
 * client has parsed the frame (JSON.parse of a WebSocket message or of an
 * SSE `data:` line; socket.io-client's own parsing, up to its listener).
 *
 * Figures, per contender (medians of the rounds; each round runs every
 * contender, in shuffled order):
 * - latency p50 and p99: every watcher's receipt time of `latencySets` sets,
 *   issued one at a time (the next once the last watcher has the previous);
 * - last watcher: the time from the set until the last watcher has it
 *   (median over the round's sets);
 * - sets per second: sets issued back to back (each one's fan-out done,
 *   then one event-loop turn) for `windowMs`; the sets whose change reached
 *   every watcher, divided by the time from the first set to the moment the
 *   last of them reached its last watcher;
 * - heap and RSS per connection: the server process's growth (after a full
 *   GC) from 10 % of the watchers connected to all of them, divided by the
 *   connections added, so that fixed costs (JIT code, lazily made tables) are
 *   left out. Measured once per run, before any set.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { setImmediate as nextTask, setTimeout as sleep } from 'node:timers/promises';
import type { Socket as SocketIoClientSocket } from 'socket.io-client';
import { shuffle } from './shuffle.js';
// Each process loads only what its role needs (the modules below are imported where used): children start faster.

// ---- shared by both sides ----

/** The contenders of the WebSocket / SSE scenario, by the name their table row has. */
export const SERVER_CONTENDERS = {
  'herald-ws': 'herald (WebSocket)',
  'herald-sse': 'herald (SSE)',
  'floor': 'floor: bare ws broadcast',
  'socket.io': 'socket.io room broadcast',
} as const;
/** The contenders of the gRPC scenario: server-streaming `Watch` of proto/herald.proto. */
export const GRPC_CONTENDERS = {
  'herald-grpc': 'herald (gRPC)',
  'grpc-floor': 'floor: bare grpc-js, the same bytes to every stream',
} as const;
type Kind = keyof typeof SERVER_CONTENDERS | keyof typeof GRPC_CONTENDERS;
const CONTENDER_NAMES: Record<Kind, string> = { ...SERVER_CONTENDERS, ...GRPC_CONTENDERS };
/** Which scenario: herald's WebSocket and SSE beside ws and socket.io, or herald's gRPC beside a bare grpc-js server. */
export type ServerScenario = 'ws' | 'grpc';
const SCENARIO_KINDS: Record<ServerScenario, Kind[]> = {
  ws: Object.keys(SERVER_CONTENDERS) as Kind[],
  grpc: Object.keys(GRPC_CONTENDERS) as Kind[],
};
const isGrpc = (kind: Kind): kind is keyof typeof GRPC_CONTENDERS => kind === 'herald-grpc' || kind === 'grpc-floor';

/** What the figures of one contender are. */
export interface ServerFigures {
  /** Watchers connected and subscribed (the requested count, unless a limit or a failure held it lower). */
  readonly watchers: number;
  /** Set → a watcher has parsed the frame, in microseconds. */
  readonly p50Us: number;
  readonly p99Us: number;
  /** Set → the last watcher has parsed it, in milliseconds. */
  readonly lastMs: number;
  /** Sets per second that reached every watcher, issued back to back. */
  readonly setsPerSecond: number;
  /** Server process heap and RSS growth per connection, in bytes. */
  readonly heapPerConnection: number;
  readonly rssPerConnection: number;
  /** Bytes of one change's frame (the WebSocket message, the SSE event, socket.io's packet text). */
  readonly frameBytes: number;
  /** Seconds to connect and subscribe every watcher. */
  readonly connectSeconds: number;
}

export interface ServerSettings {
  readonly watchers: number;
  readonly clientProcesses: number;
  readonly latencySets: number;
  readonly windowMs: number;
  readonly rounds: number;
  /** The gRPC scenario (absent from files written before it existed); latencySets, windowMs, rounds and clientProcesses as above. */
  readonly grpc?: {
    /** Concurrent Watch streams, one variable each. */
    readonly streams: number;
    /** Streams per HTTP/2 connection (a client channel of its own for each connection). */
    readonly streamsPerConnection: number;
  };
}

const SESSION = 's';
const NAME = 'v';
/** The value set: its seq (how a client tells the sets apart) and padding, about 100 bytes in all. */
const PAD = 'x'.repeat(80);
const valueOf = (seq: number): { seq: number; pad: string } => ({ seq, pad: PAD });
const LONG_TIMER_MS = 5 * 60_000;

const now = (): number => Number(process.hrtime.bigint());

type Message = { op: string; rid?: number | undefined } & Record<string, unknown>;

function send(message: Message): void {
  process.send!(message);
}

/** Replies to requests (`rid`) arriving over IPC with what `handle` returns. */
function serve(handle: (message: Message) => Promise<Record<string, unknown>> | Record<string, unknown>): void {
  process.on('message', (message: Message) => {
    void (async () => {
      try {
        const reply = await handle(message);
        send({ op: 'reply', rid: message.rid, ...reply });
      } catch (error) {
        send({ op: 'reply', rid: message.rid, error: (error as Error).stack ?? String(error) });
      }
    })();
  });
  // The bench is gone (finished or killed): so is this process, and with it every socket it holds.
  process.on('disconnect', () => process.exit(0));
}

// ---- the server process ----

interface ServerSide {
  readonly port: number;
  /** Issues set `seq`; what it returns is settled once the set is done with (herald: the store's promise). */
  set(seq: number): unknown;
  /** Watchers registered at the server. */
  count(): number;
  /** socket.io's packet text, as the clients cannot see it. */
  frameBytes?(seq: number): number;
}

/** The same members as herald's change event, so that every contender sends the same bytes, once encoded for all. */
function peerFrame(): (seq: number) => Record<string, unknown> {
  let previous: unknown;
  return (seq) => {
    const value = valueOf(seq);
    const frame = {
      type: 'change', id: 'w1', cursor: `bench0.0.${seq + 2}`, key: `session/${SESSION}/${NAME}`, session: SESSION, name: NAME,
      oldValue: previous, newValue: value, version: seq + 2, at: Date.now(), meta: {},
    };
    previous = value;
    return frame;
  };
}

const PROTO = fileURLToPath(new URL('../proto/herald.proto', import.meta.url));

/** grpc-js and the `Watch` method of proto/herald.proto, loaded as src/server/grpc.ts loads it (keepCase, longs as numbers, oneofs). */
async function loadWatch(): Promise<{ grpc: typeof import('@grpc/grpc-js'); watch: import('@grpc/grpc-js').MethodDefinition<object, object> }> {
  const grpc = await import('@grpc/grpc-js');
  const protoLoader = await import('@grpc/proto-loader');
  const definition = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
  const v1 = (grpc.loadPackageDefinition(definition)['herald'] as import('@grpc/grpc-js').GrpcObject)['v1'] as import('@grpc/grpc-js').GrpcObject;
  const watch = (v1['Herald'] as import('@grpc/grpc-js').ServiceClientConstructor).service['Watch']!;
  return { grpc, watch };
}

/** The scope part of the floor's cursors: as long as herald's (`<12 characters>.<8 characters>`), so that both send messages of the same size. */
const FLOOR_SCOPE = 'benchfloor00.floor000';

/**
 * herald's WatchEvent of a change, for the gRPC floor: the same fields, the
 * same sizes (the version counts this server's sets, from 1 for the first
 * value, as herald's store counts them; herald's cursor ends with it).
 */
function peerEvent(): (seq: number) => object {
  let previous = JSON.stringify(valueOf(-1));
  let version = 1;
  return (seq) => {
    const json = JSON.stringify(valueOf(seq));
    version++;
    const event = {
      cursor: `${FLOOR_SCOPE}.0.${version}`,
      change: {
        key: `session/${SESSION}/${NAME}`, session_id: SESSION, name: NAME, old_value_json: previous, new_value_json: json,
        version, at: Date.now(), meta_json: '{}',
      },
    };
    previous = json;
    return event;
  };
}

async function listen(server: http.Server): Promise<number> {
  server.listen(0, '127.0.0.1', 2048);
  await once(server, 'listening');
  return (server.address() as { port: number }).port;
}

/**
 * herald's server as `herald serve` makes it (src/cli/serve.ts): an in-memory
 * store, one session with the watched variable; its pings and heartbeats at
 * 5 minutes, longer than the run. With `grpc`, its gRPC port is the one watched.
 */
async function heraldServer(grpc: boolean): Promise<ServerSide> {
  const { ObserverManager, SessionStore } = await import('../src/index.js');
  const { createServer } = await import('../src/server.js');
  const hub = new ObserverManager();
  const store = new SessionStore({ hub });
  await store.createSession(SESSION);
  await store.set(SESSION, NAME, valueOf(-1));
  const server = createServer({
    hub, store, ...(grpc ? { grpcPort: 0 } : {}),
    timers: { heartbeatMs: LONG_TIMER_MS, pingIntervalMs: LONG_TIMER_MS }, limits: { maxConnections: 1_000_000 },
  });
  const { port } = await server.listen(0, '127.0.0.1');
  const key = `session/${SESSION}/${NAME}`;
  return { port: grpc ? server.grpcPort! : port, set: (seq) => store.set(SESSION, NAME, valueOf(seq)), count: () => hub.observerCount(key) };
}

async function startServer(kind: Kind): Promise<ServerSide> {
  if (kind === 'herald-grpc') return heraldServer(true);
  if (kind === 'grpc-floor') {
    const { grpc, watch } = await loadWatch();
    const serialize = watch.responseSerialize;
    const streams = new Set<import('@grpc/grpc-js').ServerWritableStream<object, Buffer>>();
    // The same server options as herald's (src/server/grpc.ts), keepalive at 5 minutes as there; no max_concurrent_streams in either.
    const server = new grpc.Server({ 'grpc.keepalive_time_ms': LONG_TIMER_MS, 'grpc.keepalive_timeout_ms': LONG_TIMER_MS });
    // Buffers go out as they are: the event is serialized once per set, for every stream (as herald does).
    server.addService({ Watch: { ...watch, responseSerialize: (value: Buffer) => value } }, {
      Watch: (call: import('@grpc/grpc-js').ServerWritableStream<object, Buffer>) => {
        streams.add(call);
        const gone = (): void => void streams.delete(call);
        call.once('cancelled', gone);
        call.once('close', gone);
        // Headers once registered, as herald sends them once the watch is live.
        call.sendMetadata(new grpc.Metadata());
      },
    });
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error)));
    });
    const eventOf = peerEvent();
    return {
      port,
      set: (seq) => {
        const bytes = serialize(eventOf(seq));
        for (const call of streams) call.write(bytes);
      },
      count: () => streams.size,
    };
  }
  if (kind === 'herald-ws' || kind === 'herald-sse') return heraldServer(false);
  const httpServer = http.createServer((_request, response) => response.writeHead(404).end());
  const frameOf = peerFrame();
  if (kind === 'floor') {
    const { WebSocketServer } = await import('ws');
    const wss = new WebSocketServer({ server: httpServer, perMessageDeflate: false });
    const port = await listen(httpServer);
    return {
      port,
      set: (seq) => {
        // The least a broadcast can do: the frame encoded once, its bytes handed to every socket.
        const data = Buffer.from(JSON.stringify(frameOf(seq)));
        for (const client of wss.clients) client.send(data, { binary: false });
      },
      count: () => wss.clients.size,
    };
  }
  const { Server: SocketIoServer } = await import('socket.io');
  const io = new SocketIoServer(httpServer, {
    transports: ['websocket'], serveClient: false, perMessageDeflate: false, pingInterval: LONG_TIMER_MS, pingTimeout: LONG_TIMER_MS,
  });
  io.on('connection', (socket) => {
    void socket.join('room');
    socket.emit('joined');
  });
  const port = await listen(httpServer);
  let last: Record<string, unknown> | undefined;
  return {
    port,
    set: (seq) => io.to('room').emit('change', (last = frameOf(seq))),
    count: () => io.sockets.adapter.rooms.get('room')?.size ?? 0,
    // Engine.io's message packet: "4" (message), then socket.io's "2" (event) and the JSON array.
    frameBytes: () => 2 + Buffer.byteLength(JSON.stringify(['change', last])),
  };
}

async function serverProcess(kind: Kind): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc!;
  const side = await startServer(kind);
  serve(async (message) => {
    switch (message.op) {
      case 'set': {
        const t0 = now();
        void side.set(message['seq'] as number);
        return { t0 };
      }
      case 'flood': {
        // Back to back: each set's fan-out is done (herald: its promise and the hub's microtasks), then one turn of the event loop for I/O.
        const first = message['from'] as number;
        let seq = first;
        const t0 = now();
        const end = t0 + (message['durationMs'] as number) * 1e6;
        while (now() < end) {
          await side.set(seq++);
          await nextTask();
        }
        return { t0, first, last: seq - 1 };
      }
      case 'memory': {
        for (let i = 0; i < 3; i++) {
          await nextTask();
          gc();
        }
        const { heapUsed, rss } = process.memoryUsage();
        return { heapUsed, rss, count: side.count() };
      }
      case 'count':
        return { count: side.count(), frameBytes: side.frameBytes?.(0) ?? 0 };
      default:
        throw new Error(`unknown op ${message.op}`);
    }
  });
  send({ op: 'ready', port: side.port });
}

// ---- a client process ----

interface Receipts {
  readonly times: Float64Array;
  count: number;
  last: number;
}

/** The gRPC client side: a Watch client constructor whose deserializer notes each message's size (in `bytes`, read right after). */
async function grpcClientSide(): Promise<{ grpc: typeof import('@grpc/grpc-js'); Client: import('@grpc/grpc-js').ServiceClientConstructor; bytes: number }> {
  const { grpc, watch } = await loadWatch();
  const side = { grpc, Client: undefined as unknown as import('@grpc/grpc-js').ServiceClientConstructor, bytes: 0 };
  const deserialize = watch.responseDeserialize;
  side.Client = grpc.makeGenericClientConstructor({
    Watch: {
      ...watch,
      responseDeserialize: (bytes: Buffer) => {
        side.bytes = bytes.length;
        return deserialize(bytes);
      },
    },
  }, 'Herald');
  return side;
}

type WatchCall = import('@grpc/grpc-js').ClientReadableStream<{ change?: { new_value_json?: string } | null }>;

async function clientProcess(kind: Kind): Promise<void> {
  const { WebSocket } = await import('ws');
  const { io: socketIoClient } = kind === 'socket.io' ? await import('socket.io-client') : { io: undefined };
  const grpcSide = isGrpc(kind) ? await grpcClientSide() : undefined;
  /** gRPC: the channels, each its own HTTP/2 connection, watcher `index` on channel `index / perConnection`. */
  const channels: import('@grpc/grpc-js').Client[] = [];
  let perConnection = 1;
  const closers: (() => void)[] = [];
  let expected = Infinity;
  let frameBytes = 0;
  let lost = 0;
  let firstLoss: string | undefined;
  const receipts = new Map<number, Receipts>();

  const receipt = (index: number, seq: number, bytes: number): void => {
    const at = now();
    let entry = receipts.get(seq);
    if (entry === undefined) receipts.set(seq, (entry = { times: new Float64Array(closers.length), count: 0, last: 0 }));
    if (index >= entry.times.length || entry.times[index] !== 0) return;
    entry.times[index] = at;
    entry.last = Math.max(entry.last, at);
    if (bytes > 0) frameBytes = bytes;
    if (++entry.count === expected) send({ op: 'done', seq, last: entry.last });
  };
  const gone = (why: string): void => {
    if (expected === Infinity) return; // while connecting, a failure is the connect's
    lost++;
    firstLoss ??= why;
    send({ op: 'lost', why });
  };

  /** Opens watcher number `index`; resolves once it is subscribed (herald), open (floor), live (SSE) or in the room (socket.io). */
  const open = (url: string, index: number, timeoutMs: number): Promise<void> => new Promise<void>((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => fail(new Error(`not ready within ${timeoutMs} ms`)), timeoutMs);
    const ok = (): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve();
    };
    const fail = (error: Error): void => {
      if (settled) return gone(error.message);
      settled = true;
      clearTimeout(timer);
      closers[index]!();
      reject(error);
    };
    if (grpcSide !== undefined) {
      // A local subchannel pool per channel: a connection of its own (grpc-js shares one per target and options otherwise).
      const channel = (channels[Math.floor(index / perConnection)] ??= new grpcSide.Client(url, grpcSide.grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
      const call = (channel as unknown as { Watch(request: object): WatchCall }).Watch({ session_id: SESSION, variable_names: [NAME], include_current: false });
      closers[index] = () => call.cancel();
      call.on('metadata', ok); // sent once the watch is live (herald) or registered (the floor)
      call.on('data', (event: { change?: { new_value_json?: string } | null }) => {
        const json = event.change?.new_value_json;
        if (json === undefined) return fail(new Error(`unexpected event ${JSON.stringify(event).slice(0, 200)}`));
        receipt(index, (JSON.parse(json) as { seq: number }).seq, grpcSide.bytes);
      });
      call.on('error', (error: Error) => fail(error));
      call.on('end', () => fail(new Error('the stream ended')));
    } else if (kind === 'herald-ws' || kind === 'floor') {
      const ws = new WebSocket(url, kind === 'herald-ws' ? 'herald.v1' : [], { perMessageDeflate: false });
      closers[index] = () => ws.terminate();
      ws.on('open', () => {
        if (kind === 'floor') return ok();
        ws.send(JSON.stringify({ op: 'subscribe', id: 'w1', session: SESSION, names: [NAME] }));
      });
      ws.on('message', (data: Buffer) => {
        const frame = JSON.parse(data.toString('utf8'));
        if (frame.type === 'change') receipt(index, frame.newValue.seq, data.length);
        else if (frame.type === 'subscribed') ok();
        else fail(new Error(`unexpected frame ${data.toString('utf8').slice(0, 200)}`));
      });
      ws.on('error', (error) => fail(error));
      ws.on('close', (code, reason) => fail(new Error(`closed ${code} ${reason.toString()}`)));
    } else if (kind === 'herald-sse') {
      const request = http.get({ host: '127.0.0.1', port: Number(new URL(url).port), path: `/v1/sessions/${SESSION}/watch?names=${NAME}`, agent: false, headers: { accept: 'text/event-stream' } });
      closers[index] = () => request.destroy();
      request.on('error', (error) => fail(error));
      request.on('response', (response) => {
        if (response.statusCode !== 200) return fail(new Error(`status ${response.statusCode}`));
        response.setEncoding('utf8');
        let buffer = '';
        response.on('data', (chunk: string) => {
          buffer += chunk;
          let end: number;
          while ((end = buffer.indexOf('\n\n')) !== -1) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            if (block.startsWith(':')) {
              ok(); // ": live", the first bytes: the watch is registered
              continue;
            }
            const data = block.indexOf('\ndata: ');
            if (!block.includes('event: change') || data === -1) continue;
            const frame = JSON.parse(block.slice(data + 7));
            receipt(index, frame.newValue.seq, block.length + 2);
          }
        });
        response.on('close', () => fail(new Error('the stream closed')));
      });
    } else {
      const socket: SocketIoClientSocket = socketIoClient!(url, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: timeoutMs });
      closers[index] = () => socket.disconnect();
      socket.on('joined', ok);
      socket.on('change', (frame: { newValue: { seq: number } }) => receipt(index, frame.newValue.seq, 0));
      socket.on('connect_error', (error) => fail(error));
      socket.on('disconnect', (reason) => fail(new Error(`disconnected: ${reason}`)));
    }
  });

  serve(async (message) => {
    switch (message.op) {
      case 'connect': {
        // A bounded number of handshakes in flight: the server's accept backlog is not overrun.
        const { url, count, concurrency, timeoutMs } = message as unknown as { url: string; count: number; concurrency: number; timeoutMs: number };
        perConnection = (message['perConnection'] as number | undefined) ?? 1;
        const deadline = Date.now() + timeoutMs;
        let started = 0;
        let connected = 0;
        let failed = 0;
        let firstError: string | undefined;
        const worker = async (): Promise<void> => {
          while (started < count && Date.now() < deadline) {
            started++;
            const index = closers.length;
            closers.push(() => {});
            try {
              await open(url, index, Math.max(1000, deadline - Date.now()));
              connected++;
            } catch (error) {
              failed++;
              firstError ??= (error as Error).message;
            }
          }
        };
        await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
        return { connected, failed, firstError };
      }
      case 'arm':
        expected = message['expected'] as number;
        return {};
      case 'collect': {
        const times: Record<number, Float64Array> = {};
        for (const seq of message['seqs'] as number[]) {
          times[seq] = receipts.get(seq)?.times ?? new Float64Array(0);
          receipts.delete(seq);
        }
        return { times };
      }
      case 'forget':
        receipts.clear();
        return { frameBytes, lost, firstLoss };
      default:
        throw new Error(`unknown op ${message.op}`);
    }
  });
  send({ op: 'ready' });
}

// ---- this process: the children, the rounds, the figures ----

/** A child process and its requests. */
class Child {
  readonly #pending = new Map<number, { resolve: (reply: Message) => void; reject: (error: Error) => void }>();
  #rid = 0;
  #exited: string | undefined;
  onMessage: (message: Message) => void = () => {};
  readonly ready: Promise<Message>;

  constructor(readonly proc: ChildProcess, readonly label: string) {
    let readyResolve!: (message: Message) => void;
    let readyReject!: (error: Error) => void;
    this.ready = new Promise((resolve, reject) => {
      readyResolve = resolve;
      readyReject = reject;
    });
    this.ready.catch(() => {}); // awaited with a deadline by the caller
    proc.on('message', (message: Message) => {
      if (message.op === 'ready') return readyResolve(message);
      if (message.op !== 'reply') return this.onMessage(message);
      const pending = this.#pending.get(message.rid!);
      this.#pending.delete(message.rid!);
      if (typeof message['error'] === 'string') pending?.reject(new Error(`${label}: ${message['error']}`));
      else pending?.resolve(message);
    });
    proc.on('exit', (code, signal) => {
      this.#exited = `${label} exited (${signal ?? code})`;
      readyReject(new Error(this.#exited));
      for (const { reject } of this.#pending.values()) reject(new Error(this.#exited));
      this.#pending.clear();
    });
  }

  /** Sends a request; rejects after `timeoutMs` or if the child is gone. */
  request(message: Message, timeoutMs: number): Promise<Message> {
    if (this.#exited !== undefined) return Promise.reject(new Error(this.#exited));
    const rid = ++this.#rid;
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(rid);
        reject(new Error(`${this.label}: no answer to ${message.op} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(rid, {
        resolve: (reply) => (clearTimeout(timer), resolve(reply)),
        reject: (error) => (clearTimeout(timer), reject(error)),
      });
      this.proc.send({ ...message, rid });
    });
  }

  get exited(): boolean {
    return this.#exited !== undefined;
  }
}

const HERE = fileURLToPath(import.meta.url);
const ROOT = fileURLToPath(new URL('../', import.meta.url));
const live = new Set<ChildProcess>();
const killAll = (): void => {
  for (const proc of live) proc.kill('SIGKILL');
};

/** The hard limit of open files, and the soft limit a child gets once raised to it (the limit is per process). */
function fileLimits(): { hard: string; soft: number } {
  try {
    const hard = execFileSync('bash', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim();
    const soft = Number(execFileSync('bash', ['-c', 'ulimit -n "$1" 2>/dev/null; ulimit -n', 'bash', hard], { encoding: 'utf8' }).trim());
    return { hard, soft: Number.isFinite(soft) ? soft : 1_000_000 };
  } catch {
    return { hard: '1024', soft: 1024 };
  }
}

/** A child process of this file, through bash so that its open-files limit is raised to the hard limit first. */
function spawnChild(role: 'server' | 'client', kind: Kind, hardLimit: string, label: string): Child {
  const proc = spawn('bash', ['-c', 'ulimit -n "$1" 2>/dev/null; shift; exec "$@"', 'bench-child', hardLimit, process.execPath, '--expose-gc', '--import', 'tsx', HERE], {
    cwd: ROOT,
    env: { ...process.env, HERALD_BENCH_ROLE: role, HERALD_BENCH_KIND: kind },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    serialization: 'advanced',
  });
  live.add(proc);
  proc.on('exit', () => live.delete(proc));
  return new Child(proc, label);
}

async function deadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

function percentile(sorted: Float64Array, q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function median(values: readonly number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** One contender: its server, its clients, and which sets have reached every watcher. */
class Group {
  readonly name: string;
  clients: Child[] = [];
  server!: Child;
  url = '';
  watchers = 0;
  connectSeconds = 0;
  heapPerConnection = NaN;
  rssPerConnection = NaN;
  lost = 0;
  firstLoss: string | undefined;
  /** seq → client processes that have reported every watcher of theirs has it, and the latest receipt. */
  readonly #done = new Map<number, { processes: number; last: number }>();
  readonly #waiters = new Map<number, () => void>();
  readonly rounds: { p50Us: number; p99Us: number; lastMs: number; setsPerSecond: number }[] = [];
  missing = 0;
  incompleteSets = 0;

  /** The scenario's label, for notes. */
  readonly label: string;

  constructor(readonly kind: Kind) {
    this.name = CONTENDER_NAMES[kind];
    this.label = isGrpc(kind) ? 'server fan-out over gRPC' : 'server fan-out';
  }

  listen(client: Child): void {
    client.onMessage = (message) => {
      if (message.op === 'lost') {
        this.lost++;
        this.firstLoss ??= message['why'] as string;
        return;
      }
      if (message.op !== 'done') return;
      const seq = message['seq'] as number;
      const entry = this.#done.get(seq) ?? { processes: 0, last: 0 };
      entry.processes++;
      entry.last = Math.max(entry.last, message['last'] as number);
      this.#done.set(seq, entry);
      if (entry.processes === this.clients.length) this.#waiters.get(seq)?.();
    };
  }

  /** When every watcher had set `seq` (hrtime ns), or undefined if not all have it yet. */
  completedAt(seq: number): number | undefined {
    const entry = this.#done.get(seq);
    return entry !== undefined && entry.processes === this.clients.length ? entry.last : undefined;
  }

  /** Resolves once every watcher has each of `seqs`, or at `until` (Date.now()), whichever comes first. */
  async waitFor(seqs: readonly number[], until: number): Promise<void> {
    for (const seq of seqs) {
      if (this.completedAt(seq) !== undefined) continue;
      const gone = [this.server, ...this.clients].find((child) => child.exited);
      if (gone !== undefined) throw new Error(`${gone.label} is gone`);
      const left = until - Date.now();
      if (left <= 0) return;
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.set(seq, resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
      this.#waiters.delete(seq);
    }
  }

  forget(): void {
    this.#done.clear();
  }
}

export interface ServerBenchOutcome {
  readonly figures: Record<string, ServerFigures>;
  readonly notes: string[];
}

/**
 * Runs one scenario of the section (`ws`: herald's WebSocket and SSE, bare
 * ws, socket.io; `grpc`: herald's gRPC and a bare grpc-js server): starts
 * every contender's processes, connects the watchers to each (fewer if the
 * open-files limit does not allow them: said in the notes), measures, and
 * ends every process it started, on failure too.
 */
export async function serverBench(scenario: ServerScenario, settings: ServerSettings, progress: (text: string) => void): Promise<ServerBenchOutcome> {
  const notes: string[] = [];
  const label = scenario === 'grpc' ? 'server fan-out over gRPC' : 'server fan-out';
  const grpcSettings = settings.grpc;
  if (scenario === 'grpc' && grpcSettings === undefined) throw new Error('no gRPC settings');
  const requested = scenario === 'grpc' ? grpcSettings!.streams : settings.watchers;
  const perConnection = scenario === 'grpc' ? grpcSettings!.streamsPerConnection : 1;
  const limits = fileLimits();
  // The server holds one descriptor per connection, a client process one per connection of its own; 200 spare for the rest.
  const perProcess = Math.max(100, limits.soft - 200);
  const watchers = Math.min(requested, perProcess * perConnection);
  if (watchers < requested) {
    notes.push(`${label}: ${watchers} watchers per contender instead of ${requested}: the open-files limit per process is ${limits.soft} (hard ${limits.hard})`);
  }
  const processes = Math.max(settings.clientProcesses, Math.ceil(watchers / perConnection / perProcess));
  const groups = SCENARIO_KINDS[scenario].map((kind) => new Group(kind));
  process.on('exit', killAll);
  try {
    progress(`${label}: starting ${groups.length} servers and ${groups.length * processes} client processes`);
    for (const group of groups) {
      group.server = spawnChild('server', group.kind, limits.hard, `${group.kind} server`);
      group.clients = Array.from({ length: processes }, (_, i) => spawnChild('client', group.kind, limits.hard, `${group.kind} client ${i + 1}`));
      for (const client of group.clients) group.listen(client);
    }
    for (const group of groups) {
      const { port } = await deadline(group.server.ready, 60_000, `${group.kind} server start`);
      group.url = isGrpc(group.kind)
        ? `127.0.0.1:${port as number}`
        : `${group.kind === 'socket.io' ? 'http' : 'ws'}://127.0.0.1:${port as number}${group.kind === 'herald-ws' ? '/v1/ws' : '/'}`;
      await deadline(Promise.all(group.clients.map((c) => c.ready)), 60_000, `${group.kind} clients start`);
    }
    for (const group of groups) {
      progress(`${label}: connecting ${watchers} watchers to ${group.name}`);
      await connect(group, watchers, perConnection, notes);
    }
    for (const group of groups) await warmUp(group, settings);
    for (let round = 0; round < settings.rounds; round++) {
      for (const group of shuffle(groups)) {
        progress(`${label}: round ${round + 1}/${settings.rounds}, ${group.name}`);
        group.rounds.push(await measureRound(group, settings));
      }
    }
    const figures: Record<string, ServerFigures> = {};
    for (const group of groups) {
      const forgot = await Promise.all(group.clients.map((c) => c.request({ op: 'forget' }, 10_000)));
      let frameBytes = Math.max(...forgot.map((f) => f['frameBytes'] as number));
      if (group.kind === 'socket.io') frameBytes = (await group.server.request({ op: 'count' }, 10_000))['frameBytes'] as number;
      const pick = (f: (r: Group['rounds'][number]) => number): number => median(group.rounds.map(f));
      figures[group.name] = {
        watchers: group.watchers,
        p50Us: pick((r) => r.p50Us),
        p99Us: pick((r) => r.p99Us),
        lastMs: pick((r) => r.lastMs),
        setsPerSecond: pick((r) => r.setsPerSecond),
        heapPerConnection: group.heapPerConnection,
        rssPerConnection: group.rssPerConnection,
        frameBytes,
        connectSeconds: group.connectSeconds,
      };
      if (group.lost > 0) notes.push(`${label}: ${group.name} lost ${group.lost} watchers during the measurement (first: ${group.firstLoss})`);
      if (group.missing > 0) notes.push(`${label}: ${group.name}: ${group.missing} receipts of latency sets never arrived (left out of its percentiles)`);
      if (group.incompleteSets > 0) notes.push(`${label}: ${group.name}: ${group.incompleteSets} sets did not reach every watcher within their deadline`);
    }
    if (scenario === 'grpc') {
      const connections = split(watchers, processes).reduce((n, count) => n + Math.ceil(count / perConnection), 0);
      notes.push(
        `${label}: ${watchers} Watch streams per contender on 127.0.0.1 over ${connections} HTTP/2 connections (${perConnection} streams each, ` +
          'a grpc-js channel with a local subchannel pool per connection), the same arrangement for herald and the floor; clients are @grpc/grpc-js with ' +
          '@grpc/proto-loader loading proto/herald.proto, a receipt is the decoded WatchEvent with its new_value_json parsed; neither server sets ' +
          `grpc.max_concurrent_streams (Node's HTTP/2 default, 2^32 - 1, no cap at 100); each server in a child process of its own, its clients spread over ${groups[0]!.clients.length} more; ` +
          `${settings.rounds} interleaved rounds of ${settings.latencySets} latency sets and ${settings.windowMs} ms of sets as fast as they reach every stream ` +
          `(each issued once fewer than ${GRPC_IN_FLIGHT} are on their way, not the WebSocket table's unbounded flood, whose backlog would outlast the round); ` +
          'herald: store.set on the in-memory store in the server process; the floor: one WatchEvent of the same fields serialized once per set and its bytes written to every stream; ' +
          'memory: the server process\'s growth from 10 % to 100 % of the streams, per stream added (its share of a connection included)',
      );
      return { figures, notes };
    }
    notes.push(
      `server fan-out: ${watchers} watchers per contender on 127.0.0.1, each server in a child process of its own, its clients spread over ${processes} more ` +
        `(open files per process: ${limits.soft}); ${settings.rounds} interleaved rounds of ${settings.latencySets} latency sets and ${settings.windowMs} ms of back-to-back sets; ` +
        'sets issued inside the server process (herald: store.set on the in-memory store); latency to each client\'s parsed frame; ' +
        'memory: the server process\'s heap and RSS growth, after a full GC, from 10 % to 100 % of the watchers connected, per connection added',
    );
    return { figures, notes };
  } finally {
    progress(`${label}: stopping every process`);
    await stopAll(groups.flatMap((g) => [g.server, ...g.clients]).filter((c) => c !== undefined));
    process.off('exit', killAll);
  }
}

/** Ends every child: the IPC channel closes (each exits on it), SIGKILL for any still there after 5 s. */
async function stopAll(children: Child[]): Promise<void> {
  await Promise.all(children.map(async (child) => {
    if (child.exited) return;
    const exited = once(child.proc, 'exit');
    child.proc.disconnect();
    try {
      await deadline(exited, 5000, 'exit');
    } catch {
      child.proc.kill('SIGKILL');
      await deadline(once(child.proc, 'exit'), 5000, 'exit after SIGKILL').catch(() => {});
    }
  }));
}

/** `total` watchers spread over `processes` client processes. */
const split = (total: number, processes: number): number[] => Array.from({ length: processes }, (_, i) => Math.floor(total / processes) + (i < total % processes ? 1 : 0));

/** Connects `watchers` in two steps (10 %, then the rest), measuring the server's memory after each. */
async function connect(group: Group, watchers: number, perConnection: number, notes: string[]): Promise<void> {
  const first = Math.max(1, Math.round(watchers / 10));
  const connectTimeoutMs = 90_000;
  const start = Date.now();
  const connected = group.clients.map(() => 0);
  const step = async (counts: number[]): Promise<void> => {
    const replies = await Promise.all(group.clients.map((c, i) => c.request({ op: 'connect', url: group.url, count: counts[i]!, concurrency: 128, timeoutMs: connectTimeoutMs, perConnection }, connectTimeoutMs + 30_000)));
    replies.forEach((r, i) => (connected[i]! += r['connected'] as number));
    const failed = replies.reduce((n, r) => n + (r['failed'] as number), 0);
    if (failed > 0) notes.push(`${group.label}: ${group.name}: ${failed} watchers failed to connect (first: ${replies.find((r) => r['firstError'] !== undefined)?.['firstError'] as string})`);
  };
  const memory = (): Promise<Message> => group.server.request({ op: 'memory' }, 30_000);
  const firstCounts = split(first, group.clients.length);
  await step(firstCounts);
  const before = await memory();
  await step(split(watchers, group.clients.length).map((n, i) => n - firstCounts[i]!));
  group.connectSeconds = (Date.now() - start) / 1000;
  const after = await memory();
  const added = (after['count'] as number) - (before['count'] as number);
  group.heapPerConnection = ((after['heapUsed'] as number) - (before['heapUsed'] as number)) / added;
  group.rssPerConnection = ((after['rss'] as number) - (before['rss'] as number)) / added;
  group.watchers = after['count'] as number;
  const total = connected.reduce((a, b) => a + b, 0);
  if (total !== group.watchers) notes.push(`${group.label}: ${group.name}: the clients hold ${total} watchers, the server counts ${group.watchers}`);
  // Each client process counts its own watchers: a set is done there once all of them have it.
  await Promise.all(group.clients.map((c, i) => c.request({ op: 'arm', expected: connected[i] }, 10_000)));
}

let nextSeq = 0;

async function latencySet(group: Group): Promise<{ seq: number; t0: number }> {
  const seq = nextSeq++;
  const { t0 } = await group.server.request({ op: 'set', seq }, 10_000);
  await group.waitFor([seq], Date.now() + 10_000);
  return { seq, t0: t0 as number };
}

async function warmUp(group: Group, settings: ServerSettings): Promise<void> {
  for (let i = 0; i < 3; i++) await latencySet(group);
  const from = nextSeq;
  const warmMs = Math.min(300, settings.windowMs);
  const flood = isGrpc(group.kind) ? await pacedFlood(group, warmMs) : await group.server.request({ op: 'flood', from, durationMs: warmMs }, 30_000);
  nextSeq = (flood['last'] as number) + 1;
  await group.waitFor(range(from, nextSeq), Date.now() + 10_000);
  await Promise.all(group.clients.map((c) => c.request({ op: 'forget' }, 10_000)));
  group.forget();
}

/**
 * How many sets the gRPC scenario's throughput window lets be on their way
 * (issued, not yet at every stream). A flood with no bound (as the WebSocket
 * scenario's) issues sets far faster than grpc-js clients decode them on a
 * small machine: the backlog outlasts the round and is still being drained
 * while the next contender is measured.
 */
const GRPC_IN_FLIGHT = 4;

/** Sets for `windowMs`, each as soon as fewer than GRPC_IN_FLIGHT are on their way; the first's t0 and the last seq, as the `flood` op answers. */
async function pacedFlood(group: Group, windowMs: number): Promise<{ t0: number; last: number }> {
  const end = Date.now() + windowMs;
  const issued: number[] = [];
  let t0: number | undefined;
  while (Date.now() < end) {
    const waiting = issued.length >= GRPC_IN_FLIGHT ? issued[issued.length - GRPC_IN_FLIGHT]! : undefined;
    if (waiting !== undefined && group.completedAt(waiting) === undefined) {
      await group.waitFor([waiting], end);
      continue;
    }
    const seq = nextSeq++;
    const reply = await group.server.request({ op: 'set', seq }, 10_000);
    t0 ??= reply['t0'] as number;
    issued.push(seq);
  }
  return { t0: t0!, last: nextSeq - 1 };
}

const range = (from: number, to: number): number[] => Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);

async function measureRound(group: Group, settings: ServerSettings): Promise<Group['rounds'][number]> {
  // Latency: one set at a time, each once the previous has reached every watcher.
  const sets: { seq: number; t0: number }[] = [];
  for (let i = 0; i < settings.latencySets; i++) {
    sets.push(await latencySet(group));
    await sleep(20);
  }
  const collected = await Promise.all(group.clients.map((c) => c.request({ op: 'collect', seqs: sets.map((s) => s.seq) }, 30_000)));
  const latencies: number[] = [];
  const lasts: number[] = [];
  for (const { seq, t0 } of sets) {
    for (const reply of collected) {
      const times = (reply['times'] as Record<number, Float64Array>)[seq]!;
      for (const t of times) {
        if (t === 0) group.missing++;
        else latencies.push((t - t0) / 1000);
      }
    }
    const done = group.completedAt(seq);
    if (done === undefined) group.incompleteSets++;
    else lasts.push((done - t0) / 1e6);
  }
  const sorted = Float64Array.from(latencies).sort();
  // Throughput: back to back for windowMs (gRPC: at most GRPC_IN_FLIGHT sets on their way); only the sets that reached every watcher count.
  const from = nextSeq;
  const flood = isGrpc(group.kind) ? await pacedFlood(group, settings.windowMs) : await group.server.request({ op: 'flood', from, durationMs: settings.windowMs }, settings.windowMs + 30_000);
  nextSeq = (flood['last'] as number) + 1;
  const seqs = range(from, nextSeq);
  await group.waitFor(seqs, Date.now() + 10_000);
  let complete = 0;
  let lastAt = 0;
  for (const seq of seqs) {
    const done = group.completedAt(seq);
    if (done === undefined) {
      group.incompleteSets++;
      continue;
    }
    complete++;
    lastAt = Math.max(lastAt, done);
  }
  await Promise.all(group.clients.map((c) => c.request({ op: 'forget' }, 10_000)));
  group.forget();
  return {
    p50Us: percentile(sorted, 0.5),
    p99Us: percentile(sorted, 0.99),
    lastMs: median(lasts),
    setsPerSecond: complete === 0 ? 0 : complete / ((lastAt - (flood['t0'] as number)) / 1e9),
  };
}

// ---- a child's entry ----

const role = process.env['HERALD_BENCH_ROLE'];
const roleKind = process.env['HERALD_BENCH_KIND'] as Kind | undefined;
if (role !== undefined && process.send !== undefined && roleKind !== undefined) {
  if (role === 'server') await serverProcess(roleKind);
  else await clientProcess(roleKind);
}
