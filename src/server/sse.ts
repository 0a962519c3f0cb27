import type { IncomingMessage, ServerResponse } from 'node:http';
import { authorize, type Grant } from './auth.js';
import type { ServerContext } from './connections.js';
import { HttpError, logFailure, replyError } from './http-errors.js';
import type { EndReason, WatchEvent, WatchSpec } from './watch.js';
import { WatchStream } from './watch-stream.js';

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
      stream = new SseStream(this.context, response, this.#last);
    } catch (error) {
      return replyError(response, error);
    }
    this.#streams.add(stream);
    response.once('close', () => this.#streams.delete(stream));
    try {
      await stream.start(watchSpec(request, url, session, this.context.limits.maxNames), grant);
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
class SseStream extends WatchStream {

  constructor(context: ServerContext, readonly response: ServerResponse, readonly last: FrameCache) {
    super('sse', context);
    response.once('close', () => this.gone());
    const who = { transport: 'sse', remote: `${response.socket?.remoteAddress ?? '?'}:${response.socket?.remotePort ?? '?'}` };
    context.log.debug(who, 'watcher connected');
    response.once('close', () => context.log.debug(who, 'watcher left'));
  }

  heartbeat(): void {
    if (!this.ended && this.response.headersSent) this.response.write(': heartbeat\n\n');
  }

  destroy(): void {
    this.response.destroy();
  }

  protected opened(): void {
    this.response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'connection': 'keep-alive',
      'x-accel-buffering': 'no',
    });
    // The first byte: from here on the watch is live.
    this.response.write(': live\n\n');
  }

  protected buffered(): number {
    return this.response.writableLength;
  }

  protected send(event: WatchEvent, scope: string): void {
    const last = this.last;
    if (last.event !== event || last.scope !== scope) {
      last.event = event;
      last.scope = scope;
      const cursor = `${scope}.${event.position}`;
      last.frame = Buffer.from(`id: ${cursor}\nevent: ${event.type}\ndata: {"cursor":"${cursor}",${event.members}}\n\n`);
    }
    this.response.write(last.frame);
  }

  protected finish(reason: EndReason): void {
    if (!this.response.headersSent) {
      // Ended before it started (the server closing, the token running out): an answer, not a stream.
      return replyError(this.response, reason === 'token-expired'
        ? new HttpError(401, 'HERALD_UNAUTHORIZED', 'the token has expired')
        : new HttpError(503, 'HERALD_CLOSING', `the watch ended before it started: ${reason}`));
    }
    this.response.end(`event: end\ndata: {"reason":"${reason}"}\n\n`);
    this.cutOffLater();
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
