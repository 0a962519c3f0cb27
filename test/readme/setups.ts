/**
 * Named setups for README examples that are fragments: what a block marked
 * `<!-- example: setup=hub,app -->` is prefixed with before it is
 * type-checked. A setup only declares the free names a fragment uses; a
 * block marked `run` must be a whole program and takes no setup.
 */
export const setups: Readonly<Record<string, string>> = {
  /** "Every example below assumes `const hub = new ObserverManager()`." */
  hub: `import { ObserverManager } from 'herald';
const hub = new ObserverManager();`,

  /** A subscription made earlier. */
  sub: `import type { Subscription } from 'herald';
declare const sub: Subscription;`,

  /** A PostgreSQL pool of the application's. */
  pool: `import type pg from 'pg';
declare const pool: pg.Pool;`,

  /** The application's own things the examples call. */
  app: `import type { Change, SessionStoreLike, StoreOptions } from 'herald';
declare const log: { warn(record: object): void };
declare const cache: { set(key: string, value: unknown): Promise<void> };
declare const component: object;
declare const socket: { readonly readyState: number };
declare const signal: AbortSignal;
declare function render(value: unknown): void;
declare function onMode(change: Change): void;
declare function onAny(change: Change): void;
declare const db: { commit(): Promise<void> };
declare const MyStore: new (options: StoreOptions) => SessionStoreLike;`,
};
