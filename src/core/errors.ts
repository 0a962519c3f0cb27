/** Stable error codes. New ones may be added; none is ever renamed or reused. */
export type HeraldErrorCode =
  | 'HERALD_INVALID_KEY'
  | 'HERALD_INVALID_PATTERN'
  | 'HERALD_INVALID_CALLBACK'
  | 'HERALD_INVALID_OPTION'
  | 'HERALD_INVALID_ARGUMENT'
  | 'HERALD_CLOSED'
  | 'HERALD_TIMEOUT'
  | 'HERALD_SETTLED'
  | 'HERALD_NO_SESSION'
  | 'HERALD_NO_VARIABLE'
  | 'HERALD_SESSION_EXISTS'
  | 'HERALD_INVALID_VALUE'
  | 'HERALD_UNSERIALIZABLE'
  | 'HERALD_STORE'
  | 'HERALD_TOO_LARGE'
  | 'HERALD_GAP'
  | 'HERALD_REENTRANT'
  | 'HERALD_IN_DOUBT'
  | 'HERALD_BACKPLANE';

/**
 * Every error herald throws or reports. `code` is stable and meant for
 * programs; `message` is for people and names the argument at fault.
 */
export class HeraldError extends Error {
  readonly code: HeraldErrorCode;

  constructor(code: HeraldErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A call was given an argument it cannot accept. Nothing was changed. */
export class InvalidArgumentError extends HeraldError {
  /** Builds the standard "`arg` must be X, got Y" error. */
  static expected(code: HeraldErrorCode, arg: string, expected: string, got: unknown): InvalidArgumentError {
    return new InvalidArgumentError(code, `\`${arg}\` must be ${expected}, got ${describeValue(got)}`);
  }
}

/** The hub (or a pending batch) was closed before the call. Nothing was changed. */
export class ClosedError extends HeraldError {
  constructor(message: string) {
    super('HERALD_CLOSED', message);
  }
}

/** A value a variable's schema rejected; `issues` are the validator's own. Nothing was written. */
export class InvalidValueError extends HeraldError {
  readonly issues: readonly unknown[];

  constructor(message: string, issues: readonly unknown[]) {
    super('HERALD_INVALID_VALUE', message);
    this.issues = issues;
  }
}

/** Something did not happen in time: a callback that never settled, or a `nextChange` that waited in vain. */
export class TimeoutError extends HeraldError {
  constructor(message: string, options?: ErrorOptions) {
    super('HERALD_TIMEOUT', message, options);
  }
}

/** A short, safe description of a value for error messages: never its full contents. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'undefined': return 'undefined';
    case 'string': return value.length > 40 ? `a string of length ${value.length}` : JSON.stringify(value);
    case 'number':
    case 'boolean':
    case 'bigint': return `${typeof value} ${String(value)}`;
    case 'symbol': return 'a symbol';
    case 'function': return 'a function';
    default: return Array.isArray(value) ? 'an array' : 'an object';
  }
}
