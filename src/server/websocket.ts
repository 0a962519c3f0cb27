import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { isPlainObject } from '../core/assert.js';
import { authorize, type Grant } from './auth.js';
import { at, type ServerContext, type TransportCounters, type WatchConnection } from './connections.js';
import { HttpError, logFailure, toHttp } from './http-errors.js';
import { Watch, type EndReason, type WatchEvent, type WatchSpec } from './watch.js';

/** One encoded frame, kept while the same event goes to one watcher after another under the same id. */
interface FrameCache {
  event: WatchEvent | undefined;
  prefix: string;
  scope: string;
  frame: Buffer;
}

/** The subprotocol of herald's WebSocket frames. */
export const SUBPROTOCOL = 'herald.v1';

/** Close codes (DESIGN 9.2). */
const CLOSE_CODE: Readonly<Record<EndReason, number>> = {
  'server-closing': 1001,
  'token-expired': 4001,
  'slow-consumer': 4008,
  'session-ended': 1000,
  'unsubscribed': 1000,
  'store-unavailable': 1011,
};

/** A subscription id: a string of 1 to 256 characters or a safe integer. */
function subscriptionId(value: unknown): string | undefined {
  if (typeof value === 'string' && value.length > 0 && value.length <= 256) return JSON.stringify(value);
  if (Number.isSafeInteger(value)) return String(value);
  return undefined;
}

/**
 * Watching over WebSocket at `/v1/ws` (DESIGN 9.2): JSON text frames, many
 * subscriptions per socket, each named by the client's `id`; a ping every
 * interval, and a socket that has not answered one by the next is closed.
 */
export class WebSocketTransport {
  readonly #wss: WebSocketServer;
  readonly #sockets = new Set<WsConnection>();
  readonly #pinger: NodeJS.Timeout;
  /** The last frame encoded: watchers of a change under the same subscription id get the same bytes. */
  readonly #last: FrameCache = { event: undefined, prefix: '', scope: '', frame: Buffer.alloc(0) };

  constructor(readonly context: ServerContext) {
    this.#wss = new WebSocketServer({
      noServer: true,
      // Frames up to 16 times the limit get a coded error and leave the socket open; larger ones close it (1009).
      maxPayload: context.limits.maxFrameBytes * 16,
      perMessageDeflate: false,
      handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    });
    this.#pinger = setInterval(() => this.#ping(), context.timers.pingIntervalMs);
    this.#pinger.unref();
  }

  /** Takes an upgrade request of `/v1/ws` whose grant is known and whose place is reserved (`release` gives it back). */
  upgrade(request: IncomingMessage, socket: Duplex, head: Buffer, grant: Grant, release: () => void): void {
    // A handshake ws refuses (a bad key or version) answers 400 itself and never calls back.
    socket.once('close', release);
    this.#wss.handleUpgrade(request, socket, head, (ws) => {
      release();
      const remote = `${request.socket.remoteAddress ?? '?'}:${request.socket.remotePort ?? '?'}`;
      const connection = new WsConnection(this.context, ws, grant, this.#last, remote, () => this.#sockets.delete(connection));
      this.#sockets.add(connection);
    });
  }

  /** Refuses an upgrade with an HTTP answer, written on the raw socket. */
  static refuse(socket: Duplex, error: unknown): void {
    const { status, body } = toHttp(error);
    const text = JSON.stringify(body);
    socket.end(`HTTP/1.1 ${status} ${status === 429 ? 'Too Many Requests' : status === 401 ? 'Unauthorized' : status === 503 ? 'Service Unavailable' : 'Bad Request'}\r\n`
      + `content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`);
  }

  close(): void {
    clearInterval(this.#pinger);
    this.#wss.close();
  }

  #ping(): void {
    for (const connection of this.#sockets) connection.ping();
  }
}

/** One WebSocket and its subscriptions. */
class WsConnection implements WatchConnection {
  readonly transport = 'ws';
  /** id (as JSON text) → its slot: the watch, once started. */
  readonly #watches = new Map<string, { watch: Watch | undefined }>();
  readonly #counters: TransportCounters;
  /** Whether anything (a pong, a frame) came since the last ping. */
  #heard = true;
  #tokens: number;
  #refilledAt = Date.now();
  #closing = false;
  readonly #closed: Promise<void>;
  readonly #cancelExpiry: () => void;

  constructor(readonly context: ServerContext, readonly ws: WebSocket, readonly grant: Grant, readonly last: FrameCache, remote: string, forget: () => void) {
    this.#counters = context.connections.counters.ws;
    this.#tokens = context.limits.maxSubscriptions;
    context.connections.add(this);
    this.#closed = new Promise((resolve) => {
      ws.once('close', () => {
        this.#closing = true;
        this.#cancelExpiry();
        for (const [key, slot] of this.#watches) {
          this.#watches.delete(key);
          slot.watch?.end('unsubscribed');
        }
        context.connections.delete(this);
        forget();
        resolve();
      });
    });
    ws.on('message', (data, isBinary) => this.#receive(data, isBinary));
    ws.on('pong', () => void (this.#heard = true));
    ws.on('error', () => ws.terminate());
    this.#cancelExpiry = at(grant.expiresAt, () => void this.shutdown('token-expired'));
    const who = { transport: 'ws', remote };
    context.log.debug(who, 'watcher connected');
    void this.#closed.then(() => context.log.debug(who, 'watcher left'));
  }

  /** Pings, or closes a socket that did not answer the last ping: a vanished client is gone within two intervals. */
  ping(): void {
    if (!this.#heard) return this.destroy();
    this.#heard = false;
    this.ws.ping();
  }

  async shutdown(reason: EndReason): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      for (const slot of this.#watches.values()) slot.watch?.end(reason);
      this.ws.close(CLOSE_CODE[reason], reason);
      // A client that does not read never takes the close frame: it is cut off after the grace.
      setTimeout(() => this.destroy(), this.context.closeGraceMs).unref();
    }
    return this.#closed;
  }

  destroy(): void {
    this.ws.terminate();
  }

  #receive(data: RawData, isBinary: boolean): void {
    this.#heard = true;
    if (this.#closing) return;
    const size = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.byteLength;
    if (size > this.context.limits.maxFrameBytes) {
      return this.#error(undefined, new HttpError(413, 'HERALD_TOO_LARGE', `a frame may carry ${this.context.limits.maxFrameBytes} bytes, this one ${size}`));
    }
    if (isBinary) return this.#error(undefined, new HttpError(400, 'HERALD_INVALID_ARGUMENT', 'frames are JSON text, not binary'));
    let frame: unknown;
    try {
      frame = JSON.parse(Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]).toString('utf8'));
    } catch {
      return this.#error(undefined, new HttpError(400, 'HERALD_INVALID_ARGUMENT', 'the frame is not valid JSON'));
    }
    if (!isPlainObject(frame)) return this.#error(undefined, new HttpError(400, 'HERALD_INVALID_ARGUMENT', 'a frame must be a JSON object with an `op`'));
    const id = Object.hasOwn(frame, 'id') ? subscriptionId(frame['id']) : undefined;
    const op = Object.hasOwn(frame, 'op') ? frame['op'] : undefined;
    if (op === 'subscribe') return void this.#subscribe(frame, id);
    if (op === 'unsubscribe') return this.#unsubscribe(id, frame['id']);
    this.#error(id, new HttpError(400, 'HERALD_INVALID_ARGUMENT', `\`op\` must be "subscribe" or "unsubscribe", got ${JSON.stringify(op)?.slice(0, 40) ?? 'nothing'}`));
  }

  async #subscribe(frame: Record<string, unknown>, id: string | undefined): Promise<void> {
    let spec: WatchSpec;
    try {
      if (id === undefined) throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', '`id` must be a string of 1 to 256 characters or an integer');
      if (this.#watches.has(id)) throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', `subscription ${id} is already in use on this socket`);
      spec = watchSpec(frame, this.context.limits.maxNames);
      authorize(this.grant, spec.session, false);
      if (this.#watches.size >= this.context.limits.maxSubscriptions) {
        throw new HttpError(429, 'HERALD_LIMIT', `a socket may hold ${this.context.limits.maxSubscriptions} subscriptions`);
      }
      this.#takeToken();
    } catch (error) {
      return this.#error(id, error);
    }
    const key = id;
    const prefix = `"id":${key},`;
    const slot: { watch: Watch | undefined } = { watch: undefined };
    this.#watches.set(key, slot);
    this.#counters.subscriptions++;
    const counters = this.#counters;
    let live = true;
    const sink = {
      started: () => void (this.#overBound() || this.#send(`{"type":"subscribed",${prefix.slice(0, -1)}}`)),
      event: (event: WatchEvent, scope: string) => {
        if (!live) return;
        if (this.#overBound()) {
          counters.eventsDropped++;
          return;
        }
        counters.eventsSent++;
        const last = this.last;
        if (last.event !== event || last.prefix !== prefix || last.scope !== scope) {
          last.event = event;
          last.prefix = prefix;
          last.scope = scope;
          last.frame = Buffer.from(`{"type":"${event.type}",${prefix}"cursor":"${scope}.${event.position}",${event.members}}`);
        }
        // Bytes as a text frame: encoded once for every watcher of the change under this id.
        if (this.ws.readyState === this.ws.OPEN) this.ws.send(last.frame, { binary: false });
      },
      end: (reason: EndReason) => {
        if (!live) return;
        live = false;
        counters.subscriptions--;
        if (this.#watches.get(key) === slot) this.#watches.delete(key);
        this.#send(`{"type":"end",${prefix}"reason":"${reason}"}`);
      },
    };
    try {
      const watch = await Watch.start(this.context, spec, sink, `ws ${key}`);
      // Unsubscribed, or the socket closed, while it started: it ends now.
      if (this.#closing || this.#watches.get(key) !== slot) watch.end('unsubscribed');
      else slot.watch = watch;
    } catch (error) {
      if (live) {
        live = false;
        counters.subscriptions--;
        if (this.#watches.get(key) === slot) this.#watches.delete(key);
      }
      this.#error(id, error);
    }
  }

  #unsubscribe(id: string | undefined, given: unknown): void {
    if (id === undefined || !this.#watches.has(id)) {
      return this.#error(id, new HttpError(404, 'HERALD_NOT_FOUND', `no subscription ${JSON.stringify(given)?.slice(0, 60) ?? 'without an id'} on this socket`));
    }
    const slot = this.#watches.get(id)!;
    this.#watches.delete(id);
    // One still starting ends as soon as it has started (see #subscribe).
    slot.watch?.end('unsubscribed');
  }

  /** Subscribes refill at `subscribesPerSecond`, up to `maxSubscriptions` at once. */
  #takeToken(): void {
    const { subscribesPerSecond, maxSubscriptions } = this.context.limits;
    const now = Date.now();
    this.#tokens = Math.min(maxSubscriptions, this.#tokens + ((now - this.#refilledAt) / 1000) * subscribesPerSecond);
    this.#refilledAt = now;
    if (this.#tokens < 1) throw new HttpError(429, 'HERALD_LIMIT', `a socket may subscribe ${subscribesPerSecond} times a second: try again shortly`);
    this.#tokens--;
  }

  #error(id: string | undefined, error: unknown): void {
    logFailure(this.context.log, error, { transport: 'ws' });
    // A client that sends and does not read is a slow consumer too: its error frames count against the bound.
    if (this.#overBound()) return;
    const { body } = toHttp(error);
    this.#send(`{"type":"error",${id === undefined ? '' : `"id":${id},`}"code":${JSON.stringify(body.error.code)},"message":${JSON.stringify(body.error.message)}}`);
  }

  #send(text: string): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(text);
  }

  /**
   * Whether the socket holds more than `maxBufferedBytes` unsent; if so its
   * subscriptions end with `slow-consumer` (their end frames go out whatever
   * the bound: at most one per subscription) and it closes with 4008.
   */
  #overBound(): boolean {
    if (this.ws.bufferedAmount <= this.context.limits.maxBufferedBytes) return false;
    if (!this.#closing) {
      this.context.log.warn({ transport: 'ws', buffered: this.ws.bufferedAmount }, 'slow consumer: its subscriptions end');
      void this.shutdown('slow-consumer');
    }
    return true;
  }
}

/** The watch a `subscribe` frame asks for; 400 `HERALD_INVALID_ARGUMENT` naming the member that is wrong. */
function watchSpec(frame: Record<string, unknown>, maxNames: number): WatchSpec {
  const session = frame['session'];
  if (typeof session !== 'string' || session.length === 0) throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', '`session` must be a non-empty string');
  const names = frame['names'];
  if (names !== undefined && !(Array.isArray(names) && names.length > 0 && names.every((name) => typeof name === 'string'))) {
    throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', '`names` must be a non-empty array of strings, or left out for the whole session');
  }
  if (names !== undefined && names.length > maxNames) throw new HttpError(429, 'HERALD_LIMIT', `a watch may name ${maxNames} variables at most, got ${names.length}: watch the whole session instead`);
  const includeCurrent = frame['includeCurrent'];
  if (includeCurrent !== undefined && typeof includeCurrent !== 'boolean') throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', '`includeCurrent` must be a boolean');
  const cursor = frame['cursor'];
  if (cursor !== undefined && typeof cursor !== 'string') throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', '`cursor` must be a string');
  return { session, names: names === undefined ? undefined : [...new Set(names)], includeCurrent: includeCurrent === true, cursor };
}
