import type { ServerResponse } from 'node:http';
import type { ServerLog } from './connections.js';
import { HeraldError } from '../core/errors.js';

/** An error the HTTP API answers with its own code and status. */
export class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

/** The status of each store and hub code (DESIGN 9.1); anything unknown is a 500. */
const STATUS: Readonly<Record<string, number>> = {
  HERALD_INVALID_ARGUMENT: 400,
  HERALD_INVALID_KEY: 400,
  HERALD_INVALID_OPTION: 400,
  HERALD_INVALID_VALUE: 400,
  HERALD_UNSERIALIZABLE: 400,
  HERALD_NO_SESSION: 404,
  HERALD_NO_VARIABLE: 404,
  HERALD_SESSION_EXISTS: 409,
  HERALD_TOO_LARGE: 413,
  HERALD_CLOSED: 503,
  HERALD_TIMEOUT: 503,
  HERALD_STORE: 503,
  HERALD_IN_DOUBT: 503,
};

/** What an error becomes on the wire: a status and `{ error: { code, message } }`, never a stack. */
export function toHttp(error: unknown): { status: number; body: { error: { code: string; message: string } } } {
  if (error instanceof HttpError) return { status: error.status, body: { error: { code: error.code, message: error.message } } };
  if (error instanceof HeraldError) {
    return { status: STATUS[error.code] ?? 500, body: { error: { code: error.code, message: error.message } } };
  }
  return { status: 500, body: { error: { code: 'HERALD_INTERNAL', message: 'the server failed to handle the request' } } };
}

/** Answers with `error` as JSON (or, once a response has begun, just ends it). */
export function replyError(response: ServerResponse, error: unknown): void {
  if (response.headersSent) return void response.end();
  const { status, body } = toHttp(error);
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' }).end(text);
}

/** Logs an error the server did not expect (one answered with a 5xx other than a store's known codes). */
export function logFailure(log: ServerLog, error: unknown, fields: object): void {
  if (toHttp(error).status >= 500 && !(error instanceof HeraldError)) log.error({ ...fields, err: error }, 'request failed');
}
