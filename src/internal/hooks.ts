/** Hub methods that herald's own modules use and that are no part of the public API. @internal */
export const reportObserverError: unique symbol = Symbol('herald.reportObserverError');
