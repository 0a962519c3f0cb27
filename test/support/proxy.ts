import { createServer, connect, type Server, type Socket } from 'node:net';

/** A fault armed for the next query that contains a marker. */
interface Trap {
  readonly marker: Buffer;
  /**
   * Forward the query and lose its reply, dropping the connection (`'reply'`)
   * or keeping it open and silent from then on (`'silence'`), or lose the
   * query itself (`'query'`).
   */
  readonly lose: 'reply' | 'silence' | 'query';
  /** The reply the server sends when it has run the query (a `'reply'` trap waits for it). */
  readonly done?: Buffer;
  readonly sprung: () => void;
}

/**
 * A TCP proxy between a client and an engine, for faults: `cut()` drops
 * every connection through it and turns new ones away (accepted and closed at
 * once, as a server that has gone would), `restore()` lets them through again.
 * `loseReply` and `loseQuery` break one connection at one chosen query.
 */
export class TcpProxy {
  readonly #server: Server;
  readonly #target: { host: string; port: number };
  readonly #pairs = new Set<readonly [Socket, Socket]>();
  #cut: boolean;
  #trap: Trap | undefined;
  /** New connections are accepted and then held, never forwarded, until {@link release}. */
  #stalled: Socket[] | undefined;

  private constructor(target: { host: string; port: number }, cut: boolean) {
    this.#target = target;
    this.#cut = cut;
    this.#server = createServer((client) => this.#accept(client));
  }

  /** Starts a proxy to `targetUrl`'s host and port, on a free loopback port; `cut` starts it with the way closed. */
  static async start(targetUrl: string, options: { cut?: boolean } = {}): Promise<TcpProxy> {
    const url = new URL(targetUrl);
    const proxy = new TcpProxy({ host: url.hostname, port: Number(url.port) }, options.cut ?? false);
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once('error', reject);
      proxy.#server.listen(0, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as { port: number }).port;
  }

  /** `targetUrl` with its host and port replaced by the proxy's. */
  url(targetUrl: string): string {
    const url = new URL(targetUrl);
    url.hostname = '127.0.0.1';
    url.port = String(this.port);
    return url.toString();
  }

  /** Drops every open connection and turns new ones away until {@link restore}. */
  cut(): void {
    this.#cut = true;
    for (const client of this.#stalled ?? []) client.destroy();
    if (this.#stalled !== undefined) this.#stalled = [];
    for (const [client, upstream] of this.#pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.#pairs.clear();
  }

  restore(): void {
    this.#cut = false;
  }

  /**
   * The next query sent through the proxy that contains `marker` reaches the
   * server; once the server's reply contains `done` (so the server has run
   * it), that reply is thrown away and the connection dropped. Resolves then.
   */
  loseReply(marker: string, done: string): Promise<void> {
    return new Promise((resolve) => {
      this.#trap = { marker: Buffer.from(marker), lose: 'reply', done: Buffer.from(done), sprung: resolve };
    });
  }

  /**
   * As {@link loseReply}, but the connection stays open: the server's reply,
   * and anything after it, never reaches the client, and no error tells it.
   */
  silenceReply(marker: string, done: string): Promise<void> {
    return new Promise((resolve) => {
      this.#trap = { marker: Buffer.from(marker), lose: 'silence', done: Buffer.from(done), sprung: resolve };
    });
  }

  /** New connections are accepted but go nowhere (a server that accepts and never answers) until {@link release}. */
  stall(): void {
    this.#stalled ??= [];
  }

  /** Lets stalled connections, and new ones, through. */
  release(): void {
    const stalled = this.#stalled ?? [];
    this.#stalled = undefined;
    for (const client of stalled) if (!client.destroyed) this.#connect(client);
  }

  /** The next query sent through the proxy that contains `marker` never reaches the server: its connection is dropped instead. Resolves then. */
  loseQuery(marker: string): Promise<void> {
    return new Promise((resolve) => {
      this.#trap = { marker: Buffer.from(marker), lose: 'query', sprung: resolve };
    });
  }

  /** Drops every connection and stops listening. */
  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    if (this.#cut) {
      client.destroy();
      return;
    }
    if (this.#stalled !== undefined) {
      client.pause();
      client.on('error', () => {});
      this.#stalled.push(client);
      return;
    }
    this.#connect(client);
  }

  #connect(client: Socket): void {
    const upstream = connect(this.#target);
    const pair = [client, upstream] as const;
    this.#pairs.add(pair);
    const drop = (): void => {
      this.#pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    /** A `'reply'` trap sprung on this connection: the query went through, its reply is awaited to be lost. */
    let awaiting: Trap | undefined;
    client.on('data', (chunk: Buffer) => {
      const trap = this.#trap;
      if (trap !== undefined && chunk.includes(trap.marker)) {
        this.#trap = undefined;
        if (trap.lose === 'query') {
          drop();
          trap.sprung();
          return;
        }
        awaiting = trap;
      }
      upstream.write(chunk);
    });
    let silent = false;
    upstream.on('data', (chunk: Buffer) => {
      if (silent) return;
      if (awaiting !== undefined && chunk.includes(awaiting.done!)) {
        if (awaiting.lose === 'silence') silent = true;
        else drop();
        awaiting.sprung();
        return;
      }
      client.write(chunk);
    });
    client.resume();
  }
}
