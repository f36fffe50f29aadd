// Across upstreams: which may share a client path prefix (routing there goes by model).
import type { Upstream } from './upstream.js';

/**
 * Upstreams may share a prefix only when each lists its `models` (a request goes to the one that serves
 * its model; one of them may list none: it takes the rest) and they speak the same wire format.
 */
export function checkPrefixes(upstreams: readonly Upstream[], problems: string[]): void {
  const byPrefix = new Map<string, number[]>();
  upstreams.forEach((u, i) => byPrefix.set(u.prefix, [...(byPrefix.get(u.prefix) ?? []), i]));
  for (const [prefix, members] of byPrefix) {
    if (members.length < 2) continue;
    const open = members.filter((i) => upstreams[i]!.models === undefined);
    for (const i of open.slice(1)) {
      problems.push(`upstreams[${i}].prefix: ${prefix} is already used by upstreams[${members[0]}]; upstreams sharing a prefix must list their models (one may list none and take the rest)`);
    }
    const format = upstreams[members[0]!]!.format;
    for (const i of members) {
      if (upstreams[i]!.format !== format) problems.push(`upstreams[${i}].prefix: ${prefix} is shared with an upstream of another wire format (${format}); one prefix, one format`);
    }
  }
}
