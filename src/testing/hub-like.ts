import type { ObserverManager } from '../hub/observer-manager.js';

/** The part of a hub that the testing helpers use: {@link ObserverManager} or anything shaped like it. */
export type HubLike = Pick<ObserverManager, 'observe' | 'drain'>;
