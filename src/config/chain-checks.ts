// Across upstreams: what a fallback chain may name. Each refusal names the step's field and never repeats
// what was written there.
import { formatPath } from './field-path.js';
import { steps, type FallbackStep, type Upstream } from './upstream.js';
import type { UpstreamInput } from './upstream-schema.js';

/**
 * Every chain names upstreams that exist and speak the same wire format as the upstream it starts from; no
 * step asks its own upstream for the model the chain is for (the same request to the same pool again: the
 * pool's own rotation and budget already did that), and no chain names one target twice.
 */
export function checkChains(raw: readonly UpstreamInput[], upstreams: readonly Upstream[], problems: string[]): void {
  const byName = new Map(upstreams.map((u) => [u.name, u] as const));
  const known = upstreams.map((u) => u.name).join(', ');
  upstreams.forEach((u, i) => {
    // `model`: the model every request on this chain asks for (a modelFallbacks key), undefined when any.
    const check = (list: readonly FallbackStep[], field: readonly PropertyKey[], model: string | undefined): void =>
      list.forEach((step, j) => {
        const target = byName.get(step.upstream);
        const at = formatPath(['upstreams', i, ...field, j, 'upstream']);
        const first = list.findIndex((s) => s.upstream === step.upstream && s.model === step.model);
        // The name or model written is not repeated (a value pasted in the wrong place must not come back in an error).
        if (target === undefined) problems.push(`${at}: names no upstream; the upstreams are ${known}`);
        else if (target.format !== u.format) {
          problems.push(`${at}: ${target.name} speaks ${target.format} and ${u.name} speaks ${u.format}; a chain stays within one wire format`);
        } else if (target === u && (step.model ?? model) === model) {
          problems.push(`${at}: ${u.name} again with the same request to the same pool; name another upstream or another model`);
        } else if (first < j) {
          problems.push(`${at}: the same target as ${formatPath(['upstreams', i, ...field, first])}; list each target once`);
        }
      });
    check(u.fallbacks, ['fallbacks'], undefined);
    for (const [glob, list] of Object.entries(raw[i]?.modelFallbacks ?? {})) check(steps(list), ['modelFallbacks', glob], glob);
    check(u.contextLengthFallbacks, ['errorFallbacks', 'contextLengthExceeded'], undefined);
  });
}
