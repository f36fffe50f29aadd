// No pool key and no client token in anything a WebSocket client receives (handshake answers, their
// headers, messages, close reasons) or in any log line, even when the upstream echoes the key back.
import { afterEach, describe, expect, it } from 'vitest';
import { startWsFakeUpstream, type WsFakeUpstream } from '../../src/fake-upstream/ws-server.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/wait.js';
import { mustOpen, openWs, waitAllClosed, type Opened } from './websocket-helpers.js';

const SECRETS = ['sk-proj-WSSECRETaaaaaaaaaaaaaaaaaa1', 'sk-proj-WSSECRETbbbbbbbbbbbbbbbbbb2', 'plainwssecretcccccccccc3'];
const CLIENT_TOKEN = 'kp-client-WSTOKENdddddddddddddd';

let upstream: WsFakeUpstream | undefined;
let proxy: TestProxy | undefined;
afterEach(async () => {
  await proxy?.close();
  await upstream?.close();
  proxy = undefined;
  upstream = undefined;
});

function expectNoSecret(captured: string): void {
  for (const s of [...SECRETS, CLIENT_TOKEN]) {
    expect(captured).not.toContain(s);
    expect(captured).not.toContain(s.slice(8, 24));
  }
}

const echo = (status: number, secret: string) => ({
  kind: 'status' as const,
  status,
  body: JSON.stringify({ error: { message: `Incorrect API key provided: ${secret}. Also ${secret.slice(0, 12)}****`, code: 'x' } }),
  headers: { 'x-echo': secret },
});

describe('WebSocket secrets', () => {
  it('never reach the client or the logs, even when the upstream echoes them', async () => {
    upstream = await startWsFakeUpstream();
    proxy = await startProxy({ upstreamUrl: upstream.url, keys: SECRETS, retry: { maxRetries: 1, backoffBaseMs: 0 } });
    const ws = proxy.url.replace('http:', 'ws:');
    const captured: string[] = [];
    const keep = (o: Opened): void => {
      captured.push(JSON.stringify(o.headers));
      if (o.kind === 'refused') captured.push(String(o.status), o.body);
    };
    const client = { headers: { authorization: `Bearer ${CLIENT_TOKEN}` }, protocols: ['realtime', `openai-insecure-api-key.${CLIENT_TOKEN}`] };

    // 429 (echo) -> 401 (echo, disabled) -> 400 (echo): the last answer is about the request, so it is
    // relayed as it is, but scrubbed, body and headers (the plain secret is not shaped like a key).
    upstream.script(SECRETS[0]!, echo(429, SECRETS[0]!));
    upstream.script(SECRETS[1]!, echo(401, SECRETS[1]!));
    upstream.script(SECRETS[2]!, echo(400, SECRETS[2]!));
    const relayed = await openWs(`${ws}/v1/responses`, client);
    keep(relayed);
    expect(relayed.kind === 'refused' && relayed.status).toBe(400);
    expect(relayed.kind === 'refused' && relayed.body).toContain('Incorrect API key provided: [redacted].');
    expect(relayed.headers['x-echo']).toBe('[redacted]');

    // A session whose upstream closes with the key in its reason.
    const c = mustOpen(await openWs(`${ws}/v1/responses`, client));
    keep(c);
    await waitFor(() => upstream!.sessions.length === 1);
    const s = upstream.sessions[0]!;
    c.ws.send(JSON.stringify({ type: 'response.create' }));
    await waitFor(() => c.messages.some((m) => m.data.includes('response.completed')));
    s.close(4000, `bad key ${s.key!}`);
    const closed = await c.closed;
    expect(closed.code).toBe(4000);
    expect(closed.reason).toBe('bad key [redacted]');
    captured.push(closed.reason, ...c.messages.map((m) => m.data.toString('latin1')));
    await waitAllClosed(proxy);

    // Every usable key refuses: the client gets keypool's error, which quotes the last upstream message.
    for (const k of SECRETS) upstream.setDefault(k, echo(429, k));
    const refused = await openWs(`${ws}/v1/realtime?model=gpt-realtime`, client);
    keep(refused);
    expect(refused.kind === 'refused' && refused.status).toBe(429);
    expect(refused.kind === 'refused' && refused.body).toContain('Last upstream error');

    // The upstream saw the pool key and never the client's token.
    for (const h of upstream.handshakes) {
      expect(SECRETS).toContain(h.key);
      expect(JSON.stringify(h.headers) + h.protocols.join(',')).not.toContain(CLIENT_TOKEN);
    }
    expectNoSecret(captured.join('\n'));
    expectNoSecret(proxy.logs.join('\n'));
    expect(proxy.logs.some((l) => l.includes('"msg":"websocket"'))).toBe(true);
  });
});
