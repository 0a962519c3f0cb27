import { COMMON, CommandError, EXIT, parse, serverUrl, tokenOf, under, type Io } from './remote.js';

export const STATS_USAGE: string = `Usage: herald stats URL [--token T] [--json]

Prints a server's statistics (its /metrics): the hub's counters and, per
transport, connections, watches and events.

Options:
  --token T    a token, if the server asks for one (HERALD_TOKEN)
  --json       print JSON: { metric: value } and { metric: { transport: value } }
  -h, --help   this text

Exit codes: 0 printed, 1 the server failed or cannot be reached, 2 a mistake in
the command, 4 the token was refused.

Example:
  herald stats http://127.0.0.1:7070
`;

/** `herald stats`. */
export async function stats(args: readonly string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, COMMON);
  if (values.help === true) {
    io.out(STATS_USAGE);
    return EXIT.ok;
  }
  const [url, ...extra] = positionals;
  if (extra.length > 0) throw new CommandError('give one URL, e.g. herald stats http://127.0.0.1:7070', EXIT.usage);
  const base = serverUrl(url);
  const token = tokenOf(values, io.env);
  let response: Response;
  try {
    response = await fetch(under(base, '/metrics'), { headers: token === undefined ? {} : { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(30_000) });
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code;
    throw new CommandError(`cannot reach ${base.origin}: ${cause ?? (error as Error).message}`, EXIT.failed);
  }
  if (response.status === 401 || response.status === 403) throw new CommandError(`the server refused the token (${response.status})`, EXIT.refused);
  if (!response.ok) throw new CommandError(`the server answered ${response.status} for /metrics`, EXIT.failed);
  let text: string;
  try {
    text = await response.text();
  } catch (error) {
    throw new CommandError(`the answer of ${base.origin} did not come in full: ${(error as Error).message}`, EXIT.failed);
  }
  const { hub, transports } = readMetrics(text);
  if (hub['herald_notifications_total'] === undefined) throw new CommandError(`${base.origin}/metrics is not a herald server's: is it the right address?`, EXIT.failed);
  if (values.json === true || !io.tty) {
    io.out(JSON.stringify({ ...hub, ...transports }));
    return EXIT.ok;
  }
  const width = Math.max(...Object.keys(hub).map((name) => name.length), ...Object.keys(transports).map((name) => name.length));
  for (const [name, value] of Object.entries(hub)) io.out(`${name.padEnd(width)}  ${value.toLocaleString('en-US')}`);
  const kinds = [...new Set(Object.values(transports).flatMap((byTransport) => Object.keys(byTransport)))];
  io.out('');
  io.out(`${''.padEnd(width)}  ${kinds.map((kind) => kind.padStart(10)).join('')}`);
  for (const [name, byTransport] of Object.entries(transports)) {
    io.out(`${name.padEnd(width)}  ${kinds.map((kind) => (byTransport[kind] ?? 0).toLocaleString('en-US').padStart(10)).join('')}`);
  }
  return EXIT.ok;
}

/** The samples of herald's Prometheus text: plain ones, and those labelled by transport. */
function readMetrics(text: string): { hub: Record<string, number>; transports: Record<string, Record<string, number>> } {
  const hub: Record<string, number> = {};
  const transports: Record<string, Record<string, number>> = {};
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+)(?:\{transport="([a-z]+)"\})? (\S+)$/.exec(line);
    if (match === null) continue;
    const [, name, transport, value] = match;
    if (transport === undefined) hub[name!] = Number(value);
    else (transports[name!] ??= {})[transport] = Number(value);
  }
  return { hub, transports };
}
