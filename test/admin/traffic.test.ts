// The tally behind /metrics and the per-minute rates: what each record adds, and the bounds that keep
// hostile input (a new client name per request, odd results) from growing it.
import { describe, expect, it } from 'vitest';
import { MAX_CLIENT_LABELS, OTHER_CLIENT, Traffic } from '../../src/admin/traffic.js';
import { Key } from '../../src/keys/key.js';
import type { RequestRecord } from '../../src/proxy/request-record.js';
import type { TrailStep } from '../../src/proxy/rotate.js';

const config = { upstreams: [{ name: 'openai', keys: [new Key('k1', 'secret-one-aaaaaaaaaaaaaaa'), new Key('k2', 'secret-two-bbbbbbbbbbbbbbb')] }] } as never;
const rec = (o: Partial<RequestRecord> & { trail?: TrailStep[] } = {}): RequestRecord => ({
  id: 'r',
  method: 'POST',
  path: '/v1/chat/completions',
  upstream: 'openai',
  chain: ['openai'],
  client: 'c',
  model: 'gpt-4o',
  stream: false,
  status: 200,
  error: undefined,
  attempts: o.trail?.length ?? 1,
  retries: 0,
  key: 'k1',
  trail: [{ upstream: 'openai', key: 'k1', result: '200', then: 'deliver' }],
  cut: undefined,
  totalMs: 10,
  waitedMs: 0,
  upstreamMs: 8,
  upstreamRequestId: undefined,
  usage: undefined,
  ...o,
});

describe('Traffic', () => {
  it('adds attempts by result, rotations, retries, refused replays, cuts and times', () => {
    const t = new Traffic(config);
    t.record(rec({ trail: [{ upstream: 'openai', key: 'k1', result: '429', then: 'rotate' }, { upstream: 'openai', key: 'k2', result: '200', then: 'deliver' }], retries: 0 }), 1_000);
    t.record(rec({ trail: [{ upstream: 'openai', key: 'k2', result: '500', then: 'retry' }, { upstream: 'openai', key: 'k1', result: '200', then: 'deliver' }], retries: 1, cut: 'idle', status: 502, waitedMs: 3 }), 1_000);
    t.record(rec({ trail: [{ upstream: 'openai', key: 'k1', result: 'sent', then: 'replay_refused' }], error: 'keypool_upstream_may_have_processed', status: 502 }), 1_000);
    t.record(rec({ trail: [], attempts: 0, status: 413, upstreamMs: 0 }), 1_000);
    const u = t.upstreams.get('openai')!;
    expect(Object.fromEntries(u.keys.get('k1')!.attempts)).toEqual({ '429': 1, '200': 1, sent: 1 });
    expect(Object.fromEntries(u.keys.get('k2')!.attempts)).toEqual({ '500': 1, '200': 1 });
    expect(u.keys.get('k1')!.rotations).toBe(1);
    expect(u.keys.get('k2')!.rotations).toBe(0);
    expect([u.retries, u.replaysRefused, Object.fromEntries(u.cuts)]).toEqual([1, 1, { idle: 1 }]);
    expect(Object.fromEntries(u.requests.get('c')!)).toEqual({ 200: 1, 502: 2, 413: 1 });
    expect(u.upstreamSeconds.count).toBe(3);
    expect(u.overheadSeconds.count).toBe(4);
    // total - upstream - waited per request: 2, max(0, 10 - 8 - 3) = 0, 2, 10 ms.
    expect(u.overheadSeconds.sum).toBeCloseTo(0.014, 9);
    expect(u.waitSeconds.count).toBe(1);
    expect(t.perMinute('openai', 'k1', 1_000)).toEqual({ requests: 3, rateLimited: 1 });
    expect(t.perMinute('openai', 'k1', 61_000)).toEqual({ requests: 0, rateLimited: 0 });
    expect(t.perMinute('nowhere', 'k1', 1_000)).toEqual({ requests: 0, rateLimited: 0 });
  });

  it('counts an upstream or key a reload added after start', () => {
    const t = new Traffic(config);
    t.record(rec({ upstream: 'added', chain: ['added'], trail: [{ upstream: 'added', key: 'added-1', result: '200', then: 'deliver' }] }), 1_000);
    t.record(rec({ trail: [{ upstream: 'openai', key: 'k3', result: '200', then: 'deliver' }] }), 1_000);
    expect(t.perMinute('added', 'added-1', 1_000)).toEqual({ requests: 1, rateLimited: 0 });
    expect(t.perMinute('openai', 'k3', 1_000)).toEqual({ requests: 1, rateLimited: 0 });
    expect([...t.upstreams.get('openai')!.keys.keys()]).toEqual(['k1', 'k2', 'k3']);
  });

  it('gives at most MAX_CLIENT_LABELS clients a label of their own; the rest share one', () => {
    const t = new Traffic(config);
    for (let i = 0; i < MAX_CLIENT_LABELS * 3; i++) t.record(rec({ client: `agent-${i}` }), 1_000);
    const requests = t.upstreams.get('openai')!.requests;
    expect(requests.size).toBe(MAX_CLIENT_LABELS + 1);
    expect(requests.get(OTHER_CLIENT)!.get(200)).toBe(MAX_CLIENT_LABELS * 2);
    t.record(rec({ client: 'agent-0' }), 1_000);
    expect(requests.get('agent-0')!.get(200)).toBe(2);
  });

  it('bounds attempt results per key and cut reasons per upstream', () => {
    const t = new Traffic(config);
    for (let i = 0; i < 500; i++) t.record(rec({ trail: [{ upstream: 'openai', key: 'k1', result: `x${i}`, then: 'rotate' }], cut: `why-${i}` }), 1_000);
    const u = t.upstreams.get('openai')!;
    expect(u.keys.get('k1')!.attempts.size).toBeLessThanOrEqual(65);
    expect(u.cuts.size).toBeLessThanOrEqual(65);
    expect([...u.keys.get('k1')!.attempts.values()].reduce((a, b) => a + b, 0)).toBe(500);
  });
});
