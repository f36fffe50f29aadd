// GET /admin/config: the effective config with every secret masked. Keys become name + fingerprint +
// masked form, tokens "[set]", URL credentials "****"; a secret in a field nobody foresaw is still
// scrubbed. The output is searched for every secret.
import { afterEach, describe, expect, it } from 'vitest';
import { maskConfig } from '../../src/admin/config-view.js';
import { loadConfigObject, type Config } from '../../src/config/load.js';
import { startFakeUpstream, type FakeUpstream } from '../../src/fake-upstream/server.js';
import { get, json, startAdminProxy, type AdminProxy } from './harness.js';

const KEYS = ['sk-config-key-zero-0aaaaaaaaaaaaaaaaaaa', 'plainconfigsecretbbbbbbbbbb1'];
const REDIS_PASSWORD = 'redis-pass-cccccccccccccccc';
const ADMIN_TOKEN = 'admin-token-config-dddddddddddddddd';
const CLIENT_TOKEN = 'client-token-config-eeeeeeeeeeeeeeee';
const SECRETS = [...KEYS, REDIS_PASSWORD, ADMIN_TOKEN, CLIENT_TOKEN];

let upstream: FakeUpstream | undefined;
let proxy: AdminProxy | undefined;
afterEach(async () => {
  await proxy?.close();
  await upstream?.close();
  proxy = undefined;
  upstream = undefined;
});

function expectNoSecret(text: string): void {
  for (const s of SECRETS) {
    expect(text).not.toContain(s);
    expect(text).not.toContain(s.slice(6, 22));
  }
}

/** A token as the config loader may hold it: the secret private, name and digest public, shown by toJSON. */
class TokenLike {
  readonly #secret: string;
  readonly digest = 'f'.repeat(64);
  constructor(
    readonly name: string,
    secret: string,
  ) {
    this.#secret = secret;
  }
  reveal(): string {
    return this.#secret;
  }
  toJSON() {
    return { name: this.name, token: '[set]' };
  }
}

function config(): Config {
  const { config: base } = loadConfigObject(
    {
      upstreams: [{ name: 'openai', baseUrl: 'https://api.example.com/v1', keys: [{ key: KEYS[0], name: 'key-primary-1', group: 'org' }, KEYS[1]] }],
      state: { file: '/var/lib/keypool/state.json', redis: { url: `redis://default:${REDIS_PASSWORD}@redis.internal:6379/0` } },
    },
    {},
  );
  // What the schema grows next (clients, admin), and a field nobody foresaw that holds a pool key.
  return { ...base, ...({ admin: { token: ADMIN_TOKEN }, clients: [{ name: 'agent-a', token: CLIENT_TOKEN, tokenFile: undefined, rpm: 60 }, { name: 'agent-b', token: new TokenLike('agent-b', `${CLIENT_TOKEN}-2`) }], notes: `rotated ${KEYS[1]} last week` } as unknown as Partial<Config>) };
}

describe('maskConfig', () => {
  it('shows settings and identities, masks every secret', () => {
    const masked = maskConfig(config()) as Record<string, never>;
    const text = JSON.stringify(masked);
    expectNoSecret(text);
    expect(text).not.toContain('f'.repeat(64));
    expect(masked).toMatchObject({
      server: { host: '127.0.0.1', port: 8787 },
      retry: { maxRetries: 3 },
      upstreams: [{ name: 'openai', origin: 'https://api.example.com', keys: [{ name: 'key-primary-1', fingerprint: expect.stringMatching(/^[0-9a-f]{8}$/), masked: 'sk-…aaaa' }, { name: 'openai-1', masked: 'pla…bbb1' }] }],
      state: { file: '/var/lib/keypool/state.json', redis: { url: 'redis://****@redis.internal:6379/0', prefix: 'keypool:' } },
      admin: { token: '[set]' },
      clients: [{ name: 'agent-a', token: '[set]', rpm: 60 }, { name: 'agent-b', token: { name: 'agent-b', token: '[set]' } }],
      notes: 'rotated [redacted] last week',
    });
  });
});

describe('GET /admin/config', () => {
  it('answers the masked config, behind the guard', async () => {
    upstream = await startFakeUpstream();
    proxy = await startAdminProxy({ upstreams: [{ name: 'openai', baseUrl: `${upstream.url}/v1`, keys: KEYS }], adminToken: ADMIN_TOKEN });
    expect((await get(`${proxy.url}/admin/config`)).status).toBe(401);
    const r = await get(`${proxy.url}/admin/config`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(r.status).toBe(200);
    expectNoSecret(r.text);
    expect(json(r)).toMatchObject({ admin: { token: '[set]' }, upstreams: [{ keys: [{ name: 'openai-1' }, { name: 'openai-2' }] }] });
  });
});
