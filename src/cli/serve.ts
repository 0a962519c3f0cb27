import { pino, type Logger } from 'pino';
import type { BackplanePort } from '../core/backplane-port.js';
import { ObserverManager } from '../hub/observer-manager.js';
import { SessionStore } from '../store/session-store.js';
import type { SessionStoreLike } from '../store/store.js';
import { createServer } from '../server/server.js';
import { ConfigError, SERVE_USAGE, serveConfig, type ServeConfig } from './serve-config.js';

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/** How long shutdown may take before the process gives up waiting (DESIGN 9.3 asks for an exit within 10 s). */
const SHUTDOWN_MS = 9000;

/**
 * `herald serve`: returns the exit code once the server has stopped (on
 * SIGINT or SIGTERM), or at once for a user's mistake (2) or a start that
 * failed (1).
 */
export async function serve(args: readonly string[], out: (line: string) => void, err: (line: string) => void): Promise<number> {
  let config: ServeConfig | undefined;
  try {
    config = serveConfig(args, process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    err(`herald serve: ${error.message} (herald serve --help lists the options)`);
    return 2;
  }
  if (config === undefined) {
    out(SERVE_USAGE);
    return 0;
  }
  if (!LOOPBACK.has(config.host) && config.tokenSecret === undefined && !config.insecure) {
    err(`herald serve: refusing to listen on ${config.host} without --token-secret: anyone who reaches it could read and write every session; give a secret, or --insecure to accept that`);
    return 2;
  }
  const log = pino({ level: config.logLevel, base: { pid: process.pid } }, pino.destination({ dest: 1, sync: true }));
  let parts: Awaited<ReturnType<typeof build>>;
  try {
    parts = await build(config, log);
  } catch (error) {
    err(`herald serve: ${(error as Error).message}`);
    return 1;
  }
  const { hub, store, describe } = parts;
  const server = createServer({
    hub, store,
    ...(config.tokenSecret === undefined ? {} : { auth: { secret: config.tokenSecret } }),
    limits: { history: config.history },
    timers: { heartbeatMs: config.heartbeatMs, pingIntervalMs: config.pingIntervalMs },
    log,
    grpcPort: config.grpcPort,
  });
  try {
    await server.listen(config.port, config.host);
  } catch (error) {
    err(`herald serve: cannot listen on ${config.host}:${config.port} (HTTP) and :${config.grpcPort} (gRPC): ${(error as Error).message}`);
    await store.close();
    await hub.close();
    return 1;
  }
  const address = server.address!;
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${shown}:${address.port}`;
  const grpc = `${shown}:${server.grpcPort!}`;
  log.info({ url, grpc, store: describe.store, backplane: describe.backplane, tokens: config.tokenSecret !== undefined },
    `herald listening on ${url} (HTTP) and ${grpc} (gRPC), ${describe.store}${describe.backplane === undefined ? '' : `, ${describe.backplane} backplane`}`);
  log.info(`try: curl -X POST ${url}/v1/sessions -d '{"id":"42"}'  then  curl -N ${url}/v1/sessions/42/watch?includeCurrent=1`);

  const signal = await new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  log.info({ signal }, 'herald stopping: watchers get server-closing, requests under way finish');
  const late = setTimeout(() => {
    log.error(`herald did not stop within ${SHUTDOWN_MS} ms; exiting anyway`);
    process.exit(1);
  }, SHUTDOWN_MS);
  late.unref();
  await server.close();
  await store.close();
  await hub.close();
  clearTimeout(late);
  log.info('herald stopped');
  return 0;
}

/** The hub (on its backplane, if any) and the store a config asks for. */
async function build(config: ServeConfig, log: Logger): Promise<{ hub: ObserverManager; store: SessionStoreLike; describe: { store: string; backplane: string | undefined } }> {
  const onStateChange = (state: string): void => log.info({ backplane: state }, `backplane ${state}`);
  const onError = (error: unknown): void => log.warn({ err: error }, 'backplane error');
  let backplane: BackplanePort | undefined;
  let engine: string | undefined;
  if (config.redis !== undefined) {
    const { RedisBackplane } = await engineModule(() => import('../redis.js'), 'ioredis', '--redis');
    backplane = new RedisBackplane({ url: config.redis, onStateChange, onError });
    engine = 'Redis';
  } else if (config.nats !== undefined) {
    const { NatsBackplane } = await engineModule(() => import('../nats.js'), '@nats-io/transport-node', '--nats');
    backplane = new NatsBackplane({ servers: config.nats, onStateChange, onError });
    engine = 'NATS';
  } else if (config.pgBackplane) {
    const { PostgresBackplane } = await engineModule(() => import('../postgres.js'), 'pg', '--pg-backplane');
    backplane = new PostgresBackplane({ connectionString: config.pg!, schema: config.pgSchema, onStateChange, onError });
    engine = 'PostgreSQL';
  }
  const hub = new ObserverManager(backplane === undefined ? {} : { backplane });
  if (config.pg === undefined) return { hub, store: new SessionStore({ hub }), describe: { store: 'in-memory store', backplane: engine } };
  const { PostgresSessionStore } = await engineModule(() => import('../postgres.js'), 'pg', '--pg');
  const store = new PostgresSessionStore({ hub, connectionString: config.pg, schema: config.pgSchema });
  try {
    await store.getSession('herald-start-probe');
  } catch (error) {
    await store.close();
    await hub.close();
    throw new Error(`cannot reach PostgreSQL at --pg: ${(error as Error).message}`);
  }
  return { hub, store, describe: { store: `PostgreSQL store, schema ${config.pgSchema}`, backplane: engine } };
}

/** An engine's entry point; its client is an optional dependency, so a missing one is named. */
async function engineModule<T>(load: () => Promise<T>, client: string, flag: string): Promise<T> {
  try {
    return await load();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND') throw new Error(`${flag} needs the ${client} package: npm install ${client}`);
    throw error;
  }
}
