// Circuit breaking per upstream: the state machine on its own (time passed in), then end to end with a
// fault upstream and an injected clock: faults open it, requests go straight to the fallback while it is
// open, one probe decides, and another replica learns it through the shared store.
import { afterEach, describe, expect, it } from 'vitest';
import { Circuit } from '../../src/proxy/circuit.js';
import { MemoryHub } from '../../src/state/memory-store.js';
import { act } from '../helpers/fault-upstream.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { chainHarness, completion, type ChainHarness, type UpstreamSpec } from '../helpers/chain.js';

const S = { failures: 3, windowMs: 10_000, openMs: 30_000 };

describe('Circuit', () => {
  it('opens at the Nth fault within the window, not before, and not for faults spread wider', () => {
    const c = new Circuit(S);
    c.fault(0);
    c.fault(1_000);
    expect(c.state(1_000)).toBe('closed');
    c.fault(2_000);
    expect(c.state(2_000)).toBe('open');
    expect(c.admit(2_000 + S.openMs - 1)).toBe(false);

    const spread = new Circuit(S);
    spread.fault(0);
    spread.fault(6_000);
    spread.fault(12_000); // the first is out of the window by now
    expect(spread.state(12_000)).toBe('closed');
  });

  it('an answer between faults starts the count again', () => {
    const c = new Circuit(S);
    c.fault(0);
    c.fault(1);
    c.success(2);
    c.fault(3);
    expect(c.state(3)).toBe('closed');
  });

  it('half-open lets exactly one probe through; its answer closes or reopens', () => {
    const c = new Circuit(S);
    for (let t = 0; t < 3; t++) c.fault(t);
    const after = 2 + S.openMs;
    expect(c.state(after)).toBe('half-open');
    expect(c.admit(after)).toBe(true);
    expect(c.admit(after)).toBe(false);
    c.fault(after + 1);
    expect(c.state(after + 1)).toBe('open');
    const again = after + 1 + S.openMs;
    expect(c.admit(again)).toBe(true);
    c.success(again + 1);
    expect(c.state(again + 1)).toBe('closed');
    expect(c.admit(again + 1)).toBe(true);
    expect(c.admit(again + 1)).toBe(true);
  });

  it('a probe released unreported lets the next request probe; an unreported one frees itself after its lease', () => {
    const c = new Circuit(S);
    for (let t = 0; t < 3; t++) c.fault(t);
    const t = 2 + S.openMs;
    expect(c.admit(t)).toBe(true);
    c.releaseProbe();
    expect(c.admit(t)).toBe(true);
    expect(c.admit(t + 59_999)).toBe(false);
    expect(c.admit(t + 60_000)).toBe(true);
  });

  it('another replica’s opening only ever extends, and tells no one back', () => {
    const told: number[] = [];
    const c = new Circuit(S, (u) => told.push(u));
    c.openFor(50_000, 30_000);
    c.openFor(40_000, 30_000);
    expect(c.openUntil).toBe(50_000);
    expect(told).toEqual([]);
    for (let t = 50_000; t < 50_003; t++) c.fault(t);
    expect(c.state(50_002)).toBe('open');
  });

  it('another replica’s opening is capped at this replica’s now + openMs; one not a finite number, or past, is ignored', () => {
    const c = new Circuit(S);
    c.openFor(1e15, 1_000);
    expect(c.openUntil).toBe(1_000 + S.openMs);
    const d = new Circuit(S);
    for (const bad of ['99999999999999', [1e300], Number.NaN, Number.POSITIVE_INFINITY, null, 500]) d.openFor(bad, 1_000);
    expect(d.openUntil).toBe(0);
    expect(d.state(1_000)).toBe('closed');
  });

  it('open, late reports of requests sent before it opened change nothing: only the half-open probe decides', () => {
    const c = new Circuit(S);
    for (let t = 0; t < 3; t++) c.fault(t);
    const until = c.openUntil;
    c.success(10);
    expect(c.state(11)).toBe('open');
    for (let t = 12; t < 12 + S.failures; t++) c.fault(t);
    c.success(20);
    expect(c.openUntil).toBe(until);
    expect(c.state(until)).toBe('half-open');
    expect(c.admit(until)).toBe(true);
    c.success(until + 1);
    expect(c.state(until + 2)).toBe('closed');
  });
});

describe('circuit breaking end to end', () => {
  const open: ChainHarness[] = [];
  afterEach(async () => {
    while (open.length > 0) await open.pop()!.close();
  });
  let healthy = false;
  const primary = (): UpstreamSpec => ({
    name: 'primary',
    keys: 3,
    script: () => (healthy ? act.json(200, completion('gpt-4o', 'primary')) : act.json(503, { error: { message: 'down' } })),
    config: { fallbacks: [{ upstream: 'azure' }], circuit: { failures: 2, windowMs: 10_000, openMs: 5_000 } },
  });
  const azure: UpstreamSpec = { name: 'azure', script: () => act.json(200, completion('gpt-4o', 'azure')) };

  it('opens after the faults, sends requests straight to the fallback, and the probe brings traffic back', async () => {
    healthy = false;
    const clock = new FakeClock();
    const h = await chainHarness([primary(), azure], { clock });
    open.push(h);
    expect((await h.call()).headers['x-keypool-upstream']).toBe('azure');
    expect((await h.call()).headers['x-keypool-upstream']).toBe('azure');
    expect(h.up.primary!.requests).toHaveLength(2);
    expect(h.logs.some((l) => l.includes('circuit open'))).toBe(true);

    // Open: no time lost on the primary.
    const skipped = await h.call();
    expect(skipped.headers['x-keypool-upstream']).toBe('azure');
    expect(skipped.headers['x-keypool-attempts']).toBe('1');
    expect(h.up.primary!.requests).toHaveLength(2);

    // Back up; still open until openMs has passed.
    healthy = true;
    clock.advance(4_999);
    expect((await h.call()).headers['x-keypool-upstream']).toBe('azure');
    clock.advance(1);
    const probe = await h.call();
    expect(probe.headers['x-keypool-upstream']).toBeUndefined();
    expect(JSON.parse(probe.text).choices[0].message.content).toBe('from primary');
    expect(h.up.primary!.requests).toHaveLength(3);
    const after = await h.call();
    expect(after.headers['x-keypool-upstream']).toBeUndefined();
  });

  it('a circuit open with no fallback answers keypool_circuit_open with when to come back', async () => {
    healthy = false;
    const clock = new FakeClock();
    const solo = { ...primary(), config: { circuit: { failures: 1, windowMs: 10_000, openMs: 5_000 } } };
    const h = await chainHarness([solo], { clock, retry: { maxRetries: 0 } });
    open.push(h);
    expect((await h.call()).status).toBe(503);
    const r = await h.call();
    expect(r.status).toBe(503);
    expect(JSON.parse(r.text).error.code).toBe('keypool_circuit_open');
    expect(r.headers['retry-after']).toBe('5');
    expect(h.up.primary!.requests).toHaveLength(1);
  });

  it('while a probe is out, other requests go to the fallback; a probe whose client left lets the next one probe', async () => {
    const clock = new FakeClock();
    let stall = true;
    const spec: UpstreamSpec = {
      ...primary(),
      script: (_r, i) => (i < 2 ? act.json(503, { error: { message: 'down' } }) : stall ? act.stallBeforeHeaders() : act.json(200, completion('gpt-4o', 'primary'))),
    };
    const h = await chainHarness([spec, azure], { clock });
    open.push(h);
    await h.call();
    await h.call();
    clock.advance(5_000);
    // The probe: the primary holds it.
    const ctl = new AbortController();
    const probe = fetch(`${h.url}/v1/chat/completions`, { method: 'POST', signal: ctl.signal, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o', messages: [] }) }).catch(() => 'aborted');
    for (let i = 0; i < 200 && h.up.primary!.requests.length < 3; i++) await new Promise((r) => setTimeout(r, 5));
    expect(h.up.primary!.requests).toHaveLength(3);
    const meanwhile = await h.call();
    expect(meanwhile.headers['x-keypool-upstream']).toBe('azure');
    ctl.abort();
    expect(await probe).toBe('aborted');
    for (let i = 0; i < 200 && !h.logs.some((l) => l.includes('"status":499')); i++) await new Promise((r) => setTimeout(r, 5));
    stall = false;
    const next = await h.call();
    expect(next.headers['x-keypool-upstream']).toBeUndefined();
  });

  it('one replica’s open circuit is every replica’s (shared through the state store)', async () => {
    healthy = false;
    const clock = new FakeClock();
    const hub = new MemoryHub(() => clock.now());
    const a = await chainHarness([primary(), azure], { clock, store: hub.client() });
    const b = await chainHarness([primary(), azure], { clock, store: hub.client() });
    open.push(a, b);
    await a.call();
    await a.call();
    await new Promise((r) => setImmediate(r));
    const r = await b.call();
    expect(r.headers['x-keypool-upstream']).toBe('azure');
    expect(b.up.primary!.requests).toHaveLength(0);
    // A replica that starts later loads it too.
    const c = await chainHarness([primary(), azure], { clock, store: hub.client() });
    open.push(c);
    expect((await c.call()).headers['x-keypool-upstream']).toBe('azure');
    expect(c.up.primary!.requests).toHaveLength(0);
  });

  it('a reload keeps an open circuit open; changing its settings starts it closed', async () => {
    healthy = false;
    const clock = new FakeClock();
    const h = await chainHarness([primary(), azure], { clock });
    open.push(h);
    await h.call();
    await h.call();
    const same = h.app.config();
    h.app.reload(same);
    await h.call();
    expect(h.up.primary!.requests).toHaveLength(2);
  });
});
