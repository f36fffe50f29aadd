// `keypool health` finds keypool where `serve` listens (config, KEYPOOL_HOST / KEYPOOL_PORT) and exits
// 0 only when /healthz answers 200; only the server fields of the config need to be valid.
import { createServer, type Server } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { healthCommand } from '../../src/cli/health.js';
import { connectHost, serverAddress } from '../../src/cli/server-address.js';
import { captureIo } from './io.js';

let server: Server | undefined;
afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** A stand-in keypool: /healthz answers `status`. */
async function healthz(status: number): Promise<number> {
  server = createServer((req, res) => {
    res.writeHead(req.url === '/healthz' ? status : 404, { 'content-type': 'application/json' }).end('{"status":"ok"}');
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return addr.port;
}

function configFile(text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'kp-health-')), 'keypool.yaml');
  writeFileSync(file, text);
  return file;
}

describe('keypool health', () => {
  it('checks the port KEYPOOL_PORT gives, over the config, on loopback for 0.0.0.0', async () => {
    const port = await healthz(200);
    const file = configFile('server: { host: 0.0.0.0, port: 1 }\nupstreams: [{ name: a, baseUrl: "http://127.0.0.1:9/v1", keys: [k] }]\n');
    const io = captureIo({ KEYPOOL_CONFIG: file, KEYPOOL_PORT: String(port) });
    expect(await healthCommand.run([], io)).toBe(0);
    expect(io.stdout()).toBe(`ok http://127.0.0.1:${port}/healthz\n`);
    // Without the override it checks the config's port, where nothing answers.
    const io2 = captureIo({ KEYPOOL_CONFIG: file });
    expect(await healthCommand.run([], io2)).toBe(1);
    expect(io2.stderr()).toContain('http://127.0.0.1:1/healthz: ECONNREFUSED');
  });

  it('needs only the server fields: a key variable missing in this shell does not matter', async () => {
    const port = await healthz(200);
    const file = configFile(`server: { port: ${port} }\nupstreams: [{ name: a, baseUrl: "\${NOT_SET_URL}", keysFromFile: /nonexistent, keys: ["\${NOT_SET_KEY}"] }]\n`);
    expect(await healthCommand.run(['--config', file], captureIo())).toBe(0);
  });

  it('works without any config: the defaults and the variables', async () => {
    const port = await healthz(200);
    expect(await healthCommand.run([], captureIo({ KEYPOOL_PORT: String(port) }))).toBe(0);
  });

  it('exits 1 when /healthz answers anything but 200', async () => {
    const port = await healthz(503);
    const io = captureIo();
    expect(await healthCommand.run(['--url', `http://127.0.0.1:${port}`], io)).toBe(1);
    expect(io.stderr()).toContain('answered 503');
  });

  it('exits 2 naming the variable or field when the address cannot be told', async () => {
    const io = captureIo({ KEYPOOL_PORT: 'eighty' });
    expect(await healthCommand.run([], io)).toBe(2);
    expect(io.stderr()).toContain('KEYPOOL_PORT (server.port): expected a number, got text that is not one');
    const file = configFile('server: { port: "${NO_SUCH_PORT}" }\nupstreams: []\n');
    const io2 = captureIo({ KEYPOOL_CONFIG: file });
    expect(await healthCommand.run([], io2)).toBe(2);
    expect(io2.stderr()).toContain('server.port: environment variable NO_SUCH_PORT is not set');
    const io3 = captureIo();
    expect(await healthCommand.run(['--config', '/nonexistent/keypool.yaml'], io3)).toBe(2);
    expect(io3.stderr()).toContain('cannot read config file /nonexistent/keypool.yaml: ENOENT');
  });
});

describe('serverAddress', () => {
  it('applies overrides and expansion as serve does', () => {
    const file = configFile('server:\n  host: ${BIND:-127.0.0.1}\n  port: ${PORT:-9000}\n');
    expect(serverAddress(file, {})).toEqual({ ok: true, url: 'http://127.0.0.1:9000', adminToken: undefined });
    expect(serverAddress(file, { BIND: '::', PORT: '9001' })).toMatchObject({ url: 'http://[::1]:9001' });
    expect(serverAddress(file, { KEYPOOL_HOST: 'localhost', KEYPOOL_PORT: '9002', PORT: '9001' })).toMatchObject({ url: 'http://localhost:9002' });
  });

  it('reads the admin token from admin.token or admin.tokenFile', () => {
    const tokenFile = configFile('file-token-abc\n');
    expect(serverAddress(configFile('admin: { token: "${T}" }\n'), { T: 'tok-1' })).toMatchObject({ adminToken: 'tok-1' });
    expect(serverAddress(configFile(`admin: { tokenFile: ${tokenFile} }\n`), {})).toMatchObject({ adminToken: 'file-token-abc' });
  });

  it('never quotes a document that is not YAML', () => {
    const r = serverAddress(configFile('server: { port: [sk-secret-in-bad-yaml-0001\n'), {});
    expect(r.ok).toBe(false);
    expect(JSON.stringify(r)).not.toContain('sk-secret');
  });

  it.each([
    ['0.0.0.0', '127.0.0.1'],
    ['::', '[::1]'],
    ['127.0.0.1', '127.0.0.1'],
    ['::1', '[::1]'],
    ['fd00::5', '[fd00::5]'],
    ['keypool', 'keypool'],
  ])('connectHost(%s) = %s', (host, expected) => {
    expect(connectHost(host)).toBe(expected);
  });
});
