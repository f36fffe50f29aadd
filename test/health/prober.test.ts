// The running proxy's health probes, on a hand-driven clock and an injected sender: refused keys and
// model refusals come back when their probe is answered well and only then; an operator's disable is
// never undone; rounds never overlap and are bounded in size; stop ends them.
import { afterEach, describe, expect, it } from 'vitest';
import type { Logger } from 'pino';
import { loadConfigObject, type Upstream } from '../../src/config/load.js';
import type { ProbeAnswer } from '../../src/health/classify.js';
import type { ProbeSend } from '../../src/health/http-sender.js';
import type { ProbeRequest } from '../../src/health/probe-request.js';
import { MAX_PROBES_PER_ROUND, startProber, type Prober } from '../../src/health/prober.js';
import { KeyPool, type DisableReason, type KeyState } from '../../src/keys/pool.js';
import { createLogger } from '../../src/logger.js';
import { FakeClock } from '../helpers/fake-clock.js';

const INTERVAL = 30_000;
const DAY = 86_400_000;
const OK: ProbeAnswer = { kind: 'answered', status: 200, headers: {}, body: '{"data":[]}' };
const UNAUTHORIZED: ProbeAnswer = { kind: 'answered', status: 401, headers: {}, body: '{"error":{"code":"invalid_api_key"}}' };
const MODEL_404: ProbeAnswer = { kind: 'answered', status: 404, headers: {}, body: '{"error":{"code":"model_not_found","message":"The model `gpt-x` does not exist or you do not have access to it."}}' };

let prober: Prober | undefined;
afterEach(async () => {
  await prober?.stop();
  prober = undefined;
});

function setup(keyCount = 3) {
  const keys = Array.from({ length: keyCount }, (_, i) => `sk-prober-aaaaaaaaaaaaaaaa${String(i).padStart(3, '0')}`);
  const { config } = loadConfigObject({ upstreams: [{ name: 'u', baseUrl: 'http://127.0.0.1:9/v1', keys }] }, {});
  const upstream = config.upstreams[0] as Upstream;
  const clock = new FakeClock();
  const pool = new KeyPool('u', upstream.keys);
  const answers = new Map<string, ProbeAnswer>();
  const sent: ProbeRequest[] = [];
  let send: ProbeSend = async (req) => {
    sent.push(req);
    const bearer = String(req.headers['authorization']).replace('Bearer ', '');
    return answers.get(bearer) ?? OK;
  };
  const start = (): Prober => {
    prober = startProber({
      pools: new Map([['u', pool]]),
      upstreams: config.upstreams,
      send: (req, signal) => send(req, signal),
      clock,
      logger: createLogger('silent') as Logger,
      intervalMs: INTERVAL,
      maxMs: config.cooldown.maxMs,
    });
    return prober;
  };
  const state = (i: number): KeyState => pool.states()[i] as KeyState;
  return { keys, clock, pool, answers, sent, start, state, setSend: (s: ProbeSend) => (send = s) };
}

/** Lets the probes a timer started run to their end (they await only resolved promises here). */
const settle = () => new Promise((r) => setImmediate(r));

describe('health prober', () => {
  it('enables a disabled key once its probe is answered well, not before', async () => {
    const t = setup();
    t.pool.disable(t.state(1), 'unauthorized', t.clock.now() + DAY);
    t.answers.set(t.keys[1]!, UNAUTHORIZED);
    t.start();
    expect(t.sent).toHaveLength(0);
    t.clock.advance(INTERVAL);
    await settle();
    // Only the disabled key is probed, with the upstream's probe.
    expect(t.sent.map((r) => r.url)).toEqual(['http://127.0.0.1:9/v1/models']);
    expect(t.state(1).disabled).toBe('unauthorized');
    expect(t.pool.usable).toBe(2);

    t.answers.set(t.keys[1]!, OK);
    t.clock.advance(INTERVAL);
    await settle();
    expect(t.sent).toHaveLength(2);
    expect(t.state(1).disabled).toBeUndefined();
    expect(t.pool.usable).toBe(3);
    // Nothing left to probe.
    t.clock.advance(INTERVAL);
    await settle();
    expect(t.sent).toHaveLength(2);
  });

  it('ends a model refusal when the key may use the model again', async () => {
    const t = setup();
    const now = t.clock.now();
    t.pool.cool(t.state(0), 'gpt-x', now + 3_600_000, 'model_unavailable', now);
    t.pool.cool(t.state(2), 'gpt-y', now + 60_000, 'rate_limited', now);
    t.answers.set(t.keys[0]!, MODEL_404);
    const p = t.start();
    await p.round();
    // The refused model is asked about; a rate-limit cooldown is left to itself.
    expect(t.sent.map((r) => r.url)).toEqual(['http://127.0.0.1:9/v1/models/gpt-x']);
    expect(t.pool.nextAvailableAt({ model: 'gpt-x', tokens: 0 }, t.clock.now())).toBe(t.clock.now());
    expect(t.state(0).scopes.get('gpt-x')?.reason).toBe('model_unavailable');

    t.answers.set(t.keys[0]!, OK);
    expect(await p.round()).toEqual({ probed: 1, restored: 1 });
    expect(t.state(0).scopes.get('gpt-x')?.reason).toBeUndefined();
    expect(t.state(0).scopes.get('gpt-x')?.cooldownUntil).toBe(0);
    expect(t.state(2).scopes.get('gpt-y')?.reason).toBe('rate_limited');
  });

  it('never undoes a disable the upstream did not decide (an operator\'s)', async () => {
    const t = setup();
    // The admin API's reason; not a DisableReason yet on this branch.
    t.pool.disable(t.state(0), 'admin' as DisableReason, t.clock.now() + DAY);
    const p = t.start();
    expect(await p.round()).toEqual({ probed: 0, restored: 0 });
    expect(t.sent).toHaveLength(0);
    expect(t.state(0).disabled).toBe('admin');
  });

  it('does not enable a key an operator disabled while its probe was out', async () => {
    const t = setup();
    t.pool.disable(t.state(0), 'unauthorized', t.clock.now() + DAY);
    let answer: (a: ProbeAnswer) => void = () => undefined;
    t.setSend(() => new Promise<ProbeAnswer>((r) => (answer = r)));
    const p = t.start();
    const round = p.round();
    await settle();
    t.pool.enable(t.state(0));
    t.pool.disable(t.state(0), 'admin' as DisableReason, t.clock.now() + DAY);
    answer(OK);
    expect(await round).toEqual({ probed: 1, restored: 0 });
    expect(t.state(0).disabled).toBe('admin');
  });

  it('bounds a round, and gives every key its turn over the next ones', async () => {
    const n = MAX_PROBES_PER_ROUND + 10;
    const t = setup(n);
    for (const s of t.pool.states()) t.pool.disable(s, 'unauthorized', t.clock.now() + DAY);
    for (const k of t.keys) t.answers.set(k, UNAUTHORIZED);
    const p = t.start();
    expect(await p.round()).toEqual({ probed: MAX_PROBES_PER_ROUND, restored: 0 });
    expect(await p.round()).toEqual({ probed: MAX_PROBES_PER_ROUND, restored: 0 });
    const probed = new Set(t.sent.map((r) => String(r.headers['authorization'])));
    expect(probed.size).toBe(n);
  });

  it('starts no round while one is out, and none after stop', async () => {
    const t = setup();
    t.pool.disable(t.state(0), 'unauthorized', t.clock.now() + DAY);
    const pending: ((a: ProbeAnswer) => void)[] = [];
    t.setSend((req, signal) => {
      t.sent.push(req);
      return new Promise<ProbeAnswer>((resolve) => {
        pending.push(resolve);
        signal?.addEventListener('abort', () => resolve({ kind: 'failed', reason: 'aborted' }));
      });
    });
    const p = t.start();
    t.clock.advance(INTERVAL);
    await settle();
    expect(t.sent).toHaveLength(1);
    // The probe hangs: time passes, no second round starts behind it.
    t.clock.advance(INTERVAL * 5);
    await settle();
    expect(t.sent).toHaveLength(1);
    pending.shift()?.(UNAUTHORIZED);
    await settle();
    // The next round is an interval after the end of the last.
    t.clock.advance(INTERVAL - 1);
    await settle();
    expect(t.sent).toHaveLength(1);
    t.clock.advance(1);
    await settle();
    expect(t.sent).toHaveLength(2);
    // stop aborts the probe in flight and starts nothing more.
    await p.stop();
    t.clock.advance(INTERVAL * 10);
    await settle();
    expect(t.sent).toHaveLength(2);
    expect(t.state(0).disabled).toBe('unauthorized');
  });
});
