import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Exit codes of the client commands: what a script can tell apart. */
export const EXIT = {
  ok: 0,
  /** The server could not be reached, or failed. */
  failed: 1,
  /** A user's mistake in the command line. */
  usage: 2,
  /** No such session or variable, or the session ended while watched. */
  notFound: 3,
  /** The token was refused (401) or does not cover the request (403). */
  refused: 4,
  /** `set --if-version`: the variable was at another version; nothing was written. */
  versionMismatch: 5,
} as const;

/** A mistake or failure a command reports as one line, with its exit code. */
export class CommandError extends Error {
  constructor(message: string, readonly exitCode: number) {
    super(message);
  }
}

/** How a command talks and where its output goes. */
export interface Io {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  /** Whether stdout is a terminal (readable lines) or not (JSON lines). */
  readonly tty: boolean;
  /** Whether stderr is a terminal: progress notes (reconnecting…) go there. */
  readonly errTty: boolean;
  /** Bytes written to stdout and not yet taken by its reader. */
  readonly backlog: () => number;
  /** Calls `fn` once stdout has taken its backlog. */
  readonly onDrain: (fn: () => void) => void;
  readonly env: NodeJS.ProcessEnv;
}

/** The options every client command takes, beside its own. */
export const COMMON: {
  readonly token: { readonly type: 'string' };
  readonly json: { readonly type: 'boolean' };
  readonly help: { readonly type: 'boolean'; readonly short: 'h' };
} = {
  token: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

/** `args` parsed by `options`, or a usage error naming what is wrong. */
export function parse<O extends NonNullable<ParseArgsConfig['options']>>(args: readonly string[], options: O): ReturnType<typeof parseArgs<{ options: O; allowPositionals: true; strict: true }>> {
  try {
    return parseArgs({ args: [...args], options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new CommandError((error as Error).message, EXIT.usage);
  }
}

/** The server's base URL from the command line; a usage error for anything but http(s). */
export function serverUrl(text: string | undefined): URL {
  if (text === undefined) throw new CommandError('the server URL is missing, e.g. http://127.0.0.1:7070', EXIT.usage);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CommandError(`${JSON.stringify(text)} is not a URL; give the server's, e.g. http://127.0.0.1:7070`, EXIT.usage);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CommandError(`the server URL must be http:// or https://, got ${url.protocol}`, EXIT.usage);
  // The message does not repeat the URL: it holds a password.
  if (url.username !== '' || url.password !== '') throw new CommandError('the server URL must not hold a user or password: give a token with --token', EXIT.usage);
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url;
}

/** `path` (`/v1/…`) under the server URL's own path, so a server behind a proxy's sub-path is reached there. */
export function under(base: URL, path: string): URL {
  return new URL(path.replace(/^\//, ''), base);
}

/** The token of `--token` or HERALD_TOKEN. */
export function tokenOf(values: { token?: string | undefined }, env: NodeJS.ProcessEnv): string | undefined {
  const token = values.token ?? env['HERALD_TOKEN'];
  return token === undefined || token === '' ? undefined : token;
}

/** A request to the server's API; resolves with the parsed JSON body, or throws a CommandError with the server's code and message. */
export async function request(base: URL, method: string, path: string, token: string | undefined, body?: unknown, headers: Record<string, string> = {}): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(under(base, path), {
      method,
      headers: { ...headers, ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (error) {
    throw new CommandError(`cannot reach ${base.origin}: ${causeOf(error)}`, EXIT.failed);
  }
  let text: string;
  try {
    text = await response.text();
  } catch (error) {
    throw new CommandError(`the answer of ${base.origin} did not come in full: ${causeOf(error)}`, EXIT.failed);
  }
  let parsed: unknown;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    throw new CommandError(`${base.origin} did not answer like a herald server (${response.status}, not JSON): is it the right address?`, EXIT.failed);
  }
  if (response.ok) return parsed;
  throw refusal(response.status, parsed);
}

/** A herald answer's shape, checked: anything else is not a herald server's. */
export function expect<T>(value: unknown, check: (value: unknown) => boolean, base: URL): T {
  if (!check(value)) throw new CommandError(`${base.origin} did not answer like a herald server: is it the right address?`, EXIT.failed);
  return value as T;
}

/** The CommandError of an HTTP error answer `{ error: { code, message } }`. */
export function refusal(status: number, body: unknown): CommandError {
  const error = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  const code = typeof error?.code === 'string' ? error.code : `HTTP ${status}`;
  const message = typeof error?.message === 'string' ? error.message : 'the server refused the request';
  if (typeof error?.code !== 'string') return new CommandError(`the server answered ${status} without a herald error: is it the right address?`, EXIT.failed);
  const exitCode = status === 401 || status === 403 ? EXIT.refused : status === 404 ? EXIT.notFound : status === 412 ? EXIT.versionMismatch : status >= 500 ? EXIT.failed : EXIT.usage;
  return new CommandError(`${code}: ${message}`, exitCode);
}

function causeOf(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error as Error).message;
}

/** A session or variable name as one path segment. */
export const part = (text: string): string => encodeURIComponent(text);
