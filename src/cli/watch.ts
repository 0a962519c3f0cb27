import WebSocket from 'ws';
import { COMMON, CommandError, EXIT, parse, refusal, serverUrl, tokenOf, under, type Io } from './remote.js';

export const WATCH_USAGE: string = `Usage: herald watch URL SESSION [NAMES...] [--changes-only] [--token T] [--json]

Prints a session's changes as they come (all its variables, or the NAMES
given): first the current values, then each change. On a terminal, a readable
line per change; with --json or when piped, one JSON line per event. It
reconnects by itself and resumes where it left off; when the server cannot
replay what was missed it prints a gap and the values read again.

Options:
  --changes-only   leave out the current values at the start
  --token T        a token, if the server asks for one (HERALD_TOKEN)
  --json           one JSON line per event (the server's frames)
  -h, --help       this text

Exit codes: 0 stopped (Ctrl-C, or the reader of a pipe went), 1 the server
failed, 2 a mistake in the command, 3 no such session or it ended, 4 the token
was refused or expired.

Example:
  herald watch http://127.0.0.1:7070 42
  herald watch http://127.0.0.1:7070 42 mode limits --json | head -n 3
`;

/** Reconnection delays: from the first, doubled up to the last. */
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 5000;
/** A subscription not answered within this, or a connection silent this long (the server pings every 25 s by default), is dropped and made again. */
const SUBSCRIBED_WITHIN_MS = 10_000;
const SILENT_MS = 60_000;
/** Output not taken by stdout's reader past this: the socket stops reading until it is (the server then sees a slow consumer, and the watch resumes). */
const MAX_BACKLOG_BYTES = 1024 * 1024;

type Frame = Record<string, unknown> & { type: string };

/** `herald watch`: resolves with the exit code once the watch is over. */
export async function watch(args: readonly string[], io: Io, stop: AbortSignal): Promise<number> {
  const { values, positionals } = parse(args, { ...COMMON, 'changes-only': { type: 'boolean' } });
  if (values.help === true) {
    io.out(WATCH_USAGE);
    return EXIT.ok;
  }
  const [url, session, ...names] = positionals;
  if (session === undefined) throw new CommandError('give URL SESSION [NAMES...], e.g. herald watch http://127.0.0.1:7070 42', EXIT.usage);
  const base = serverUrl(url);
  const token = tokenOf(values, io.env);
  const json = values.json === true || !io.tty;
  const wsUrl = under(base, '/v1/ws');
  wsUrl.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:';
  let cursor: string | undefined;
  let includeCurrent = values['changes-only'] !== true;
  let delay = RETRY_FIRST_MS;
  const show = (frame: Frame): void => {
    if (json) {
      // The subscription id is the command's own.
      const event: Record<string, unknown> = { ...frame };
      delete event['id'];
      return io.out(JSON.stringify(event));
    }
    io.out(readable(frame));
  };

  while (!stop.aborted) {
    const outcome = await once(wsUrl, token, { session, names, includeCurrent, cursor }, stop, io, (frame) => {
      if (typeof frame['cursor'] === 'string') cursor = frame['cursor'];
      delay = RETRY_FIRST_MS;
      show(frame);
    });
    // Current values are for the start only: a resume replays from the cursor.
    includeCurrent = false;
    if (outcome.exit !== undefined) {
      if (outcome.message !== undefined) io.err(`herald watch: ${outcome.message}`);
      return outcome.exit;
    }
    if (stop.aborted) break;
    if (io.errTty) io.err(`herald watch: ${outcome.why ?? 'disconnected'}; reconnecting in ${delay} ms`);
    await sleep(delay, stop);
    delay = Math.min(RETRY_MAX_MS, delay * 2);
  }
  return EXIT.ok;
}

/** How one connection ended: an exit code (with a message), or a reason to reconnect. */
interface Outcome {
  readonly exit?: number;
  readonly message?: string;
  readonly why?: string;
}

/** One connection: subscribes, hands each event to `onEvent`, and resolves when it is over. */
function once(
  url: URL, token: string | undefined, spec: { session: string; names: string[]; includeCurrent: boolean; cursor: string | undefined },
  stop: AbortSignal, io: Io, onEvent: (frame: Frame) => void,
): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = new WebSocket(url, 'herald.v1', { headers: token === undefined ? {} : { authorization: `Bearer ${token}` }, handshakeTimeout: 10_000 });
    let settled = false;
    // Every wait has a deadline: the subscription's answer, then the server's pings or frames.
    let silence = setTimeout(() => finish({ why: 'the server did not answer the subscription' }), 10_000 + SUBSCRIBED_WITHIN_MS);
    const heard = (): void => {
      clearTimeout(silence);
      silence = setTimeout(() => finish({ why: `the server was silent for ${SILENT_MS / 1000} s` }), SILENT_MS);
    };
    const finish = (outcome: Outcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(silence);
      stop.removeEventListener('abort', onStop);
      socket.terminate();
      resolve(outcome);
    };
    const onStop = (): void => finish({ exit: EXIT.ok });
    stop.addEventListener('abort', onStop);
    socket.on('unexpected-response', (_request, response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => {
        const status = response.statusCode ?? 0;
        let parsed: unknown;
        try {
          parsed = JSON.parse(body);
        } catch {
          parsed = undefined;
        }
        // Busy or closing: try again; anything else is for the user.
        if (status === 429 || status === 503) return finish({ why: `the server answered ${status}` });
        const error = refusal(status, parsed);
        finish({ exit: error.exitCode, message: error.message });
      });
    });
    socket.on('error', (error) => finish({ why: (error as NodeJS.ErrnoException).code ?? error.message }));
    socket.on('close', () => finish({ why: 'the connection closed' }));
    socket.on('open', () => {
      socket.send(JSON.stringify({
        op: 'subscribe', id: 'watch', session: spec.session,
        ...(spec.names.length > 0 ? { names: spec.names } : {}),
        ...(spec.cursor === undefined ? { includeCurrent: spec.includeCurrent } : { cursor: spec.cursor }),
      }));
    });
    socket.on('ping', heard);
    socket.on('message', (data: Buffer) => {
      heard();
      let frame: Frame;
      try {
        frame = JSON.parse(data.toString('utf8')) as Frame;
      } catch {
        return;
      }
      if (frame.type === 'change' || frame.type === 'gap') {
        onEvent(frame);
        // A slow reader of stdout: read no more until it has caught up.
        if (io.backlog() > MAX_BACKLOG_BYTES && !socket.isPaused) {
          socket.pause();
          io.onDrain(() => socket.resume());
        }
        return;
      }
      if (frame.type === 'error') {
        const code = String(frame['code']);
        const exit = code === 'HERALD_NO_SESSION' ? EXIT.notFound : code === 'HERALD_FORBIDDEN' || code === 'HERALD_UNAUTHORIZED' ? EXIT.refused : code === 'HERALD_LIMIT' ? undefined : EXIT.failed;
        return finish(exit === undefined ? { why: `${code}: ${String(frame['message'])}` } : { exit, message: `${code}: ${String(frame['message'])}` });
      }
      if (frame.type === 'end') {
        const reason = String(frame['reason']);
        if (reason === 'session-ended') return finish({ exit: EXIT.notFound, message: `session ${JSON.stringify(spec.session)} ended (deleted or expired)` });
        if (reason === 'token-expired') return finish({ exit: EXIT.refused, message: 'the token expired: get a new one and run again' });
        if (reason === 'unsubscribed') return finish({ exit: EXIT.ok });
        return finish({ why: `the server ended the watch (${reason})` });
      }
    });
  });
}

/** A change or a gap as a person reads it. */
function readable(frame: Frame): string {
  const time = new Date(typeof frame['at'] === 'number' ? frame['at'] : Date.now()).toISOString().slice(11, 23);
  if (frame.type === 'gap') {
    const snapshot = (frame['snapshot'] as { name: string; value: unknown; version: number }[]);
    const lines = snapshot.map((v) => `    ${v.name} = ${JSON.stringify(v.value)}  (v${v.version})`);
    return [`${time}  gap: changes may have been missed; the values now:`, ...lines].join('\n');
  }
  const name = String(frame['name']);
  const version = String(frame['version']);
  if (!('newValue' in frame)) return `${time}  ${name} deleted  (v${version})`;
  const current = (frame['meta'] as Record<string, unknown> | undefined)?.['current'] === true;
  const was = 'oldValue' in frame ? `, was ${JSON.stringify(frame['oldValue'])}` : '';
  return `${time}  ${name} = ${JSON.stringify(frame['newValue'])}  (v${version}${current ? ', current' : was})`;
}

function sleep(ms: number, stop: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      stop.removeEventListener('abort', done);
      resolve();
    }
    stop.addEventListener('abort', done);
  });
}
