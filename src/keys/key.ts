// Key identity. The secret lives in a private field; only the name, a fingerprint and a masked form
// can leave this object, so logging or serialising a Key never prints the secret.
import { createHash } from 'node:crypto';
import { inspect } from 'node:util';

/** Per-key settings from config; none of them secret. */
export interface KeyOptions {
  /** Share for the `weighted` strategy. */
  readonly weight: number;
  /** Keys of one group share limits. */
  readonly group: string | undefined;
  readonly rpm: number | undefined;
  readonly tpm: number | undefined;
  readonly maxConcurrent: number | undefined;
  /** The key's own upstream (`scheme://host:port`) and base path, when it has its own baseUrl (Azure resources). */
  readonly origin?: string | undefined;
  readonly basePath?: string | undefined;
}

export const DEFAULT_KEY_OPTIONS: KeyOptions = Object.freeze({
  weight: 1,
  group: undefined,
  rpm: undefined,
  tpm: undefined,
  maxConcurrent: undefined,
});

export class Key {
  readonly #secret: string;
  /** Stable name from config, e.g. `openai-1` or `team-b`. */
  readonly name: string;
  /** First 8 hex chars of sha256(secret): tells keys apart without revealing them. */
  readonly fingerprint: string;
  readonly options: KeyOptions;

  constructor(name: string, secret: string, options: KeyOptions = DEFAULT_KEY_OPTIONS) {
    this.name = name;
    this.#secret = secret;
    this.fingerprint = fingerprintOf(secret);
    this.options = options;
  }

  #bearer: string | undefined;

  /** The secret, for the one place that injects it into an upstream request. */
  reveal(): string {
    return this.#secret;
  }

  /** `Bearer <secret>`, built once (every attempt on an Authorization upstream sends it). */
  revealBearer(): string {
    this.#bearer ??= `Bearer ${this.#secret}`;
    return this.#bearer;
  }

  /** `sk-…wxyz` for long keys, `****` for short ones (a short key's tail would be most of it). */
  masked(): string {
    const s = this.#secret;
    return s.length >= 20 ? `${s.slice(0, 3)}…${s.slice(-4)}` : '****';
  }

  toJSON(): { name: string; fingerprint: string } {
    return { name: this.name, fingerprint: this.fingerprint };
  }

  [inspect.custom](): string {
    return `Key(${this.name} ${this.fingerprint})`;
  }
}

export function fingerprintOf(secret: string): string {
  return createHash('sha256').update(secret).digest('hex').slice(0, 8);
}
