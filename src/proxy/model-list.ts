// GET <prefix>/models on a shared prefix: each member the client may use asked in turn (its own pool, one
// budget for the whole request), the lists they answer merged (models-union.ts) into one answer. A member
// that cannot answer is left out; when none can, the first member's own outcome is the answer.
import type { Upstream } from '../config/load.js';
import type { WireFormat } from '../config/presets.js';
import { KeypoolError } from '../errors.js';
import { decodeBody } from './body-text.js';
import { mergeModelLists, type MemberList } from './models-union.js';
import type { RotateOutcome } from './rotate.js';
import type { Target } from './targets.js';

/** Largest model list read from one member (OpenRouter's is a few hundred KiB). */
const LIST_LIMIT = 8 * 1024 * 1024;

export interface ModelListRequest {
  readonly group: readonly Upstream[];
  readonly targets: ReadonlyMap<string, Target>;
  readonly format: WireFormat;
  /** Asks one member (`last`: no other follows, so it may spend what is left of the budget). */
  readonly run: (target: Target, last: boolean) => Promise<RotateOutcome>;
  /** Whether the client may ask this upstream for this model (its token's allow-lists); absent: any. */
  readonly keep?: ((upstream: string, id: string) => boolean) | undefined;
}

/** What a GET path is on a shared prefix: the model list, one model's entry, or neither. */
export type ModelsPath = { readonly kind: 'list'; readonly model?: undefined } | { readonly kind: 'one'; readonly model: string };

export function modelsPath(path: string, basePath: string): ModelsPath | undefined {
  const q = path.indexOf('?');
  // Gemini's lists are /v1beta/models under an empty base path.
  const m = /^(?:\/v[0-9][a-z0-9]*)?\/models(?:\/([^/]+))?\/?$/.exec((q === -1 ? path : path.slice(0, q)).slice(basePath.length));
  if (m === null) return undefined;
  if (m[1] === undefined) return { kind: 'list' };
  try {
    return { kind: 'one', model: decodeURIComponent(m[1]) };
  } catch {
    return { kind: 'one', model: m[1] };
  }
}

export async function serveModelList(r: ModelListRequest): Promise<RotateOutcome> {
  const lists: MemberList[] = [];
  let first: RotateOutcome | undefined;
  let attempts = 0;
  let retries = 0;
  const members = r.group.filter((u) => r.targets.has(u.name));
  for (const [i, member] of members.entries()) {
    const o = await r.run(r.targets.get(member.name)!, i === members.length - 1);
    attempts += o.attempts;
    // The budget is shared: the last count is the request's.
    retries = o.retries;
    if (o.kind === 'aborted') return { ...o, attempts, retries };
    if (o.kind === 'deliver' && o.status === 200) {
      const raw = await o.attempt.snippet(LIST_LIMIT);
      o.lease.end('successes');
      lists.push({ member, body: decodeBody(raw, o.headers['content-encoding'], LIST_LIMIT) });
      first ??= o;
      continue;
    }
    if (o.kind === 'deliver') {
      o.attempt.cancel(new Error('not a list'));
      o.lease.end(undefined);
    }
    first ??= o;
  }
  const merged = mergeModelLists(r.format, lists, r.keep);
  if (first === undefined) return noMember();
  if (merged === undefined) {
    if (first.kind !== 'deliver') return { ...first, attempts, retries };
    // Its body is spent: the request is over with nothing to show for it.
    return { ...first, kind: 'error', attempts, retries, error: new KeypoolError('keypool_upstream_error', 'No upstream on this prefix answered with a model list keypool could read.'), next: false };
  }
  return { ...first, kind: 'answer', attempts, retries, answer: { status: 200, headers: { 'content-type': 'application/json' }, body: merged }, next: undefined };
}

/** No member the client may use is left (admission lets a client in only when it may use one). */
function noMember(): RotateOutcome {
  const error = new KeypoolError('keypool_upstream_error', 'No upstream on this prefix may answer this client with a model list.');
  return { kind: 'error', error, next: false, attempts: 0, retries: 0, waitedMs: 0, upstreamMs: 0, key: undefined, trail: [] };
}
