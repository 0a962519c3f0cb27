import type { IncomingMessage, ServerResponse } from 'node:http';
import { authorize, type Grant } from './auth.js';
import { at, type ServerContext, type WatchConnection } from './connections.js';
import { HttpError, logFailure, replyError } from './http-errors.js';
import { Watch, type EndReason, type WatchEvent, type WatchSink, type WatchSpec } from './watch.js';

/** One encoded event, kept while the same event goes to one watcher after another with the same scope. */
interface FrameCache {
  event: WatchEvent | undefined;
  scope: string;
  frame: Buffer;
}

/**
 * Watching over Server-Sent Events (DESIGN 9.2):
 * `GET /v1/sessions/:id/watch?names=a,b&includeCurrent=1`, one watch per
 * response. The SSE `id:` is the cursor, so a browser's `EventSource` resumes
 * by itself (`Last-Event-ID`); a comment line every `heartbeatMs` keeps
 * proxies from closing a quiet stream.
 */
export class SseTransport {
  readonly #streams = new Set<SseStream>();
  /** The last event encoded: every stream of a change's watchers writes the same bytes. */
  readonly #last: FrameCache = { event: undefined, scope: '', frame: Buffer.alloc(0) };
  readonly #heartbeat: NodeJS.Timeout;

  constructor(readonly context: ServerContext) {
    this.#heartbeat = setInterval(() => {
      for (const stream of this.#streams) stream.heartbeat();
    }, context.timers.heartbeatMs);
    this.#heartbeat.unref();
  }

  /** Answers a watch request of `session` whose grant is known; never throws. */
  async watch(request: IncomingMessage, response: ServerResponse, url: URL, session: string, grant: Grant): Promise<void> {
    // The client may have gone while its token was checked: its response's close has passed, so nothing may be set up for it.
    if (response.closed || response.destroyed || request.socket.destroyed) return;
    let stream: SseStream;
    try {
      authorize(grant, session, false);
      this.context.connections.assertRoom();
      stream = new SseStream(this.context, response, grant, this.#last);
    } catch (error) {
      return replyError(response, error);
    }
    this.#streams.add(stream);
    response.once('close', () => this.#streams.delete(stream));
    try {
      await stream.start(watchSpec(request, url, session, this.context.limits.maxNames));
    } catch (error) {
      stream.refused();
      logFailure(this.context.log, error, { transport: 'sse', session });
      replyError(response, error);
    }
  }

  close(): void {
    clearInterval(this.#heartbeat);
  }
}

/** One SSE response and its one watch. */
class SseStream implements WatchConnection, WatchSink {
  readonly transport = 'sse';
  #watch: Watch | undefined;
  #open = false;
  #ended = false;
  readonly #closed: Promise<void>;
  readonly #cancelExpiry: () => void;

  constructor(readonly context: ServerContext, readonly response: ServerResponse, grant: Grant, readonly last: FrameCache) {
    context.connections.add(this);
    this.#closed = new Promise((resolve) => {
      response.once('close', () => {
        this.#ended = true;
        this.#cancelExpiry();
        this.#watch?.end('unsubscribed');
        context.connections.delete(this);
        resolve();
      });
    });
    this.#cancelExpiry = at(grant.expiresAt, () => void this.shutdown('token-expired'));
  }

  async start(spec: WatchSpec): Promise<void> {
    const who = { transport: 'sse', session: spec.session, remote: `${this.response.socket?.remoteAddress ?? '?'}:${this.response.socket?.remotePort ?? '?'}` };
    this.context.log.debug(who, 'watcher connected');
    void this.#closed.then(() => this.context.log.debug(who, 'watcher left'));
    const watch = await Watch.start(this.context, spec, this, `sse ${spec.session}`);
    if (this.#ended) watch.end('unsubscribed');
    else this.#watch = watch;
  }

  /** The watch was refused before it started: the response answers with the error instead. */
  refused(): void {
    this.#ended = true;
    this.#cancelExpiry();
    this.context.connections.delete(this);
  }

  started(): void {
    this.#open = true;
    this.context.connections.counters.sse.subscriptions++;
    this.response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'connection': 'keep-alive',
      'x-accel-buffering': 'no',
    });
    // The first byte: from here on the watch is live.
    this.response.write(': live\n\n');
  }

  event(event: WatchEvent, scope: string): void {
    if (this.#ended) return;
    const counters = this.context.connections.counters.sse;
    if (this.response.writableLength > this.context.limits.maxBufferedBytes) {
      counters.eventsDropped++;
      this.context.log.warn({ transport: 'sse', buffered: this.response.writableLength }, 'slow consumer: its stream ends');
      return void this.shutdown('slow-consumer');
    }
    counters.eventsSent++;
    const last = this.last;
    if (last.event !== event || last.scope !== scope) {
      last.event = event;
      last.scope = scope;
      const cursor = `${scope}.${event.position}`;
      last.frame = Buffer.from(`id: ${cursor}\nevent: ${event.type}\ndata: {"cursor":"${cursor}",${event.members}}\n\n`);
    }
    this.response.write(last.frame);
  }

  end(reason: EndReason): void {
    if (this.#open) {
      this.#open = false;
      this.context.connections.counters.sse.subscriptions--;
    }
    if (this.#ended) return;
    this.#ended = true;
    if (!this.response.headersSent) {
      // Ended before it started (the server closing, the token running out): an answer, not a stream.
      return replyError(this.response, reason === 'token-expired'
        ? new HttpError(401, 'HERALD_UNAUTHORIZED', 'the token has expired')
        : new HttpError(503, 'HERALD_CLOSING', `the watch ended before it started: ${reason}`));
    }
    this.response.end(`event: end\ndata: {"reason":"${reason}"}\n\n`);
    // A client that does not read never takes the end: it is cut off after the grace.
    setTimeout(() => this.destroy(), this.context.closeGraceMs).unref();
  }

  heartbeat(): void {
    if (this.#open && !this.#ended) this.response.write(': heartbeat\n\n');
  }

  async shutdown(reason: EndReason): Promise<void> {
    if (this.#watch !== undefined) this.#watch.end(reason);
    else this.end(reason);
    return this.#closed;
  }

  destroy(): void {
    this.response.destroy();
  }
}

/** The watch an SSE request asks for; 400 `HERALD_INVALID_ARGUMENT` naming the parameter that is wrong. */
function watchSpec(request: IncomingMessage, url: URL, session: string, maxNames: number): WatchSpec {
  const params = url.searchParams;
  let names: string[] | undefined;
  for (const list of params.getAll('names')) (names ??= []).push(...list.split(',').filter((name) => name !== ''));
  for (const name of params.getAll('name')) (names ??= []).push(name);
  if (names !== undefined && names.length === 0) throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', '`names` must name at least one variable, or be left out for the whole session');
  if (names !== undefined && names.length > maxNames) throw new HttpError(429, 'HERALD_LIMIT', `a watch may name ${maxNames} variables at most, got ${names.length}: watch the whole session instead`);
  const include = params.get('includeCurrent');
  if (include !== null && !['1', 'true', '0', 'false'].includes(include)) {
    throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', '`includeCurrent` must be 1, true, 0 or false');
  }
  const header = request.headers['last-event-id'];
  const cursor = typeof header === 'string' && header !== '' ? header : params.get('cursor') ?? undefined;
  return { session, names: names === undefined ? undefined : [...new Set(names)], includeCurrent: include === '1' || include === 'true', cursor };
}
