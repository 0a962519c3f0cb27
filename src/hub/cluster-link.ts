import type { BackplaneLink, BackplanePort, BackplaneSink, BackplaneState, BackplaneStats, Gap } from '../core/backplane-port.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { Meta } from '../core/types.js';

/** The ways a remote change or a gap signal comes back into the hub. */
export interface ClusterInbound {
  deliver(key: string, oldValue: unknown, newValue: unknown, meta: Meta, at: number): void;
  gap(gap: Gap): void;
}

/**
 * The hub's side of a backplane: what a local change sends out, what local
 * interest asks the engine for, and what comes back in. The hub knows a
 * backplane only through this link and the narrow {@link BackplanePort}.
 */
export class ClusterLink {
  readonly port: BackplanePort;
  readonly #link: BackplaneLink;

  constructor(port: unknown, inbound: ClusterInbound) {
    if (typeof port !== 'object' || port === null || typeof (port as BackplanePort).attach !== 'function') {
      throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.backplane', 'a backplane (herald/redis, herald/nats, herald/postgres)', port);
    }
    this.port = port as BackplanePort;
    this.#link = this.port.attach(sinkOf(inbound));
  }

  /** Encodes a local change, or throws (`HERALD_UNSERIALIZABLE`, `HERALD_TOO_LARGE`): call it before delivering anything. */
  encode(key: string, oldValue: unknown, newValue: unknown, meta: Meta, at: number): Uint8Array | string {
    return this.#link.encode(key, oldValue, newValue, meta, at);
  }

  publish(key: string, data: Uint8Array | string): void {
    this.#link.publish(key, data);
  }

  assertEncodable(key: string, oldValue: unknown, newValue: unknown, meta: Meta): void {
    this.#link.assertEncodable(key, oldValue, newValue, meta);
  }

  /** What the registry tells of a key or pattern gaining its first observer or losing its last. */
  readonly interest = (name: string, isPattern: boolean, wanted: boolean): void => {
    this.#link.interest(name, isPattern, wanted);
  };

  /** Throws for a key or pattern the engine could not carry. */
  assertKey(name: string, pattern: boolean): void {
    this.#link.assertKey?.(name, pattern);
  }

  inspect(key: string): { readonly state: BackplaneState; readonly subscribed: boolean } {
    return { state: this.port.state, subscribed: this.#link.isSubscribed(key) };
  }

  stats(): BackplaneStats {
    return this.port.stats();
  }

  close(): Promise<void> {
    return this.port.close();
  }
}

/** Its own function, so that the sink's closures hold the inbound side only. */
function sinkOf(inbound: ClusterInbound): BackplaneSink {
  return {
    deliver: (key, oldValue, newValue, meta, at) => inbound.deliver(key, oldValue, newValue, meta, at),
    gap: (gap) => inbound.gap(gap),
  };
}
