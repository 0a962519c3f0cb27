import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy between a client and an engine, for faults: `cut()` drops
 * every connection through it and turns new ones away (accepted and closed at
 * once, as a server that has gone would), `restore()` lets them through again.
 */
export class TcpProxy {
  readonly #server: Server;
  readonly #target: { host: string; port: number };
  readonly #pairs = new Set<readonly [Socket, Socket]>();
  #cut: boolean;

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
    for (const [client, upstream] of this.#pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.#pairs.clear();
  }

  restore(): void {
    this.#cut = false;
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
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
