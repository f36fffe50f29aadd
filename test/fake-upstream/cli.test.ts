// `keypool fake-upstream` flags, and a full start / listening line / shutdown cycle in-process.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { parseFakeUpstreamArgs, runFakeUpstreamCli } from '../../src/fake-upstream/cli.js';

const KEY = 'sk-cli-secret-0123456789abcdef';
let dirs: string[] = [];

afterEach(async () => {
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  dirs = [];
});

async function keysFile(text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fake-upstream-cli-'));
  dirs.push(dir);
  const file = join(dir, 'keys.json');
  await writeFile(file, text);
  return file;
}

describe('parseFakeUpstreamArgs', () => {
  it('maps every flag onto server options', async () => {
    const file = await keysFile(JSON.stringify({ [KEY]: { kind: 'rate_limit', style: 'none' } }));
    expect(
      await parseFakeUpstreamArgs([
        '--host', '127.0.0.1', '--port', '0', '--latency-ms', '5', '--rate-limit', '5/1000', '--keys-json', file, '--no-record',
      ]),
    ).toEqual({
      host: '127.0.0.1',
      port: 0,
      latencyMs: 5,
      rateLimit: { requests: 5, windowMs: 1000 },
      keys: { [KEY]: { kind: 'rate_limit', style: 'none' } },
      record: false,
    });
    expect(await parseFakeUpstreamArgs([])).toEqual({ record: true });
    expect(await parseFakeUpstreamArgs(['--provider', 'anthropic'])).toEqual({ provider: 'anthropic', record: true });
  });

  it.each([
    [['--port', '70000'], /--port/],
    [['--latency-ms', '-1'], /--latency-ms/],
    [['--rate-limit', '5'], /--rate-limit/],
    [['--rate-limit', '5/0'], /--rate-limit/],
    [['--bogus'], /bogus/],
    [['--provider', 'cohere'], /--provider: expected one of openai, anthropic, gemini, azure, openrouter/],
  ])('rejects %j', async (argv, message) => {
    await expect(parseFakeUpstreamArgs(argv)).rejects.toThrow(message);
  });

  it('explains a bad --keys-json by position, never quoting a key', async () => {
    for (const text of [`{"${KEY}": `, `{"${KEY}": {"kind": "rate_limit", "ms": -5}}`, '[]']) {
      const file = await keysFile(text);
      const failure: unknown = await parseFakeUpstreamArgs(['--keys-json', file]).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(Error);
      expect((failure as Error).message).toContain('--keys-json');
      expect((failure as Error).message).not.toContain(KEY);
    }
  });
});

describe('runFakeUpstreamCli', () => {
  it('prints one listening line, serves the keys file, and stops when told', async () => {
    const file = await keysFile(JSON.stringify({ [KEY]: { kind: 'payment_required' } }));
    const lines: string[] = [];
    let listening: (url: string) => void = () => undefined;
    const url = new Promise<string>((resolve) => (listening = resolve));
    const controller = new AbortController();
    const done = runFakeUpstreamCli(['--keys-json', file, '--no-record'], {
      signal: controller.signal,
      print: (line) => {
        lines.push(line);
        listening(line.replace(/^listening /, ''));
      },
    });
    const base = await url;
    expect(lines).toEqual([expect.stringMatching(/^listening http:\/\/127\.0\.0\.1:\d+$/) as unknown]);
    const res = await request(`${base}/v1/models`, { headers: { authorization: `Bearer ${KEY}` } });
    await res.body.dump();
    expect(res.statusCode).toBe(402);
    controller.abort();
    await done;
    await expect(request(`${base}/v1/models`)).rejects.toThrow();
  });

  it('plays the provider --provider names', async () => {
    let listening: (url: string) => void = () => undefined;
    const url = new Promise<string>((resolve) => (listening = resolve));
    const controller = new AbortController();
    const done = runFakeUpstreamCli(['--provider', 'anthropic'], { signal: controller.signal, print: (line) => listening(line.replace(/^listening /, '')) });
    const res = await request(`${await url}/v1/models`, { headers: { 'x-api-key': KEY } });
    expect([res.statusCode, await res.body.json()]).toEqual([
      400,
      { type: 'error', error: { type: 'invalid_request_error', message: 'anthropic-version: header is required' } },
    ]);
    controller.abort();
    await done;
  });
});
