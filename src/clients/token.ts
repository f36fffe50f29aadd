// A client or admin token: the secret lives in a private field, and only its name and a digest leave
// this object. Tokens are matched by digest (sha256), so no comparison ever runs over the secret itself
// and a lookup takes the same time whatever the token presented shares with a real one.
import { createHash } from 'node:crypto';
import { inspect } from 'node:util';

export class Token {
  readonly #secret: string;
  /** Whose token it is: a client's name, or "admin". */
  readonly name: string;
  /** sha256 of the secret, hex: what a presented token is looked up by. */
  readonly digest: string;

  constructor(name: string, secret: string) {
    this.name = name;
    this.#secret = secret;
    this.digest = digestOf(secret);
  }

  /** The secret itself: only for tests and for a client a test drives. */
  reveal(): string {
    return this.#secret;
  }

  toJSON(): { name: string; token: '[set]' } {
    return { name: this.name, token: '[set]' };
  }

  [inspect.custom](): string {
    return `Token(${this.name})`;
  }
}

export function digestOf(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Pulls the credential a client sent, whichever header its SDK uses: Bearer, x-api-key, api-key, x-goog-api-key. */
export function presentedToken(headers: Readonly<Record<string, string | string[] | undefined>>): string | undefined {
  const auth = first(headers.authorization);
  if (auth !== undefined) {
    const m = /^\s*bearer\s+(\S+)\s*$/i.exec(auth);
    if (m) return m[1];
  }
  return first(headers['x-api-key']) ?? first(headers['api-key']) ?? first(headers['x-goog-api-key']);
}

function first(v: string | string[] | undefined): string | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  const t = s?.trim();
  return t === undefined || t === '' ? undefined : t;
}
