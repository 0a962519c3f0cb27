import { COMMON, CommandError, EXIT, expect, parse, part, request, serverUrl, tokenOf, type Io } from './remote.js';

/** Whether every number in `value` is finite: JSON has no Infinity, and would carry it as null. */
function finite(value: unknown, depth = 0): boolean {
  if (typeof value === 'number') return Number.isFinite(value);
  if (typeof value !== 'object' || value === null || depth > 256) return true;
  return Object.values(value).every((item) => finite(item, depth + 1));
}

export const SET_USAGE: string = `Usage: herald set URL SESSION NAME JSON [--if-version N] [--token T] [--json]

Sets a variable to a JSON value and prints the result. With --if-version, only
if the variable is still at that version (0: only if unset); otherwise nothing
is written and the exit code is 5.

Options:
  --if-version N   compare-and-set: the version the variable must be at
  --token T        a token, if the server asks for one (HERALD_TOKEN)
  --json           print the server's answer as JSON
  -h, --help       this text

Exit codes: 0 set, 1 the server failed or cannot be reached, 2 a mistake in the
command, 3 no such session, 4 the token was refused, 5 the version moved.

Example:
  herald set http://127.0.0.1:7070 42 mode '"eco"'
  herald set http://127.0.0.1:7070 42 limits '{"max": 3}' --if-version 1
`;

export const GET_USAGE: string = `Usage: herald get URL SESSION [NAME] [--token T] [--json]

Prints one variable (NAME) or all of a session's variables, with versions.

Options:
  --token T    a token, if the server asks for one (HERALD_TOKEN)
  --json       print JSON
  -h, --help   this text

Exit codes: 0 found, 1 the server failed or cannot be reached, 2 a mistake in
the command, 3 no such session or variable, 4 the token was refused.

Example:
  herald get http://127.0.0.1:7070 42 mode
  herald get http://127.0.0.1:7070 42 --json
`;

/** `herald set`. */
export async function set(args: readonly string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, { ...COMMON, 'if-version': { type: 'string' } });
  if (values.help === true) {
    io.out(SET_USAGE);
    return EXIT.ok;
  }
  const [url, session, name, json, ...extra] = positionals;
  if (session === undefined || name === undefined || json === undefined || extra.length > 0) {
    throw new CommandError('give URL SESSION NAME JSON, e.g. herald set http://127.0.0.1:7070 42 mode \'"eco"\'', EXIT.usage);
  }
  const base = serverUrl(url);
  if (name === '') throw new CommandError('the variable name is empty', EXIT.usage);
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    throw new CommandError(`the value must be JSON, got ${JSON.stringify(json.slice(0, 40))}: a string is '"eco"', with the quotes`, EXIT.usage);
  }
  if (!finite(value)) throw new CommandError('the value holds a number JSON cannot carry (such as 1e400): it would arrive as null', EXIT.usage);
  const ifVersion = values['if-version'];
  if (ifVersion !== undefined && !/^\d{1,15}$/.test(ifVersion)) throw new CommandError(`--if-version must be a version such as 3, got ${JSON.stringify(ifVersion)}`, EXIT.usage);
  const answer = await request(base, 'PUT', `/v1/sessions/${part(session)}/variables/${part(name)}`, tokenOf(values, io.env), { value },
    ifVersion === undefined ? {} : { 'if-match': `"${ifVersion}"` });
  const result = expect<{ oldValue: unknown; newValue: unknown; version: number }>(answer, (v) => typeof (v as { version?: unknown } | null)?.version === 'number', base);
  if (values.json === true || !io.tty) io.out(JSON.stringify(result));
  else io.out(`${name} = ${JSON.stringify(result.newValue)} (version ${result.version}, was ${JSON.stringify(result.oldValue)})`);
  return EXIT.ok;
}

/** `herald get`. */
export async function get(args: readonly string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, COMMON);
  if (values.help === true) {
    io.out(GET_USAGE);
    return EXIT.ok;
  }
  const [url, session, name, ...extra] = positionals;
  if (session === undefined || extra.length > 0) throw new CommandError('give URL SESSION [NAME], e.g. herald get http://127.0.0.1:7070 42 mode', EXIT.usage);
  const base = serverUrl(url);
  const token = tokenOf(values, io.env);
  const path = `/v1/sessions/${part(session)}/variables${name === undefined ? '' : `/${part(name)}`}`;
  const answer = await request(base, 'GET', path, token);
  const isVariable = (v: unknown): boolean => typeof (v as { name?: unknown } | null)?.name === 'string' && typeof (v as { version?: unknown }).version === 'number';
  const variables = expect<{ name: string; value: unknown; version: number }[]>(name === undefined ? answer : [answer], (v) => Array.isArray(v) && v.every(isVariable), base);
  if (values.json === true || !io.tty) {
    io.out(JSON.stringify(answer));
    return EXIT.ok;
  }
  if (variables.length === 0) io.out(`session ${session} has no variables`);
  const width = Math.max(0, ...variables.map((v) => v.name.length));
  for (const v of variables) io.out(`${v.name.padEnd(width)}  ${JSON.stringify(v.value)}  (version ${v.version})`);
  return EXIT.ok;
}
