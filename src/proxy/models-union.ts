// GET <prefix>/models on a prefix several upstreams share: one list, the union of what each member
// answers, each member's entries kept only for the models it serves (its `models` globs), first member
// first, no id twice. Each provider's list shape is kept (OpenAI and Anthropic `data`, Gemini `models`).
// Pure.
import type { Upstream } from '../config/load.js';
import type { WireFormat } from '../config/presets.js';

export interface MemberList {
  readonly member: Upstream;
  /** The member's 200 body. */
  readonly body: string;
}

/** The merged body, or undefined when no member's answer was a list keypool can read. */
export function mergeModelLists(format: WireFormat, lists: readonly MemberList[], keep?: (upstream: string, id: string) => boolean): string | undefined {
  const field = format === 'gemini' ? 'models' : 'data';
  const seen = new Set<string>();
  const merged: unknown[] = [];
  let base: Record<string, unknown> | undefined;
  for (const { member, body } of lists) {
    const parsed = parse(body);
    const entries = parsed?.[field];
    if (parsed === undefined || !Array.isArray(entries)) continue;
    base ??= parsed;
    for (const entry of entries) {
      const id = idOf(entry, format);
      if (id === undefined || seen.has(id)) continue;
      if (member.models !== undefined && !member.models.some((re) => re.test(id))) continue;
      // A client held to some models is shown only those (the rest would get it a 403).
      if (keep !== undefined && !keep(member.name, id)) continue;
      seen.add(id);
      merged.push(entry);
    }
  }
  if (base === undefined) return undefined;
  const out: Record<string, unknown> = { ...base, [field]: merged };
  // Paging cursors belong to one member's list; the union is one page.
  if ('has_more' in out) out.has_more = false;
  if ('first_id' in out) out.first_id = idOf(merged[0], format) ?? null;
  if ('last_id' in out) out.last_id = idOf(merged[merged.length - 1], format) ?? null;
  delete out.nextPageToken;
  return JSON.stringify(out);
}

function parse(body: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(body) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A model's id: `id` (OpenAI, Anthropic), `name` without its `models/` (Gemini). */
function idOf(entry: unknown, format: WireFormat): string | undefined {
  if (typeof entry !== 'object' || entry === null) return undefined;
  const e = entry as Record<string, unknown>;
  if (format === 'gemini') return typeof e.name === 'string' ? e.name.replace(/^models\//, '') : undefined;
  return typeof e.id === 'string' ? e.id : undefined;
}
