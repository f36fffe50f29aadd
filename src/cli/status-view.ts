// The key table of `keypool status`, from GET /admin/keys (OPS-SPEC.md): a heading per upstream, one row
// per key (state, reason, time left, in flight, requests, 429s, tokens, headroom) and one per model a key
// is cooling or refused for. The answer comes from a server over the network: read leniently (fields a
// newer keypool adds are ignored, missing ones shown as '-'), never trusted to have a shape. Pure.
import { z } from 'zod';
import type { Paint, Style } from './colour.js';
import { compactCount, formatDuration, renderTable } from './table.js';

const count = z.number().finite().nonnegative().catch(Number.NaN);
const text = z.string().max(200).nullable().catch(null);
const leftMs = z.number().finite().nullable().catch(null);

const bucketSchema = z.object({ limit: count, remaining: count, resetAt: text.optional() }).nullable().catch(null);

const keySchema = z.object({
  name: z.string().max(200),
  masked: text.optional(),
  group: text.optional(),
  state: z.string().max(40).catch('?'),
  reason: text.optional(),
  until: text.optional(),
  leftMs: leftMs.optional(),
  models: z
    .array(z.object({ model: z.string().max(200), state: z.string().max(40).catch('?'), reason: text.optional(), until: text.optional(), leftMs: leftMs.optional() }))
    .catch([])
    .optional(),
  inflight: count.optional(),
  requests: count.optional(),
  successes: count.optional(),
  rateLimited: count.optional(),
  outOfCredit: count.optional(),
  serverErrors: count.optional(),
  tokensIn: count.optional(),
  tokensOut: count.optional(),
  headroom: z
    .array(z.object({ model: z.string().max(200).catch(''), requests: bucketSchema.optional(), tokens: bucketSchema.optional() }))
    .catch([])
    .optional(),
});

export const keysDocumentSchema = z.object({
  now: text.optional(),
  upstreams: z.array(
    z.object({
      name: z.string().max(200),
      prefix: text.optional(),
      usable: count.optional(),
      size: count.optional(),
      waiting: count.optional(),
      keys: z.array(keySchema),
    }),
  ),
});

export type KeysDocument = z.infer<typeof keysDocumentSchema>;
type KeyRow = z.infer<typeof keySchema>;

const STATE_STYLE: Readonly<Record<string, Style>> = { ok: 'green', cooling: 'yellow', unavailable: 'magenta', disabled: 'red' };

/** Headroom entries shown per key; the rest are counted. */
const HEADROOM_SHOWN = 2;

export function renderStatus(doc: KeysDocument, paint: Paint): string[] {
  const now = doc.now === null || doc.now === undefined ? Number.NaN : Date.parse(doc.now);
  const lines: string[] = [];
  for (const u of doc.upstreams) {
    if (lines.length > 0) lines.push('');
    const size = u.size ?? u.keys.length;
    const usable = u.usable === undefined || Number.isNaN(u.usable) ? '?' : String(u.usable);
    const waiting = u.waiting !== undefined && u.waiting > 0 ? paint('yellow', `, ${u.waiting} waiting`) : '';
    lines.push(`${paint('bold', u.name)}${u.prefix ? ` ${u.prefix}` : ''}: ${usable}/${size} key(s) usable${waiting}`);
    const rows: string[][] = [];
    for (const k of u.keys) {
      rows.push([
        k.name,
        stateCell(k.state, paint),
        k.reason ?? '',
        timeLeft(k.leftMs, k.until, now),
        num(k.inflight),
        num(k.requests),
        num(k.rateLimited),
        tokens(k.tokensIn, k.tokensOut),
        headroom(k.headroom ?? [], now),
      ]);
      for (const m of k.models ?? []) {
        rows.push([paint('dim', `  ${m.model}`), stateCell(m.state, paint), m.reason ?? '', timeLeft(m.leftMs, m.until, now), '', '', '', '', '']);
      }
    }
    lines.push(
      ...renderTable(
        [
          { title: 'KEY' },
          { title: 'STATE' },
          { title: 'REASON' },
          { title: 'LEFT', align: 'right' },
          { title: 'IN FLIGHT', align: 'right' },
          { title: 'REQUESTS', align: 'right' },
          { title: '429s', align: 'right' },
          { title: 'TOKENS IN/OUT', align: 'right' },
          { title: 'HEADROOM' },
        ],
        rows,
      ).map((l) => `  ${l}`),
    );
  }
  return lines;
}

function stateCell(state: string, paint: Paint): string {
  const style = STATE_STYLE[state];
  return style === undefined ? state : paint(style, state);
}

function num(n: number | undefined): string {
  return n === undefined || Number.isNaN(n) ? '-' : compactCount(n);
}

function tokens(input: number | undefined, output: number | undefined): string {
  return input === undefined && output === undefined ? '-' : `${num(input)}/${num(output)}`;
}

/** leftMs when given, else until - now; '' when the key waits for nothing. */
function timeLeft(ms: number | null | undefined, until: string | null | undefined, now: number): string {
  if (typeof ms === 'number' && ms > 0) return formatDuration(ms);
  if (until !== null && until !== undefined) {
    const left = Date.parse(until) - now;
    if (Number.isFinite(left) && left > 0) return formatDuration(left);
  }
  return '';
}

function headroom(entries: NonNullable<KeyRow['headroom']>, now: number): string {
  const shown = entries.slice(0, HEADROOM_SHOWN).map((h) => {
    const parts = [bucket(h.requests, 'req', now), bucket(h.tokens, 'tok', now)].filter((p) => p !== '');
    return `${h.model === '' ? '*' : h.model} ${parts.join(' ')}`.trim();
  });
  const more = entries.length > HEADROOM_SHOWN ? ` +${entries.length - HEADROOM_SHOWN}` : '';
  return `${shown.join('; ')}${more}`;
}

function bucket(b: { limit: number; remaining: number; resetAt?: string | null | undefined } | null | undefined, unit: string, now: number): string {
  if (b === null || b === undefined || Number.isNaN(b.limit) || Number.isNaN(b.remaining)) return '';
  const reset = b.resetAt === null || b.resetAt === undefined ? Number.NaN : Date.parse(b.resetAt) - now;
  return `${compactCount(b.remaining)}/${compactCount(b.limit)} ${unit}${Number.isFinite(reset) && reset > 0 ? ` (${formatDuration(reset)})` : ''}`;
}
