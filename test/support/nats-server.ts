import { spawn, type ChildProcess } from 'node:child_process';
import { within } from './deadline.js';
import { freePort } from './herald-cli.js';

const BINARY = process.env['HERALD_NATS_SERVER'] ?? '/usr/sbin/nats-server';

/**
 * A NATS server of the test's own, with its monitoring endpoint on: the
 * shared server on 4222 has none, and is never reconfigured by a test.
 */
export class OwnNatsServer {
  private constructor(readonly url: string, readonly monitorUrl: string, readonly process: ChildProcess) {}

  static async start(): Promise<OwnNatsServer> {
    const [port, monitor] = [await freePort(), await freePort()];
    const child = spawn(BINARY, ['-a', '127.0.0.1', '-p', String(port), '-m', String(monitor)], { stdio: 'ignore' });
    const server = new OwnNatsServer(`nats://127.0.0.1:${port}`, `http://127.0.0.1:${monitor}`, child);
    let waiting = true;
    const up = (async () => {
      while (waiting) {
        try {
          if ((await fetch(`${server.monitorUrl}/healthz`)).ok) return;
        } catch {
          // not listening yet
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    try {
      await within(up, 10_000, 'the test\'s NATS server to start');
    } finally {
      waiting = false;
    }
    return server;
  }

  async stop(): Promise<void> {
    if (this.process.exitCode !== null) return;
    const exited = new Promise((resolve) => this.process.once('exit', resolve));
    this.process.kill('SIGTERM');
    await within(exited, 10_000, 'the test\'s NATS server to stop');
  }
}
