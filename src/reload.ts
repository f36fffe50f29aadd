// A config reload (SIGHUP, or the config file changing): the new config is applied in place. Pools keep
// every unchanged key's state (by fingerprint); new and changed secrets start clean; removed keys and
// upstreams take no new requests while those in flight finish; settings apply to requests that start
// after the reload. What cannot change in a running process (listen address, state store) is named.
import type { Config, Upstream } from './config/load.js';
import type { ClientGate } from './clients/client-gate.js';
import type { KeyPool, PoolSettings } from './keys/pool.js';
import type { WaitingRoom } from './keys/waiting-room.js';
import type { Proxy, UpstreamRuntime } from './proxy/proxy-handler.js';
import type { UpstreamAgent } from './proxy/upstream-agent.js';

export interface ReloadTarget {
  readonly runtimes: Map<string, UpstreamRuntime>;
  readonly pools: Map<string, KeyPool>;
  readonly rooms: Map<string, WaitingRoom>;
  readonly proxy: Proxy;
  /** Builds the pool and room of an upstream the config did not have before. */
  readonly newRuntime: (u: Upstream, config: Config) => UpstreamRuntime;
  /** The agent every attempt goes out on: a new connect timeout applies to connections opened from now on. */
  readonly agent: UpstreamAgent;
  readonly setLogLevel: (level: Config['log']['level']) => void;
  readonly gateFor: (config: Config) => ClientGate | undefined;
}

export interface ReloadReport {
  /** Per upstream: keys added, removed, kept (by name). */
  readonly upstreams: Record<string, { added: string[]; removed: string[]; kept: number }>;
  readonly upstreamsAdded: string[];
  readonly upstreamsRemoved: string[];
  /** Fields that changed but only take effect after a restart. */
  readonly needsRestart: string[];
}

export function poolSettings(u: Upstream, config: Config): PoolSettings {
  return {
    strategy: u.strategy,
    probeAfterMs: config.cooldown.probeAfterMs,
    // A probe is over by the request deadline at the latest.
    probeLeaseMs: config.retry.timeoutMs,
    maxHeaderMs: config.cooldown.maxMs,
    maxSessions: u.sticky?.maxSessions ?? 0,
  };
}

export function applyConfig(t: ReloadTarget, current: Config, next: Config): { report: ReloadReport; gate: ClientGate | undefined } {
  const upstreams: ReloadReport['upstreams'] = {};
  const upstreamsAdded: string[] = [];
  for (const u of next.upstreams) {
    const runtime = t.runtimes.get(u.name);
    if (runtime === undefined) {
      const fresh = t.newRuntime(u, next);
      t.runtimes.set(u.name, fresh);
      t.pools.set(u.name, fresh.pool);
      t.rooms.set(u.name, fresh.room);
      upstreamsAdded.push(u.name);
      continue;
    }
    const change = runtime.pool.reconfigure(u.keys, poolSettings(u, next));
    runtime.room.setMaxSize(next.queue.maxSize);
    upstreams[u.name] = { added: change.added, removed: change.removed, kept: change.kept.length };
  }
  const names = new Set(next.upstreams.map((u) => u.name));
  const upstreamsRemoved = [...t.runtimes.keys()].filter((n) => !names.has(n));
  for (const n of upstreamsRemoved) {
    t.runtimes.delete(n);
    t.pools.delete(n);
    t.rooms.delete(n);
  }
  if (next.retry.connectTimeoutMs !== current.retry.connectTimeoutMs) t.agent.setConnectTimeout(next.retry.connectTimeoutMs);
  t.setLogLevel(next.log.level);
  const gate = t.gateFor(next);
  t.proxy.reconfigure({ config: next, runtimes: t.runtimes, gate });
  return { report: { upstreams, upstreamsAdded, upstreamsRemoved, needsRestart: restartOnly(current, next) }, gate };
}

/** Settings a running process cannot take: where it listens, and where its state lives. */
function restartOnly(a: Config, b: Config): string[] {
  const out: string[] = [];
  if (a.server.host !== b.server.host) out.push('server.host');
  if (a.server.port !== b.server.port) out.push('server.port');
  if (a.server.bodyLimitBytes !== b.server.bodyLimitBytes) out.push('server.bodyLimitBytes (admin routes)');
  if (JSON.stringify(a.state) !== JSON.stringify(b.state)) out.push('state');
  if ((a.admin.token?.digest ?? '') !== (b.admin.token?.digest ?? '')) out.push('admin');
  return out;
}
