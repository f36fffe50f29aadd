// Probes many keys, a few at a time: each key's request built, sent, and its answer classified. The
// results come back in the order of the targets, whatever order the answers arrive in.
import type { Upstream } from '../config/load.js';
import type { Key } from '../keys/key.js';
import { classify, type ProbeOutcome } from './classify.js';
import type { ProbeSend } from './http-sender.js';
import { probeRequest } from './probe-request.js';

export interface KeyProbe {
  readonly upstream: Upstream;
  readonly key: Key;
  /** Probe this model rather than the upstream's plain probe. */
  readonly model?: string | undefined;
}

export interface KeyProbeResult {
  readonly target: KeyProbe;
  /** What was asked, for the report: method and path after the base URL. */
  readonly method: string;
  readonly path: string;
  readonly outcome: ProbeOutcome;
}

export interface ProbeAllOptions {
  readonly send: ProbeSend;
  /** Probes in flight at once (at least 1). */
  readonly concurrency: number;
  readonly now: () => number;
  /** cooldown.maxMs: the cap on any header time. */
  readonly maxMs: number;
  readonly signal?: AbortSignal;
}

export async function probeAll(targets: readonly KeyProbe[], o: ProbeAllOptions): Promise<KeyProbeResult[]> {
  const results: KeyProbeResult[] = new Array<KeyProbeResult>(targets.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    // Each worker takes the next target until none is left: at most targets.length iterations in all.
    while (next < targets.length) {
      const i = next++;
      const target = targets[i];
      if (target === undefined) break;
      results[i] = await probeOne(target, o);
    }
  };
  const workers = Math.max(1, Math.min(o.concurrency, targets.length));
  await Promise.all(Array.from({ length: workers }, worker));
  return results;
}

export async function probeOne(target: KeyProbe, o: Omit<ProbeAllOptions, 'concurrency'>): Promise<KeyProbeResult> {
  const { upstream, key } = target;
  const req = probeRequest(upstream, key.reveal(), target.model);
  const answer = await o.send(req, o.signal);
  let outcome = classify(answer, req.model, o.now(), o.maxMs);
  // An upstream that echoes the key back as its "code" must not get it printed.
  if (outcome.kind !== 'unreachable' && outcome.code !== undefined && key.reveal().includes(outcome.code)) {
    outcome = { ...outcome, code: undefined };
  }
  const base = `${upstream.origin}${upstream.basePath}`;
  const path = req.url.startsWith(base) ? req.url.slice(base.length) : req.url;
  return { target, method: req.method, path: path.split('?')[0] ?? path, outcome };
}
