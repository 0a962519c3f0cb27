import type { IncomingMessage } from 'node:http';
import { errors as joseErrors, jwtVerify } from 'jose';
import { HttpError } from './http-errors.js';

/** Token checking (DESIGN 9.3). Without it, the server asks for no token. */
export interface AuthOptions {
  /** The HS256 secret tokens are signed with; at least 32 bytes. */
  readonly secret: string | Uint8Array;
  /** Clock skew allowed on `exp` (and `nbf`), in seconds. @default 30 */
  readonly clockToleranceSeconds?: number;
}

/** What a request may do. */
export interface Grant {
  /** Session ids it may touch, or `'*'` for all. */
  readonly sessions: ReadonlySet<string> | '*';
  readonly write: boolean;
  /** When it stops being valid (epoch ms, with the clock tolerance); Infinity without tokens. */
  readonly expiresAt: number;
}

/** Everything allowed, for ever: a server without a secret. */
export const OPEN: Grant = Object.freeze({ sessions: '*', write: true, expiresAt: Infinity });

/**
 * Checks HS256 JWTs with `sessions` (ids or `"*"`), `scope` (`"read"`,
 * `"write"`; write implies read) and a required `exp`.
 */
export class Auth {
  readonly #secret: Uint8Array;
  readonly #tolerance: number;

  constructor(options: AuthOptions) {
    this.#secret = typeof options.secret === 'string' ? new TextEncoder().encode(options.secret) : options.secret;
    this.#tolerance = options.clockToleranceSeconds ?? 30;
  }

  /** The grant of a request's token (`Authorization: Bearer …`, or `?token=`); 401 `HERALD_UNAUTHORIZED` without a good one. */
  async grant(request: IncomingMessage, url: URL): Promise<Grant> {
    const header = request.headers.authorization;
    let token: string | null = null;
    if (header !== undefined) {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (match === null) throw new HttpError(401, 'HERALD_UNAUTHORIZED', 'the Authorization header must be "Bearer <token>"');
      token = match[1]!;
    } else {
      token = url.searchParams.get('token');
    }
    if (token === null || token === '') throw new HttpError(401, 'HERALD_UNAUTHORIZED', 'a token is needed: send Authorization: Bearer <token>, or ?token=<token>');
    return this.verify(token);
  }

  /** The grant of one token; 401 `HERALD_UNAUTHORIZED` saying what is wrong with it. */
  async verify(token: string): Promise<Grant> {
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, this.#secret, { algorithms: ['HS256'], clockTolerance: this.#tolerance, requiredClaims: ['exp'] }));
    } catch (error) {
      throw new HttpError(401, 'HERALD_UNAUTHORIZED', `the token was refused: ${describe(error)}`);
    }
    const sessions = payload['sessions'];
    const scope = payload['scope'];
    if (sessions !== '*' && !(Array.isArray(sessions) && sessions.every((id) => typeof id === 'string'))) {
      throw new HttpError(401, 'HERALD_UNAUTHORIZED', 'the token was refused: its `sessions` claim must be an array of session ids or "*"');
    }
    // ["*"] is refused rather than guessed at: every session, or a session named "*"?
    if (Array.isArray(sessions) && sessions.includes('*')) {
      throw new HttpError(401, 'HERALD_UNAUTHORIZED', 'the token was refused: "*" inside `sessions` is ambiguous; every session is "sessions": "*"');
    }
    if (!Array.isArray(scope) || !scope.every((s) => s === 'read' || s === 'write') || scope.length === 0) {
      throw new HttpError(401, 'HERALD_UNAUTHORIZED', 'the token was refused: its `scope` claim must be an array of "read" and "write"');
    }
    return {
      sessions: sessions === '*' ? '*' : new Set(sessions),
      write: scope.includes('write'),
      expiresAt: (payload['exp'] as number) * 1000 + this.#tolerance * 1000,
    };
  }
}

/** Refuses (403 `HERALD_FORBIDDEN`) what `grant` does not cover: reading or writing `session`, or (no session) anything across sessions. */
export function authorize(grant: Grant, session: string | undefined, write: boolean): void {
  if (write && !grant.write) throw new HttpError(403, 'HERALD_FORBIDDEN', 'the token is read-only: its scope lacks "write"');
  if (grant.sessions === '*') return;
  if (session === undefined) throw new HttpError(403, 'HERALD_FORBIDDEN', 'this needs a token for every session ("sessions": "*")');
  if (!grant.sessions.has(session)) throw new HttpError(403, 'HERALD_FORBIDDEN', `the token does not cover session ${JSON.stringify(session)}`);
}

function describe(error: unknown): string {
  if (error instanceof joseErrors.JWTExpired) return 'it has expired';
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return 'its signature does not match';
  if (error instanceof joseErrors.JWTClaimValidationFailed) return `its \`${error.claim}\` claim is ${error.reason === 'missing' ? 'missing' : 'not valid'}`;
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return 'it is not signed with HS256';
  return 'it is not a well-formed JWT';
}
