// Signals, end to end on the built CLI: SIGTERM lets in-flight requests finish within the grace period,
// then cuts what is left (a stream gets its final error event), and exits 0 with one line saying what was
// cut; a second signal exits at once; SIGHUP reloads, never kills.
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { serve } from '../helpers/serve.js';

const KEY = 'sk-shutdown-test-key-0001';
const closers: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!();
});

/** An upstream whose streams send one event and then hold, and whose plain answers take `slowMs`. */
async function holdingUpstream(slowMs = 0) {
  const open = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.url?.includes('stream')) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: {"n":1}\n\n');
        open.add(res);
      } else {
        setTimeout(() => res.end('{"ok":true}'), slowMs);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function config(upstreamUrl: string, graceMs: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'kp-shutdown-'));
  const file = join(dir, 'keypool.yaml');
  writeFileSync(file, `server: { shutdownGraceMs: ${graceMs} }\nupstreams:\n  - name: up\n    baseUrl: ${upstreamUrl}/v1\n    keys: [${KEY}]\n`);
  return file;
}

const exitOf = (child: ReturnType<typeof Object>) =>
  new Promise<number | null>((resolve) => (child as import('node:child_process').ChildProcess).once('exit', (code) => resolve(code)));

describe('signals', () => {
  it('SIGHUP reloads without touching a stream in flight; SIGTERM cuts it after the grace period with a final error event and exits 0', async () => {
    const up = await holdingUpstream();
    const kp = await serve(config(up, 300));
    closers.push(() => void kp.child.kill('SIGKILL'));
    const res = await request(`${kp.url}/v1/stream`, { method: 'POST', body: '{"stream":true}', headers: { 'content-type': 'application/json' } });
    const chunks: string[] = [];
    const body = (async () => {
      for await (const c of res.body) chunks.push(c.toString());
      return chunks.join('');
    })();
    while (chunks.length === 0) await new Promise((r) => setTimeout(r, 5));

    kp.child.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, 100));
    expect(kp.child.exitCode).toBeNull();
    expect(kp.output()).toContain('"why":"SIGHUP"');

    const exited = exitOf(kp.child);
    kp.child.kill('SIGTERM');
    const text = await body;
    expect(text.startsWith('data: {"n":1}\n\n')).toBe(true);
    const last = JSON.parse(text.trimEnd().split('\n\n').at(-1)!.replace(/^data: /, ''));
    expect(last.error.code).toBe('keypool_stream_interrupted');
    expect(await exited).toBe(0);
    expect(kp.output()).toMatch(/stopped; cut 1 request/);
    expect(kp.output()).not.toContain(KEY);
  });

  it('a request that finishes within the grace period is answered in full; new connections are refused', async () => {
    const up = await holdingUpstream(300);
    // A grace period far longer than the test may run: shutdown must end when the request does, not at the grace.
    const kp = await serve(config(up, 60_000));
    closers.push(() => void kp.child.kill('SIGKILL'));
    const pending = request(`${kp.url}/v1/slow`, { method: 'POST', body: '{}' });
    await new Promise((r) => setTimeout(r, 100));
    const exited = exitOf(kp.child);
    kp.child.kill('SIGTERM');
    const res = await pending;
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toEqual({ ok: true });
    expect(await exited).toBe(0);
    await expect(request(`${kp.url}/healthz`)).rejects.toThrow();
    expect(kp.output()).toMatch(/"msg":"stopped"/);
  });

  it('a second signal exits at once, with a line', async () => {
    const up = await holdingUpstream();
    const kp = await serve(config(up, 60_000));
    closers.push(() => void kp.child.kill('SIGKILL'));
    const res = await request(`${kp.url}/v1/stream`, { method: 'POST', body: '{"stream":true}' });
    void res.body.dump().catch(() => undefined);
    await new Promise((r) => setTimeout(r, 50));
    const exited = exitOf(kp.child);
    const t0 = Date.now();
    kp.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 100));
    kp.child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(kp.output()).toContain('second signal: exiting now');
  });
});
