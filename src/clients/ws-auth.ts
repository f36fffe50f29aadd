// Client tokens on WebSocket handshakes: the same gate as HTTP, plus the place browsers must put a token
// (they cannot set headers on a WebSocket): the `openai-insecure-api-key.<token>` subprotocol.
import type { IncomingHttpHeaders } from 'node:http';
import type { Authenticate } from '../proxy/websocket-proxy.js';
import type { ClientGate } from './client-gate.js';

const SUBPROTOCOL_TOKEN = 'openai-insecure-api-key.';

export function wsAuthenticator(gate: ClientGate | undefined): Authenticate | undefined {
  if (gate === undefined) return undefined;
  return (headers: IncomingHttpHeaders) => {
    const client = gate.identify(headers) ?? gate.identify({ authorization: `Bearer ${subprotocolToken(headers['sec-websocket-protocol'])}` });
    if (client === undefined) return { ok: false, error: gate.unauthorized() };
    return { ok: true, client: client.name, allow: (upstream, model) => gate.refuseModel(client, upstream, model), admit: (upstream, now) => gate.admit(client, upstream, now) };
  };
}

function subprotocolToken(v: string | string[] | undefined): string {
  const list = (Array.isArray(v) ? v.join(',') : (v ?? '')).split(',');
  for (const p of list) {
    const t = p.trim();
    if (t.startsWith(SUBPROTOCOL_TOKEN)) return t.slice(SUBPROTOCOL_TOKEN.length);
  }
  return '';
}
