// Attacks on issue 15's lean hot path (86aa2fd) that broke it: each `attack: ...` test FAILED on the code
// it was written against (eff4a2e) and says what was wrong and why it matters; all are fixed and kept as
// regression tests. End to end against a real keypool on loopback with fault
// upstreams (test/helpers/chain.ts). The attacks the code withstood are in perf-holds.test.ts.
import { afterEach, describe, expect, it } from 'vitest';
import { chainHarness, completion, type ChainHarness } from '../helpers/chain.js';
import { act } from '../helpers/fault-upstream.js';

const open: ChainHarness[] = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});

async function chain(...args: Parameters<typeof chainHarness>): Promise<ChainHarness> {
  const h = await chainHarness(...args);
  open.push(h);
  return h;
}

const RID = 'client-rid-perf-0002';
const withRid = { headers: { 'x-request-id': RID } };
/** An upstream 200 that names keypool's own headers, as a hostile or confused upstream (or a proxy before it) may. */
const forging = (extra: Record<string, string>) => () => act.afterBody(() => act.json(200, completion('gpt-4o', 'forger'), extra));

describe('x-keypool-* forged by the upstream', () => {
  it('attack: an upstream’s own x-keypool-request-id reaches the client beside keypool’s: two ids on one answer', async () => {
    // clientResponseHeaderList passes every upstream header that is not hop-by-hop, and deliver then pushes
    // keypool's id after it: the flat list carries both, so the client sees "forged, <its id>" (undici
    // joins them). The id is how a client's log line is matched to keypool's; an SDK reading the first
    // value files the upstream's word as keypool's. (Before 86aa2fd the object spread let the upstream's
    // value replace keypool's outright.) x-keypool-* is keypool's namespace: strip it from upstream answers.
    const h = await chain([{ name: 'primary', keys: 1, script: forging({ 'x-keypool-request-id': 'forged-by-upstream' }) }]);
    const r = await h.call('/v1/chat/completions', undefined, withRid);
    expect(r.status).toBe(200);
    expect(r.headers['x-keypool-request-id']).toBe(RID);
  });

  it('attack: an upstream’s x-keypool-attempts and x-keypool-key are sent beside keypool’s own: two of each', async () => {
    // keypoolHeaderList appends to the list, so nothing replaces what the upstream sent under the same
    // names (keypoolHeaders on an object overwrote them). A client or dashboard counting attempts or
    // attributing spend to a key reads "99, 1" and "victim-key, primary-1".
    const h = await chain([{ name: 'primary', keys: 1, script: forging({ 'x-keypool-attempts': '99', 'x-keypool-key': 'victim-key' }) }]);
    const r = await h.call();
    expect(r.status).toBe(200);
    expect({ attempts: r.headers['x-keypool-attempts'], key: r.headers['x-keypool-key'] }).toEqual({ attempts: '1', key: 'primary-1' });
  });

  it('attack: an upstream’s x-keypool-upstream / x-keypool-wait-ms pass to the client on a primary’s answer that waited for nothing', async () => {
    // keypool only writes these when a fallback served or the request waited, so an upstream's values go
    // through untouched: the client is told a fallback (or a wait) that never happened. keypool's
    // headers must be keypool's alone.
    const h = await chain([{ name: 'primary', keys: 1, script: forging({ 'x-keypool-upstream': 'elsewhere', 'x-keypool-wait-ms': '90000', 'x-keypool-keep-alive': '1' }) }]);
    const r = await h.call();
    expect(r.status).toBe(200);
    expect({ upstream: r.headers['x-keypool-upstream'], wait: r.headers['x-keypool-wait-ms'], keepAlive: r.headers['x-keypool-keep-alive'] }).toEqual({ upstream: undefined, wait: undefined, keepAlive: undefined });
  });
});

describe('responses without the request id', () => {
  it('attack: a request refused while keypool shuts down (proxy.closing) carries no x-keypool-request-id', async () => {
    // proxy-handler answers keypool_shutting_down before the request reaches serve-request's stamp(): the
    // README and docs/RELIABILITY.md promise x-keypool-request-id "always", and a client retrying
    // elsewhere has nothing to quote. (Also true of the handler's internal-error 500.)
    const h = await chain([{ name: 'primary', keys: 1, script: () => act.json(200, completion('gpt-4o', 'p')) }]);
    h.app.proxy.closing = true;
    const r = await h.call('/v1/chat/completions', undefined, withRid);
    h.app.proxy.closing = false;
    expect(r.status).toBe(503);
    expect(r.headers['x-keypool-request-id']).toBe(RID);
  });

  it('attack: a 404 for a path no upstream serves carries no x-keypool-request-id', async () => {
    // Fastify's not-found handler answers keypool's own error (keypool_route_not_found) without the id:
    // a client with a misconfigured base URL gets keypool's error but no id to match its log with.
    const h = await chain([{ name: 'primary', keys: 1, script: () => act.json(200, completion('gpt-4o', 'p')) }]);
    const r = await h.call('/nowhere/chat/completions', undefined, withRid);
    expect(r.status).toBe(404);
    expect(r.headers['x-keypool-request-id']).toBe(RID);
  });
});
