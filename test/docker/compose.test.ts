// The compose examples hang together: agents point at a keypool service on the port and prefix its
// config serves, with the client token as their API key; keypool gets the variables its config reads;
// the configs they mount load; the Redis variant runs two replicas on one Redis.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfigFile } from '../../src/config/load.js';
import { parseDockerfile } from './dockerfile.js';

interface Service {
  build?: string;
  image?: string;
  environment?: Record<string, string>;
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
}

const ENV = { OPENAI_API_KEYS: 'sk-compose-key-aaaaaaaaaaaa1,sk-compose-key-aaaaaaaaaaaa2', KEYPOOL_CLIENT_TOKEN: 'client-token-for-compose-test' };

/** Compose's interpolation of the shell environment: ${VAR}, ${VAR:?err}, ${VAR:-d}, $$. */
function interpolate(text: string, env: Record<string, string>): string {
  return text.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}/g, (m, name: string | undefined) => (m === '$$' ? '$' : (env[name ?? ''] ?? '')));
}

function services(file: string): Record<string, Service> {
  const doc = parse(interpolate(readFileSync(file, 'utf8'), ENV), { merge: true }) as { services: Record<string, Service> };
  return doc.services;
}

/** The image's own environment, as the Dockerfile's final stage sets it. */
function imageEnv(): Record<string, string> {
  const final = parseDockerfile(readFileSync('Dockerfile', 'utf8')).at(-1);
  const env: Record<string, string> = {};
  for (const ins of final?.instructions ?? []) if (ins.kind === 'ENV') for (const [k, v] of ins.vars) env[k] = v;
  return env;
}

function checkAgainst(file: string, keypools: string[], agents: string[]) {
  const all = services(file);
  const image = imageEnv();
  expect(parseDockerfile(readFileSync('Dockerfile', 'utf8')).at(-1)?.instructions.some((i) => i.kind === 'HEALTHCHECK'), 'service_healthy needs the image HEALTHCHECK').toBe(true);
  const served = new Map<string, { port: number; prefixes: string[] }>();
  for (const name of keypools) {
    const svc = all[name];
    expect(svc, name).toBeDefined();
    expect(svc?.build).toBe('.');
    const env = { ...image, ...svc?.environment };
    expect(env['OPENAI_API_KEYS']).toBe(ENV.OPENAI_API_KEYS);
    expect(env['KEYPOOL_CLIENT_TOKEN']).toBe(ENV.KEYPOOL_CLIENT_TOKEN);
    // The config the service runs: its mount over the image's path, else the image's own.
    const mountOf = (svc?.volumes ?? []).map((v) => v.split(':')).find(([, target]) => target === image['KEYPOOL_CONFIG']);
    const configFile = mountOf?.[0] ?? 'docker/keypool.yaml';
    const { config } = loadConfigFile(configFile, env);
    expect(config.server.host).toBe('0.0.0.0');
    expect(config.upstreams[0]?.keys).toHaveLength(2);
    served.set(name, { port: config.server.port, prefixes: config.upstreams.map((u) => u.prefix) });
    if (config.state.redis) {
      const host = new URL(config.state.redis.url).hostname;
      expect(all[host], `redis service ${host}`).toBeDefined();
      expect(svc?.depends_on?.[host]?.condition).toBe('service_healthy');
    }
  }
  const targets = new Set<string>();
  for (const name of agents) {
    const env = all[name]?.environment ?? {};
    const url = new URL(env['OPENAI_BASE_URL'] ?? '');
    const target = served.get(url.hostname);
    expect(target, `${name} points at a keypool service`).toBeDefined();
    expect(Number(url.port)).toBe(target?.port);
    expect(target?.prefixes).toContain(url.pathname);
    expect(env['OPENAI_API_KEY']).toBe(ENV.KEYPOOL_CLIENT_TOKEN);
    expect(all[name]?.depends_on?.[url.hostname]?.condition).toBe('service_healthy');
    targets.add(url.hostname);
  }
  return { targets };
}

describe('docker-compose examples', () => {
  it('two agents share one keypool sidecar', () => {
    const { targets } = checkAgainst('docker-compose.example.yaml', ['keypool'], ['agent-a', 'agent-b']);
    expect([...targets]).toEqual(['keypool']);
  });

  it('two keypool replicas share one pool through Redis', () => {
    const { targets } = checkAgainst('docker-compose.redis.example.yaml', ['keypool-1', 'keypool-2'], ['agent-a', 'agent-b']);
    expect([...targets].sort()).toEqual(['keypool-1', 'keypool-2']);
    const all = services('docker-compose.redis.example.yaml');
    // Redis holds the state: the replicas write no state file each.
    expect(all['keypool-1']?.environment?.['KEYPOOL_STATE_FILE']).toBe('');
  });
});
