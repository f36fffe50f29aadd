// Who may use keypool: named clients, each with its token and optional limits and allow-lists. The
// name is the client's identity for fairness in the waiting room, for logs and for metrics.
import type { Token } from './token.js';

export interface Client {
  readonly name: string;
  readonly token: Token;
  /** Requests in flight at once for this client; more get 429. */
  readonly maxConcurrent: number | undefined;
  /** Requests per minute (fixed window); more get 429. */
  readonly rpm: number | undefined;
  /** Upstream names this client may use; undefined: all. */
  readonly upstreams: ReadonlySet<string> | undefined;
  /** Model patterns (globs: * and ?) this client may ask for; undefined: any. */
  readonly models: readonly RegExp[] | undefined;
}

/** `gpt-4o*` → /^gpt-4o.*$/ : * is any run, ? one character, everything else literal. */
export function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/** Whether the client may ask this upstream for this model ('' = none named: allowed unless models are listed). */
export function allows(c: Client, upstream: string, model: string): 'ok' | 'upstream' | 'model' {
  if (c.upstreams !== undefined && !c.upstreams.has(upstream)) return 'upstream';
  if (c.models !== undefined && !c.models.some((re) => re.test(model))) return 'model';
  return 'ok';
}
