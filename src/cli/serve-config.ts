import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

/** What `herald serve` runs with, once flags, environment and config file are merged. */
export interface ServeConfig {
  readonly port: number;
  readonly host: string;
  readonly grpcPort: number;
  readonly pg: string | undefined;
  readonly pgSchema: string;
  readonly redis: string | undefined;
  readonly nats: string | undefined;
  readonly pgBackplane: boolean;
  readonly tokenSecret: string | undefined;
  readonly insecure: boolean;
  readonly heartbeatMs: number;
  readonly pingIntervalMs: number;
  readonly history: number;
  readonly logLevel: LogLevel;
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
type LogLevel = (typeof LEVELS)[number];

/** One setting: its flag, kind, default and help; its variable is HERALD_ and the flag in capitals. */
interface Setting {
  readonly flag: string;
  readonly kind: 'string' | 'boolean' | 'integer';
  readonly fallback: string | number | boolean | undefined;
  readonly help: string;
  readonly arg?: string;
}

const SETTINGS: readonly Setting[] = [
  { flag: 'port', kind: 'integer', fallback: 7070, arg: 'N', help: 'port to listen on (0: any free port)' },
  { flag: 'host', kind: 'string', fallback: '127.0.0.1', arg: 'HOST', help: 'address to listen on' },
  { flag: 'grpc-port', kind: 'integer', fallback: 7071, arg: 'N', help: 'port of the gRPC API (proto/herald.proto), on the same address (0: any free port)' },
  { flag: 'pg', kind: 'string', fallback: undefined, arg: 'URL', help: 'keep sessions in PostgreSQL (postgres://…) instead of memory' },
  { flag: 'pg-schema', kind: 'string', fallback: 'herald', arg: 'NAME', help: 'schema of the PostgreSQL tables (created on first use)' },
  { flag: 'redis', kind: 'string', fallback: undefined, arg: 'URL', help: 'join a cluster over Redis (redis://…)' },
  { flag: 'nats', kind: 'string', fallback: undefined, arg: 'URL', help: 'join a cluster over NATS (nats://…)' },
  { flag: 'pg-backplane', kind: 'boolean', fallback: false, help: 'join a cluster over the PostgreSQL of --pg' },
  { flag: 'token-secret', kind: 'string', fallback: undefined, arg: 'S', help: 'HS256 secret of the tokens (32 bytes at least); without it no token is asked for' },
  { flag: 'insecure', kind: 'boolean', fallback: false, help: 'listen on an address other than loopback without a token secret' },
  { flag: 'heartbeat-ms', kind: 'integer', fallback: 15_000, arg: 'N', help: 'SSE comment heartbeat period' },
  { flag: 'ping-interval-ms', kind: 'integer', fallback: 25_000, arg: 'N', help: 'WebSocket ping period; a socket silent past two is closed' },
  { flag: 'history', kind: 'integer', fallback: 10_000, arg: 'N', help: 'changes kept for watchers that resume (0: every resume is a gap)' },
  { flag: 'log-level', kind: 'string', fallback: 'info', arg: 'LEVEL', help: `JSON log lines at this level and above: ${LEVELS.join(', ')}` },
];

/** A user's mistake in the settings: one line, exit code 2. */
export class ConfigError extends Error {}

export const SERVE_USAGE: string = `Usage: herald serve [options]

Serves a session store over HTTP (the JSON API under /v1, watching over SSE
and WebSocket, /healthz, /readyz and /metrics) and over gRPC. By default the
store is in memory, HTTP is on 127.0.0.1:7070 and gRPC on 127.0.0.1:7071.

Options (flags win over HERALD_* environment variables, which win over --config):
${SETTINGS.map((s) => {
  const left = `  --${s.flag}${s.arg === undefined ? '' : ` ${s.arg}`}`;
  const fallback = s.fallback === undefined || s.fallback === false ? '' : `  [default ${String(s.fallback)}]`;
  return `${left.padEnd(26)}${s.help}${fallback}\n${''.padEnd(26)}(${envName(s.flag)})`;
}).join('\n')}
  --config FILE           a JSON object of these settings, keyed by flag name, e.g. {"port": 7070, "pg-schema": "herald"}
                          (HERALD_CONFIG)
  -h, --help              this text

Examples:
  herald serve
  herald serve --pg postgres://postgres@127.0.0.1:5432/test --redis redis://127.0.0.1:6379 --port 7071
  HERALD_TOKEN_SECRET=$(openssl rand -hex 32) herald serve --host 0.0.0.0
  curl -X POST http://127.0.0.1:7070/v1/sessions -d '{"id":"42"}'
  curl -N http://127.0.0.1:7070/v1/sessions/42/watch?includeCurrent=1
`;

function envName(flag: string): string {
  return `HERALD_${flag.toUpperCase().replaceAll('-', '_')}`;
}

/** The settings of `args`, the environment and the config file; `undefined` when `--help` was asked for. */
export function serveConfig(args: readonly string[], env: NodeJS.ProcessEnv): ServeConfig | undefined {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = { config: { type: 'string' }, help: { type: 'boolean', short: 'h' } };
  for (const s of SETTINGS) options[s.flag] = { type: s.kind === 'boolean' ? 'boolean' : 'string' };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: [...args], options, strict: true, allowPositionals: false }));
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  if (values['help'] === true) return undefined;
  // An empty variable is unset, as for every other setting.
  const configPath = (values['config'] as string | undefined) ?? (env['HERALD_CONFIG'] === '' ? undefined : env['HERALD_CONFIG']);
  const file = configPath === undefined ? {} : readConfig(configPath);
  const raw = new Map<string, { value: unknown; from: string }>();
  for (const s of SETTINGS) {
    const flag = values[s.flag];
    const fromEnv = env[envName(s.flag)];
    if (flag !== undefined) raw.set(s.flag, { value: flag, from: `--${s.flag}` });
    else if (fromEnv !== undefined && fromEnv !== '') raw.set(s.flag, { value: fromEnv, from: envName(s.flag) });
    else if (Object.hasOwn(file, s.flag)) raw.set(s.flag, { value: file[s.flag], from: `"${s.flag}" in ${configPath!}` });
  }
  const read = (s: Setting): unknown => {
    const given = raw.get(s.flag);
    if (given === undefined) return s.fallback;
    return coerce(s, given.value, given.from);
  };
  const get = (flag: string): unknown => read(SETTINGS.find((s) => s.flag === flag)!);
  const config: ServeConfig = {
    port: get('port') as number,
    host: get('host') as string,
    grpcPort: get('grpc-port') as number,
    pg: get('pg') as string | undefined,
    pgSchema: get('pg-schema') as string,
    redis: get('redis') as string | undefined,
    nats: get('nats') as string | undefined,
    pgBackplane: get('pg-backplane') as boolean,
    tokenSecret: get('token-secret') as string | undefined,
    insecure: get('insecure') as boolean,
    heartbeatMs: get('heartbeat-ms') as number,
    pingIntervalMs: get('ping-interval-ms') as number,
    history: get('history') as number,
    logLevel: get('log-level') as LogLevel,
  };
  if (config.port > 65535) throw new ConfigError(`--port must be a number from 0 to 65535, got ${config.port}`);
  if (config.grpcPort > 65535) throw new ConfigError(`--grpc-port must be a number from 0 to 65535, got ${config.grpcPort}`);
  if (config.heartbeatMs < 10 || config.pingIntervalMs < 10) throw new ConfigError('--heartbeat-ms and --ping-interval-ms must be 10 or more');
  if (!(LEVELS as readonly string[]).includes(config.logLevel)) throw new ConfigError(`--log-level must be one of ${LEVELS.join(', ')}, got ${JSON.stringify(config.logLevel)}`);
  const clusters = [config.redis !== undefined && '--redis', config.nats !== undefined && '--nats', config.pgBackplane && '--pg-backplane'].filter(Boolean);
  if (clusters.length > 1) throw new ConfigError(`choose one backplane, not ${clusters.join(' and ')}`);
  if (config.pgBackplane && config.pg === undefined) throw new ConfigError('--pg-backplane runs on the PostgreSQL of --pg: give --pg URL too');
  if (config.tokenSecret !== undefined && Buffer.byteLength(config.tokenSecret) < 32) throw new ConfigError('--token-secret must be 32 bytes or more (try: openssl rand -hex 32)');
  return config;
}

function readConfig(path: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new ConfigError(`cannot read the config file ${path}: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ConfigError(`the config file ${path} must hold a JSON object`);
  for (const key of Object.keys(parsed)) {
    if (!SETTINGS.some((s) => s.flag === key)) throw new ConfigError(`the config file ${path} has an unknown setting ${JSON.stringify(key)}; settings are keyed by flag name (${SETTINGS.map((s) => s.flag).join(', ')})`);
  }
  return parsed as Record<string, unknown>;
}

function coerce(s: Setting, value: unknown, from: string): string | number | boolean {
  if (s.kind === 'boolean') {
    if (typeof value === 'boolean') return value;
    if (value === 'true' || value === '1') return true;
    if (value === 'false' || value === '0') return false;
    throw new ConfigError(`${from} must be true or false, got ${JSON.stringify(value)}`);
  }
  if (s.kind === 'integer') {
    const text = String(value);
    if ((typeof value !== 'number' && typeof value !== 'string') || !/^\d{1,9}$/.test(text)) throw new ConfigError(`${from} must be a whole number, got ${JSON.stringify(value)}`);
    return Number(text);
  }
  if (typeof value !== 'string' || value === '') throw new ConfigError(`${from} must be a non-empty string, got ${JSON.stringify(value)}`);
  return value;
}
