// GET /metrics in Prometheus text format, on a prom-client Registry of this app's own (never the global
// one: a process may build many apps). Nothing here runs per request: counters are read from the
// Traffic tally and gauges from the pools and rooms in `collect()`, when Prometheus scrapes.
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Registry } from 'prom-client';
import type { Clock } from '../clock.js';
import { keyStatus, type KeyStateName } from './key-view.js';
import { registerHistogram, type Buckets } from './histogram-family.js';
import { OVERHEAD_BUCKETS, UPSTREAM_BUCKETS, WAIT_BUCKETS, type Traffic, type UpstreamTraffic } from './traffic.js';

const STATES: readonly KeyStateName[] = ['ok', 'cooling', 'unavailable', 'disabled'];

export interface MetricsDeps {
  readonly clock: Clock;
  readonly traffic: Traffic;
}

export function createMetrics(app: FastifyInstance, deps: MetricsDeps): Registry {
  const { traffic, clock } = deps;
  const registry = new Registry();
  const registers = [registry];
  const upstreams = (): [string, UpstreamTraffic][] => [...traffic.upstreams];
  const pools = () => [...app.pools];

  new Counter({
    name: 'keypool_requests_total',
    help: 'Requests proxied, by upstream, the status the client got (499: it left first) and client (the first 100 clients by name, then "_other").',
    labelNames: ['upstream', 'status', 'client'],
    registers,
    collect() {
      this.reset();
      for (const [upstream, u] of upstreams()) {
        for (const [client, byStatus] of u.requests) for (const [status, n] of byStatus) this.inc({ upstream, status: String(status), client }, n);
      }
    },
  });
  new Counter({
    name: 'keypool_attempts_total',
    help: 'Attempts sent to the upstream, by key and what each came to (a status, or a failure phase such as connect or sent).',
    labelNames: ['upstream', 'key', 'result'],
    registers,
    collect() {
      this.reset();
      for (const [upstream, u] of upstreams()) {
        for (const [key, k] of u.keys) for (const [result, n] of k.attempts) this.inc({ upstream, key, result }, n);
      }
    },
  });
  new Counter({
    name: 'keypool_rotations_total',
    help: 'Attempts after which keypool moved on to another key (429, out of credit, key rejected), by the key left.',
    labelNames: ['upstream', 'key'],
    registers,
    collect() {
      this.reset();
      for (const [upstream, u] of upstreams()) for (const [key, k] of u.keys) this.inc({ upstream, key }, k.rotations);
    },
  });
  const perUpstream = (name: string, help: string, value: (u: UpstreamTraffic) => number): void => {
    new Counter({
      name,
      help,
      labelNames: ['upstream'],
      registers,
      collect() {
        this.reset();
        for (const [upstream, u] of upstreams()) this.inc({ upstream }, value(u));
      },
    });
  };
  perUpstream('keypool_retries_total', 'Units of the retry budget (retry.maxRetries) spent.', (u) => u.retries);
  perUpstream('keypool_replays_refused_total', 'Requests not sent again because the upstream may have run them (keypool_upstream_may_have_processed).', (u) => u.replaysRefused);
  new Counter({
    name: 'keypool_fallbacks_total',
    help: 'Requests for an upstream that a fallback upstream answered (the chain went on), by the upstream asked and the one that answered.',
    labelNames: ['upstream', 'to'],
    registers,
    collect() {
      this.reset();
      for (const [upstream, u] of upstreams()) for (const [to, n] of u.fallbacks) this.inc({ upstream, to }, n);
    },
  });
  new Counter({
    name: 'keypool_streams_cut_total',
    help: 'Answers cut after they had started, by why (client_closed, idle, deadline, upstream, shutdown).',
    labelNames: ['upstream', 'reason'],
    registers,
    collect() {
      this.reset();
      for (const [upstream, u] of upstreams()) for (const [reason, n] of u.cuts) this.inc({ upstream, reason }, n);
    },
  });
  new Counter({
    name: 'keypool_key_tokens_total',
    help: 'Tokens the upstream reported (usage) for answers served with the key, by direction (input, output).',
    labelNames: ['upstream', 'key', 'direction'],
    registers,
    collect() {
      this.reset();
      for (const [upstream, pool] of pools()) {
        for (const s of pool.states()) {
          this.inc({ upstream, key: s.key.name, direction: 'input' }, s.tokens.input);
          this.inc({ upstream, key: s.key.name, direction: 'output' }, s.tokens.output);
        }
      }
    },
  });
  new Gauge({
    name: 'keypool_key_state',
    help: '1 for the state each key is in now (ok, cooling, unavailable, disabled), 0 for the others.',
    labelNames: ['upstream', 'key', 'state'],
    registers,
    collect() {
      this.reset();
      const now = clock.now();
      for (const [upstream, pool] of pools()) {
        for (const s of pool.states()) {
          const { state } = keyStatus(s, now);
          for (const st of STATES) this.set({ upstream, key: s.key.name, state: st }, st === state ? 1 : 0);
        }
      }
    },
  });
  new Gauge({
    name: 'keypool_key_cooldown_seconds',
    help: 'Seconds until the key is usable again: key-wide (model="", always present) and per model while one is cooling.',
    labelNames: ['upstream', 'key', 'model'],
    registers,
    collect() {
      this.reset();
      const now = clock.now();
      for (const [upstream, pool] of pools()) {
        for (const s of pool.states()) {
          const { state, untilMs } = keyStatus(s, now);
          this.set({ upstream, key: s.key.name, model: '' }, state === 'cooling' && untilMs !== undefined ? (untilMs - now) / 1000 : 0);
          for (const [model, sc] of s.scopes) {
            if (model !== '' && sc.cooldownUntil > now) this.set({ upstream, key: s.key.name, model }, (sc.cooldownUntil - now) / 1000);
          }
        }
      }
    },
  });
  new Gauge({
    name: 'keypool_key_in_flight',
    help: 'Attempts in flight on the key now.',
    labelNames: ['upstream', 'key'],
    registers,
    collect() {
      this.reset();
      for (const [upstream, pool] of pools()) for (const s of pool.states()) this.set({ upstream, key: s.key.name }, s.inflight);
    },
  });
  new Gauge({
    name: 'keypool_keys_usable',
    help: 'Keys of the upstream not disabled.',
    labelNames: ['upstream'],
    registers,
    collect() {
      this.reset();
      const now = clock.now();
      for (const [upstream, pool] of pools()) this.set({ upstream }, pool.states().filter((s) => keyStatus(s, now).state !== 'disabled').length);
    },
  });
  new Gauge({
    name: 'keypool_requests_in_flight',
    help: 'Proxied requests in flight now (waiting ones included).',
    registers,
    collect() {
      this.set(app.proxy.inflight);
    },
  });
  new Gauge({
    name: 'keypool_circuit_state',
    help: 'Per upstream with a circuit breaker: 1 for the state its circuit is in (closed, open, half-open), 0 for the others.',
    labelNames: ['upstream', 'state'],
    registers,
    collect() {
      this.reset();
      const now = clock.now();
      for (const [upstream, circuit] of app.circuits.entries()) {
        const state = circuit.state(now);
        for (const s of ['closed', 'open', 'half-open'] as const) this.set({ upstream, state: s }, s === state ? 1 : 0);
      }
    },
  });
  new Gauge({
    name: 'keypool_waiting_requests',
    help: 'Requests in the waiting room now.',
    labelNames: ['upstream'],
    registers,
    collect() {
      this.reset();
      for (const [upstream, room] of app.rooms) this.set({ upstream }, room.size);
    },
  });
  new Counter({
    name: 'keypool_waiting_room_total',
    help: 'What became of requests that had to wait for a key: waited (all of them), served, timed_out, rejected_full, no_keys.',
    labelNames: ['upstream', 'outcome'],
    registers,
    collect() {
      this.reset();
      for (const [upstream, room] of app.rooms) {
        const m = room.metrics;
        this.inc({ upstream, outcome: 'waited' }, m.deferred);
        this.inc({ upstream, outcome: 'served' }, m.served);
        this.inc({ upstream, outcome: 'timed_out' }, m.timedOut);
        this.inc({ upstream, outcome: 'rejected_full' }, m.rejectedFull);
        this.inc({ upstream, outcome: 'no_keys' }, m.noKeys);
      }
    },
  });
  const series = (pick: (u: UpstreamTraffic) => Buckets) => () => upstreams().map(([upstream, u]) => [{ upstream }, pick(u)] as const);
  registerHistogram(registry, 'keypool_upstream_duration_seconds', 'Time the upstream took per request: each attempt to its response head, plus the delivered body.', UPSTREAM_BUCKETS, series((u) => u.upstreamSeconds));
  registerHistogram(registry, 'keypool_proxy_overhead_seconds', "keypool's own time per request: total less upstream time less time waiting for a key.", OVERHEAD_BUCKETS, series((u) => u.overheadSeconds));
  registerHistogram(registry, 'keypool_wait_duration_seconds', 'Time requests that waited spent in the waiting room.', WAIT_BUCKETS, series((u) => u.waitSeconds));
  return registry;
}

export function registerMetricsRoute(app: FastifyInstance, registry: Registry): void {
  app.get('/metrics', async (_request, reply) => reply.header('cache-control', 'no-store').type(registry.contentType).send(await registry.metrics()));
}
