import { EventEmitter as NodeEmitter, setMaxListeners } from 'node:events';
import Emittery from 'emittery';
import { EventEmitter as EventEmitter3 } from 'eventemitter3';
import mittModule from 'mitt';
import { createNanoEvents } from 'nanoevents';
import { Subject, type Subscription as RxSubscription } from 'rxjs';
import { EventEmitter as Tseep } from 'tseep';
import { ObserverManager } from '../src/index.js';

/** What every observer receives: herald builds its own change (frozen, with `meta`, `seq` and `at`). */
export interface BenchChange {
  readonly key: string;
  readonly oldValue: number;
  readonly newValue: number;
}
export type Fn = (change: BenchChange) => void;

/** One emitter, as the benchmark drives it. `handle` is whatever `on` returns that `off` needs. */
export interface Instance {
  on(key: string, fn: Fn): unknown;
  off(key: string, fn: Fn, handle: unknown): void;
  emit(key: string, oldValue: number, newValue: number): void;
  /**
   * Registers `fn` for every key matching `pattern` (herald's `observePattern`).
   * Undefined for the emitters without wildcards: their equivalent is one
   * more listener on the key itself.
   */
  onPattern?(pattern: string, fn: Fn): unknown;
  /** Resolves when every callback of every emit so far has run; undefined when emit is synchronous. */
  settle?: () => Promise<void>;
}

export interface Contender {
  readonly name: string;
  /** The floor is not a peer: ratios are taken against it. */
  readonly floor?: boolean;
  create(): Instance;
}

// mitt's types describe its CommonJS build; its ESM build, which Node loads here, exports the factory as default.
const mitt = ((mittModule as unknown as { default?: unknown }).default ?? mittModule) as unknown as typeof mittModule.default;

const change = (key: string, oldValue: number, newValue: number): BenchChange => ({ key, oldValue, newValue });

export const herald: Contender = {
  name: 'herald',
  create() {
    const hub = new ObserverManager({ sweepIntervalMs: 0 });
    return {
      on: (key, fn) => hub.observe(key, fn as never),
      off: (_key, _fn, handle) => void (handle as { unsubscribe(): boolean }).unsubscribe(),
      // herald builds its change only when someone observes the key (or a pattern).
      emit: (key, oldValue, newValue) => void hub.notify(key, oldValue, newValue),
      onPattern: (pattern, fn) => hub.observePattern(pattern, fn as never),
      settle: () => hub.drain(),
    };
  },
};

/** The floor's handle: it knows its slot, so that removal needs no search. */
class FloorSlot {
  constructor(
    readonly key: string,
    readonly fns: Fn[],
    readonly slots: FloorSlot[],
    public index: number,
  ) {}
}

/**
 * The floor: a Map of plain arrays of closures, called in a bare loop, which
 * no emitter can beat at fan-out. Each handle knows its index in a parallel
 * array of handles: removal moves the last closure and its handle into the
 * freed slot and updates that handle's index, O(1) with no search (order is
 * not kept, which no emitter that promises order can do).
 */
export const floor: Contender = {
  name: 'floor',
  floor: true,
  create() {
    const byKey = new Map<string, Fn[]>();
    const slotsByKey = new Map<string, FloorSlot[]>();
    return {
      on(key, fn) {
        let fns = byKey.get(key);
        let slots = slotsByKey.get(key);
        if (fns === undefined || slots === undefined) {
          byKey.set(key, (fns = []));
          slotsByKey.set(key, (slots = []));
        }
        const slot = new FloorSlot(key, fns, slots, fns.length);
        fns.push(fn);
        slots.push(slot);
        return slot;
      },
      off(_key, _fn, handle) {
        const slot = handle as FloorSlot;
        const { fns, slots, index } = slot;
        const last = fns.length - 1;
        if (index !== last) {
          const moved = slots[last]!;
          fns[index] = fns[last]!;
          slots[index] = moved;
          moved.index = index;
        }
        fns.pop();
        slots.pop();
        slot.index = -1;
        if (last === 0) {
          byKey.delete(slot.key);
          slotsByKey.delete(slot.key);
        }
      },
      emit(key, oldValue, newValue) {
        const fns = byKey.get(key);
        if (fns === undefined) return;
        const c = change(key, oldValue, newValue);
        for (let i = 0; i < fns.length; i++) fns[i]!(c);
      },
    };
  },
};

/** The emitters whose `on`, `off` and `emit` take the key, the callback and the payload as they are. */
interface PlainEmitter {
  on(key: string, fn: Fn): unknown;
  off(key: string, fn: Fn): unknown;
  emit(key: string, payload: BenchChange): unknown;
  listenerCount(key: string): number;
}

/** The payload is built only when the key has a listener, as herald and the floor do inside. */
function plain(emitter: PlainEmitter): Instance {
  return {
    on: (key, fn) => emitter.on(key, fn),
    off: (key, fn) => void emitter.off(key, fn),
    emit(key, oldValue, newValue) {
      if (emitter.listenerCount(key) !== 0) emitter.emit(key, change(key, oldValue, newValue));
    },
  };
}

export const nodeEvents: Contender = {
  name: 'node:events',
  create() {
    const emitter = new NodeEmitter();
    emitter.setMaxListeners(0);
    return plain(emitter);
  },
};

export const eventTarget: Contender = {
  name: 'EventTarget',
  create() {
    const target = new EventTarget();
    setMaxListeners(0, target);
    // EventTarget cannot be asked whether a type has listeners: it builds its event every time.
    return {
      on(key, fn) {
        const listener = (event: Event): void => fn((event as CustomEvent<BenchChange>).detail);
        target.addEventListener(key, listener);
        return listener;
      },
      off: (key, _fn, listener) => target.removeEventListener(key, listener as (event: Event) => void),
      emit: (key, oldValue, newValue) => void target.dispatchEvent(new CustomEvent(key, { detail: change(key, oldValue, newValue) })),
    };
  },
};

export const eventemitter3: Contender = {
  name: 'eventemitter3',
  create: () => plain(new EventEmitter3()),
};

export const tseep: Contender = {
  name: 'tseep',
  create() {
    const emitter = new Tseep<Record<string, Fn>>();
    emitter.setMaxListeners(Infinity);
    return plain(emitter);
  },
};

export const mittContender: Contender = {
  name: 'mitt',
  create() {
    const emitter = mitt<Record<string, BenchChange>>();
    // mitt keeps a key's array after its last handler goes: the length says whether anyone listens.
    return plain({ ...emitter, listenerCount: (key) => emitter.all.get(key)?.length ?? 0 });
  },
};

export const nanoevents: Contender = {
  name: 'nanoevents',
  create() {
    const emitter = createNanoEvents<Record<string, Fn>>();
    return {
      on: (key, fn) => emitter.on(key, fn),
      off: (_key, _fn, unbind) => (unbind as () => void)(),
      emit(key, oldValue, newValue) {
        // nanoevents keeps a key's array after its last listener goes.
        if (emitter.events[key]?.length) emitter.emit(key, change(key, oldValue, newValue));
      },
    };
  },
};

export const emittery: Contender = {
  name: 'emittery',
  create() {
    const emitter = new Emittery<Record<string, BenchChange>>();
    let pending: Promise<void>[] = [];
    return {
      on: (key, fn) => emitter.on(key, fn),
      off: (_key, _fn, unsubscribe) => (unsubscribe as () => void)(),
      emit(key, oldValue, newValue) {
        if (emitter.listenerCount(key) !== 0) pending.push(emitter.emit(key, change(key, oldValue, newValue)));
      },
      settle: async () => {
        const all = pending;
        pending = [];
        await Promise.all(all);
      },
    };
  },
};

/** RxJS: one Subject per key, dropped when its last subscriber goes (as a careful user would). */
export const rxjs: Contender = {
  name: 'rxjs Subject',
  create() {
    const subjects = new Map<string, Subject<BenchChange>>();
    return {
      on(key, fn) {
        let subject = subjects.get(key);
        if (subject === undefined) subjects.set(key, (subject = new Subject()));
        return subject.subscribe(fn);
      },
      off(key, _fn, subscription) {
        (subscription as RxSubscription).unsubscribe();
        const subject = subjects.get(key);
        if (subject !== undefined && !subject.observed) subjects.delete(key);
      },
      emit: (key, oldValue, newValue) => subjects.get(key)?.next(change(key, oldValue, newValue)),
    };
  },
};

export const PEERS: readonly Contender[] = [nodeEvents, eventTarget, eventemitter3, tseep, mittContender, nanoevents, emittery, rxjs];
export const ALL: readonly Contender[] = [herald, floor, ...PEERS];

let sink = 0;
/** Keeps the callbacks' work observable so that it cannot be optimised away. */
export function readSink(): number {
  return sink;
}

/** Eight distinct function literals: an eight-kind observer set makes call sites polymorphic. */
const KINDS: readonly ((slot: number) => Fn)[] = [
  (slot) => (c) => { sink = (sink + c.newValue + slot) | 0; },
  (slot) => (c) => { sink = (sink ^ (c.newValue + slot)) | 0; },
  (slot) => (c) => { sink = (sink - c.oldValue + slot) | 0; },
  (slot) => (c) => { sink = (sink + (c.newValue << 1) + slot) | 0; },
  (slot) => (c) => { sink = (sink | (c.newValue & slot)) | 0; },
  (slot) => (c) => { sink = (sink + c.newValue * 3 + slot) | 0; },
  (slot) => (c) => { sink = (sink + c.key.length + slot) | 0; },
  (slot) => (c) => { sink = (sink + (c.newValue >> 1) + slot) | 0; },
];

/** `count` closures, each its own, made from `kinds` function literals. */
export function makeObservers(count: number, kinds: 1 | 8): Fn[] {
  const fns: Fn[] = [];
  for (let i = 0; i < count; i++) fns.push(KINDS[i % kinds]!(i));
  return fns;
}
