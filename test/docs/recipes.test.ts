// docs/RECIPES.md held to the code it describes, so the recipes cannot drift from the schema or the
// presets: every config loads with the real loader (dummy values for the variables it reads), the
// presets table says what src/config/presets.ts does, each compose file hands its keypool the variables
// its config reads, and each client snippet's base URL, sent the way that client sends it (the path it
// appends, its credential header; the real SDK where one is installed), reaches the upstream the recipe
// names at the path the recipe says, with a pool key and none of the client's credential.
import { readFileSync } from 'node:fs';
import { createAnthropic } from '@ai-sdk/anthropic';
import { createOpenAI } from '@ai-sdk/openai';
import Anthropic from '@anthropic-ai/sdk';
import { generateText } from 'ai';
import type { FastifyInstance } from 'fastify';
import OpenAI, { AzureOpenAI } from 'openai';
import { request } from 'undici';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { parse as parseYaml } from 'yaml';
import { buildApp } from '../../src/app.js';
import { loadConfigObject, loadConfigText, type Config } from '../../src/config/load.js';
import { PRESETS, PROVIDERS, type Preset, type Provider } from '../../src/config/presets.js';
import { startFakeUpstream, type FakeUpstream, type Provider as FakeProvider } from '../../src/fake-upstream/server.js';
import { startWsFakeUpstream } from '../../src/fake-upstream/ws-server.js';
import { createLogger } from '../../src/logger.js';
import { waitFor } from '../helpers/wait.js';
import { KEYPOOL_ORIGINS, baseUrlIn, configsOf, dummyEnv, readRecipeDoc, stringIn, type Block, type ClientCheck } from './recipe-doc.js';

const DOC = readRecipeDoc(readFileSync(new URL('../../docs/RECIPES.md', import.meta.url), 'utf8'));
const CONFIGS = configsOf(DOC);
/** What a client sends as its key when the config has no `clients` (the recipes say `unused`). */
const PLACEHOLDER = 'placeholder-client-key-0123456789';
const MESSAGES = [{ role: 'user' as const, content: 'hi' }];
/** Nothing listens here: an upstream a check does not target must never be reached. */
const NOWHERE = 'http://127.0.0.1:9';

beforeAll(() => {
  (globalThis as { AI_SDK_LOG_WARNINGS?: boolean }).AI_SDK_LOG_WARNINGS = false;
});

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!();
});

function configText(name: string): string {
  const block = CONFIGS.get(name);
  if (block === undefined) throw new Error(`no config named ${name} in docs/RECIPES.md`);
  return block.text;
}

describe('docs/RECIPES.md configs', () => {
  it('has configs, compose files and client checks to test', () => {
    expect(CONFIGS.size).toBeGreaterThanOrEqual(8);
    expect(DOC.blocks.some((b) => b.markers.some((m) => m.kind === 'compose'))).toBe(true);
    expect(DOC.blocks.flatMap((b) => b.markers).filter((m) => m.kind === 'client').length).toBeGreaterThanOrEqual(20);
  });

  for (const [name, block] of CONFIGS) {
    it(`config ${name} (line ${block.line}) loads with the real loader, without warnings`, () => {
      const { config, warnings } = loadConfigText(block.text, dummyEnv(block.text));
      expect(warnings).toEqual([]);
      expect(config.upstreams.length).toBeGreaterThan(0);
    });
  }

  for (const block of DOC.blocks) {
    for (const m of block.markers) {
      if (m.kind !== 'compose') continue;
      it(`compose file at line ${block.line} passes its keypool every variable config ${m.config} reads`, () => {
        const compose = parseYaml(block.text) as { services: Record<string, { environment?: Record<string, string> | string[]; volumes?: string[] }> };
        const keypool = compose.services['keypool'];
        expect(keypool).toBeDefined();
        const env = keypool!.environment ?? {};
        const names = Array.isArray(env) ? env.map((e) => e.split('=')[0]!) : Object.keys(env);
        expect(names.sort()).toEqual(expect.arrayContaining(Object.keys(dummyEnv(configText(m.config))).sort()));
        expect(keypool!.volumes?.some((v) => v.split(':')[1] === '/etc/keypool/keypool.yaml')).toBe(true);
      });
    }
  }
});

describe('docs/RECIPES.md presets table', () => {
  it('lists every provider once, in presets.ts order, with what its preset sets', () => {
    expect(DOC.presetRows.map((r) => r[0])).toEqual(PROVIDERS.map((p) => `\`${p}\``));
    for (const row of DOC.presetRows) {
      const preset = PRESETS[row[0]!.replaceAll('`', '') as Provider];
      expect(row.slice(1)).toEqual(expectedRow(preset));
    }
  });
});

function expectedRow(p: Preset): string[] {
  const auth = 'header' in p.auth ? (p.auth.header === 'authorization' ? '`Authorization: Bearer`' : `\`${p.auth.header}\``) : `\`?${p.auth.query}=\``;
  const base = p.baseUrl === undefined ? expect.stringMatching(/^none/) : `\`${p.baseUrl}\``;
  const headers = Object.entries(p.headers)
    .map(([k, v]) => `\`${k}: ${v}\``)
    .join(', ');
  const errors = { openai: 'OpenAI', anthropic: 'Anthropic', gemini: 'Google' }[p.format];
  return [`\`${p.prefix}\``, base, auth, headers, errors, p.commitOnContent ? 'on' : 'off'];
}

const checks = DOC.blocks.flatMap((block) => block.markers.flatMap((m) => (m.kind === 'client' ? [{ block, check: m.check }] : [])));

describe('docs/RECIPES.md client settings reach their upstream through keypool', () => {
  for (const { block, check } of checks) {
    const what = `${check.sdk ?? check.send} via ${check.setting ?? 'the URL'}`;
    it(`line ${check.line}: ${what} reaches ${check.config}/${check.upstream} at ${check.expect}`, async () => {
      const setup = await keypoolFor(check, 'http');
      const base = localBaseUrl(block, check, setup.url);
      if (check.sdk !== undefined) await viaSdk(check, base, setup.token, block);
      else await viaRequest(check, base, setup.token);
      const fake = setup.fake!;
      expect(fake.requests.length).toBeGreaterThan(0);
      expect(fake.requests.at(-1)?.path).toBe(check.expect);
      for (const r of fake.requests) {
        expect(setup.poolKeys).toContain(r.key);
        expect(JSON.stringify(r.headers) + r.path).not.toContain(setup.token);
      }
    });
    if (check.ws === true) {
      it(`line ${check.line}: the Responses WebSocket under ${check.setting ?? 'the URL'} reaches ${check.upstream}`, async () => {
        const setup = await keypoolFor(check, 'ws');
        const url = `${localBaseUrl(block, check, setup.url).replace(/^http/, 'ws')}/responses`;
        const ws = new WebSocket(url, { headers: { authorization: `Bearer ${setup.token}` } });
        closers.push(async () => ws.terminate());
        await new Promise<void>((resolve, reject) => {
          ws.once('open', () => resolve());
          ws.once('error', reject);
          ws.once('unexpected-response', (_req, res) => reject(new Error(`handshake answered ${res.statusCode}`)));
        });
        const handshakes = setup.ws!.handshakes;
        await waitFor(() => handshakes.length > 0);
        expect(handshakes[0]?.path).toBe(check.expect);
        expect(setup.poolKeys).toContain(handshakes[0]?.key);
        expect(JSON.stringify(handshakes[0]?.headers)).not.toContain(setup.token);
      });
    }
  }
});

describe('docs/RECIPES.md Azure recipe', () => {
  it("rotates to the key of another resource (its own baseUrl) when the first resource's keys are rate-limited", async () => {
    const text = configText('azure');
    const env = dummyEnv(text);
    const azure = loadConfigText(text, env).config.upstreams[0]!;
    const own = azure.keys.filter((k) => k.options.origin !== undefined).map((k) => k.reveal());
    const shared = azure.keys.filter((k) => k.options.origin === undefined).map((k) => k.reveal());
    expect({ own: own.length > 0, shared: shared.length > 0 }).toEqual({ own: true, shared: true });
    const first = await startFakeUpstream({ provider: 'azure', acceptKeys: shared });
    const second = await startFakeUpstream({ provider: 'azure', acceptKeys: own });
    closers.push(() => first.close(), () => second.close());
    for (const key of shared) first.setDefault(key, { kind: 'rate_limit', ms: 60_000 });
    const app = await listen(loadConfigObject(pointedAt(parseYaml(text), azure.name, first.url, second.url), env).config);
    const addr = app.server.address() as { port: number };
    const check = checks.find((c) => c.check.config === 'azure' && c.check.sdk === 'azure');
    expect(check).toBeDefined();
    const base = localBaseUrl(check!.block, check!.check, `http://127.0.0.1:${addr.port}`);
    await viaSdk(check!.check, base, PLACEHOLDER, check!.block);
    expect(first.requests.map((r) => r.key)).toEqual(shared);
    expect(second.requests.map((r) => [r.key, r.path])).toEqual([[own[0], check!.check.expect]]);
  });
});

interface Setup {
  readonly url: string;
  readonly token: string;
  readonly poolKeys: readonly string[];
  readonly fake?: FakeUpstream;
  readonly ws?: Awaited<ReturnType<typeof startWsFakeUpstream>>;
}

/** keypool built from the recipe's config, the checked upstream (and its keys' own base URLs) on a fake. */
async function keypoolFor(check: ClientCheck, mode: 'http' | 'ws'): Promise<Setup> {
  const text = configText(check.config);
  const env = dummyEnv(text);
  const target = loadConfigText(text, env).config.upstreams.find((u) => u.name === check.upstream);
  if (target === undefined) throw new Error(`config ${check.config} has no upstream ${check.upstream}`);
  const poolKeys = target.keys.map((k) => k.reveal());
  const fake = mode === 'http' ? await startFakeUpstream({ provider: check.fake ?? fakeFor(target.provider), acceptKeys: poolKeys }) : undefined;
  const ws = mode === 'ws' ? await startWsFakeUpstream({ acceptKeys: poolKeys }) : undefined;
  if (fake) closers.push(() => fake.close());
  if (ws) closers.push(() => ws.close());
  const config = loadConfigObject(pointedAt(parseYaml(text), check.upstream, (fake ?? ws)!.url), env).config;
  const app = await listen(config);
  const addr = app.server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no address');
  return { url: `http://127.0.0.1:${addr.port}`, token: tokenFor(config, check), poolKeys, fake, ws };
}

async function listen(config: Config): Promise<FastifyInstance> {
  const app = await buildApp({ config, logger: createLogger('silent') });
  closers.push(() => app.close());
  await app.listen({ port: 0, host: '127.0.0.1' });
  return app;
}

/** The document with the target upstream's base URL moved to `origin` and its keys' own to `keyOrigin`, paths kept. */
function pointedAt(doc: unknown, target: string, origin: string, keyOrigin = origin): unknown {
  const upstreams = (doc as { upstreams: Record<string, unknown>[] }).upstreams;
  for (const u of upstreams) {
    const base = (u['baseUrl'] as string | undefined) ?? PRESETS[(u['provider'] as Provider | undefined) ?? 'openai'].baseUrl;
    if (base === undefined || base.includes('${')) throw new Error(`upstream ${String(u['name'])}: a recipe's baseUrl must be written out`);
    const aimed = u['name'] === target;
    u['baseUrl'] = aimed ? origin + pathOf(base) : NOWHERE;
    for (const k of (u['keys'] as unknown[] | undefined) ?? []) {
      if (typeof k !== 'object' || k === null || !('baseUrl' in k)) continue;
      const own = k as { baseUrl: string };
      own.baseUrl = aimed ? keyOrigin + pathOf(own.baseUrl) : NOWHERE;
    }
  }
  return doc;
}

function pathOf(url: string): string {
  return new URL(url).pathname.replace(/\/+$/, '');
}

function fakeFor(provider: Provider): FakeProvider {
  return provider === 'anthropic' || provider === 'azure' || provider === 'gemini' || provider === 'openrouter' ? provider : 'openai';
}

function tokenFor(config: Config, check: ClientCheck): string {
  if (config.clients === undefined) {
    if (check.client !== undefined) throw new Error(`config ${check.config} has no clients, but the check names ${check.client}`);
    return PLACEHOLDER;
  }
  const client = check.client === undefined ? config.clients[0] : config.clients.find((c) => c.name === check.client);
  if (client === undefined) throw new Error(`config ${check.config} has no client ${String(check.client)}`);
  return client.token.reveal();
}

/** The block's base URL with keypool's documented address replaced by the test's. */
function localBaseUrl(block: Block, check: ClientCheck, appUrl: string): string {
  const found = baseUrlIn(block.text, check.setting);
  if (found === undefined) throw new Error(`line ${block.line}: no ${check.setting ?? 'keypool URL'} in the block`);
  const url = new URL(found);
  expect(KEYPOOL_ORIGINS).toContain(url.origin);
  return appUrl + url.pathname.replace(/\/+$/, '') + url.search;
}

async function viaRequest(check: ClientCheck, base: string, token: string): Promise<void> {
  const [method, suffix = ''] = check.send!.split(' ') as [string, string?];
  const url = base + suffix;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (check.auth === 'bearer') headers['authorization'] = `Bearer ${token}`;
  else if (check.auth !== 'none') headers[check.auth!] = token;
  const res = await request(url, { method: method as 'GET' | 'POST', headers, body: method === 'POST' ? JSON.stringify(bodyFor(new URL(url).pathname)) : undefined });
  const text = await res.body.text();
  expect({ status: res.statusCode, text }).toMatchObject({ status: 200 });
}

function bodyFor(path: string): unknown {
  if (/:(stream)?generateContent$/i.test(path)) return { contents: [{ role: 'user', parts: [{ text: 'hi' }] }] };
  if (/\/messages(\/count_tokens)?$/.test(path)) return { model: 'claude-sonnet-4-5', max_tokens: 64, messages: MESSAGES };
  if (path.endsWith('/responses')) return { model: 'gpt-5-codex', input: 'hi' };
  return { model: 'gpt-4o-mini', messages: MESSAGES };
}

async function viaSdk(check: ClientCheck, base: string, token: string, block: Block): Promise<void> {
  switch (check.sdk!) {
    case 'openai':
      await new OpenAI({ baseURL: base, apiKey: token, maxRetries: 0 }).chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES });
      return;
    case 'azure': {
      const apiVersion = stringIn(block.text, 'apiVersion');
      const deployment = stringIn(block.text, 'deployment');
      expect({ apiVersion, deployment }).toEqual({ apiVersion: expect.any(String), deployment: expect.any(String) });
      const client = new AzureOpenAI({ endpoint: base, baseURL: null, apiKey: token, apiVersion, deployment, maxRetries: 0 });
      await client.chat.completions.create({ model: deployment!, messages: MESSAGES });
      return;
    }
    case 'anthropic':
      await new Anthropic({ baseURL: base, apiKey: token, authToken: null, maxRetries: 0 }).messages.create({ model: 'claude-sonnet-4-5', max_tokens: 64, messages: MESSAGES });
      return;
    case 'ai-sdk-openai':
      await generateText({ model: createOpenAI({ baseURL: base, apiKey: token })('gpt-4o-mini'), prompt: 'hi', maxRetries: 0 });
      return;
    case 'ai-sdk-anthropic':
      await generateText({ model: createAnthropic({ baseURL: base, apiKey: token })('claude-sonnet-4-5'), prompt: 'hi', maxOutputTokens: 64, maxRetries: 0 });
      return;
  }
}

