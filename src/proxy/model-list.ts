// GET <prefix>/models on a shared prefix: each member asked in turn (its own pool, its own attempt loop),
// the lists it answers merged (models-union.ts) into one answer. A member that cannot answer is left out;
// when none can, the first member's own outcome is the answer.
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
  readonly run: (target: Target) => Promise<RotateOutcome>;
}

export async function serveModelList(r: ModelListRequest): Promise<RotateOutcome> {
  const lists: MemberList[] = [];
  let first: RotateOutcome | undefined;
  let attempts = 0;
  for (const member of r.group) {
    const target = r.targets.get(member.name);
    if (target === undefined) continue;
    const o = await r.run(target);
    attempts += o.attempts;
    if (o.kind === 'aborted') return o;
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
  const merged = mergeModelLists(r.format, lists);
  if (first === undefined) throw new Error('a prefix always has an upstream');
  if (merged === undefined) {
    if (first.kind !== 'deliver') return first;
    // Its body is spent: the request is over with nothing to show for it.
    return { ...first, kind: 'error', attempts, error: new KeypoolError('keypool_upstream_error', 'No upstream on this prefix answered with a model list keypool could read.'), next: false };
  }
  return { ...first, kind: 'answer', attempts, answer: { status: 200, headers: { 'content-type': 'application/json' }, body: merged }, next: undefined };
}
