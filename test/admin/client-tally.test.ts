// The per-client table: counts by status class, 429s, tokens; bounded, forgetting the client seen
// longest ago, so a caller inventing a new x-agent-id per request cannot grow it.
import { describe, expect, it } from 'vitest';
import { ClientTally, MAX_CLIENTS } from '../../src/admin/client-tally.js';
import type { RequestRecord } from '../../src/proxy/request-record.js';

const rec = (client: string, status: number, usage?: { input: number; output: number }): RequestRecord => ({
  id: 'r',
  method: 'POST',
  path: '/v1/chat/completions',
  upstream: 'openai',
  chain: ['openai'],
  client,
  model: 'gpt-4o',
  stream: false,
  status,
  error: undefined,
  attempts: 1,
  retries: 0,
  key: 'openai-1',
  trail: [],
  cut: undefined,
  totalMs: 1,
  waitedMs: 0,
  upstreamMs: 1,
  upstreamRequestId: undefined,
  usage,
});

describe('ClientTally', () => {
  it('counts statuses by class, 429s and tokens, and stamps the last time seen', () => {
    const t = new ClientTally();
    for (const s of [200, 201, 302, 404, 429, 499, 500, 503]) t.record(rec('a', s, { input: 2, output: 1 }), 1_000 + s);
    const a = t.get('a')!;
    expect(a).toMatchObject({ requests: 8, s2xx: 2, s3xx: 1, s4xx: 3, s5xx: 2, rateLimited: 1, tokensIn: 16, tokensOut: 8, lastSeen: 1_503 });
    expect(a.perMinute.total(1_600)).toBe(8);
  });

  it('keeps at most MAX_CLIENTS, forgetting the one seen longest ago', () => {
    const t = new ClientTally();
    for (let i = 0; i < MAX_CLIENTS; i++) t.record(rec(`c${i}`, 200), i);
    t.record(rec('c0', 200), 5_000);
    t.record(rec('new', 200), 5_001);
    expect(t.size).toBe(MAX_CLIENTS);
    expect(t.get('c1')).toBeUndefined();
    expect(t.get('c0')?.requests).toBe(2);
    expect(t.entries()[0]![0]).toBe('new');
    for (let i = 0; i < 5 * MAX_CLIENTS; i++) t.record(rec(`flood-${i}`, 200), 6_000 + i);
    expect(t.size).toBe(MAX_CLIENTS);
  });
});
