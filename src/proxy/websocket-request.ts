// The client's WebSocket upgrade request, read before any key is used: whether it is a handshake keypool
// can complete (RFC 6455 §4.2.1), which subprotocols and headers go upstream (never a credential), and
// the model a Realtime URL names. Pure.
import type { IncomingHttpHeaders } from 'node:http';
import { upstreamRequestHeaders } from './headers.js';

/** RFC 6455 §4.1: the key is 16 random bytes in base64 (22 characters and "=="). */
const WS_KEY = /^[+/0-9A-Za-z]{22}==$/;
/** RFC 6455 §4.1: a subprotocol is an RFC 9110 token (the same grammar `ws` enforces). */
const TOKEN = /^[!#$%&'*+\-.0-9A-Z^_`|a-z~]+$/;
/** The only version RFC 6455 defines. */
const WS_VERSION = '13';
/** More subprotocols than any client offers: a longer list is hostile. */
export const MAX_SUBPROTOCOLS = 32;
/** A model name longer than this in the query is not one (it is logged and used as a pool scope). */
const MAX_MODEL_CHARS = 256;

/**
 * Subprotocols that carry a credential. Browsers cannot set an Authorization header on a WebSocket, so
 * OpenAI's Realtime API takes the key (and organisation, project) as subprotocols
 * (https://platform.openai.com/docs/guides/realtime-websocket). The pool key decides all three: a
 * client's organisation that does not match it would make OpenAI refuse every key in turn.
 */
const CREDENTIAL_PROTOCOL_PREFIXES = ['openai-insecure-api-key.', 'openai-organization.', 'openai-project.'];

export type UpgradeCheck =
  /** `offered`: every subprotocol the client listed, in its order (credentials included). */
  | { readonly kind: 'websocket'; readonly offered: readonly string[] }
  | { readonly kind: 'refuse'; readonly status: 400 | 426; readonly message: string; readonly headers?: Readonly<Record<string, string>> };

/** Whether the upgrade request is a WebSocket handshake keypool will carry out. */
export function checkUpgrade(method: string | undefined, headers: IncomingHttpHeaders): UpgradeCheck {
  const upgrade = headers.upgrade;
  if (upgrade === undefined || upgrade.trim().toLowerCase() !== 'websocket') {
    return refuse(400, 'keypool upgrades connections to WebSocket only (Upgrade: websocket).');
  }
  if (method !== 'GET') return refuse(400, 'A WebSocket handshake is a GET request.');
  const key = headers['sec-websocket-key'];
  if (key === undefined || !WS_KEY.test(key.trim())) return refuse(400, 'Missing or invalid Sec-WebSocket-Key header.');
  if (headers['sec-websocket-version']?.trim() !== WS_VERSION) {
    // RFC 6455 §4.4: tell the client which version is spoken.
    return { kind: 'refuse', status: 426, message: 'Unsupported Sec-WebSocket-Version; keypool speaks version 13.', headers: { 'sec-websocket-version': WS_VERSION } };
  }
  const offered = parseSubprotocols(headers['sec-websocket-protocol']);
  if (offered === undefined) return refuse(400, 'Invalid Sec-WebSocket-Protocol header.');
  return { kind: 'websocket', offered };
}

function refuse(status: 400 | 426, message: string): UpgradeCheck {
  return { kind: 'refuse', status, message };
}

/**
 * The subprotocol list (RFC 6455 §4.1: comma-separated tokens, spaces and tabs around them allowed);
 * undefined when malformed: an empty item, a non-token, a duplicate, or too many.
 */
export function parseSubprotocols(value: string | undefined): string[] | undefined {
  if (value === undefined) return [];
  const items = value.split(',');
  if (items.length > MAX_SUBPROTOCOLS) return undefined;
  const seen = new Set<string>();
  for (const raw of items) {
    const p = raw.replace(/^[ \t]+|[ \t]+$/g, '');
    if (!TOKEN.test(p) || seen.has(p)) return undefined;
    seen.add(p);
  }
  return [...seen];
}

/** True for a subprotocol that carries a credential (compared case-insensitively). */
export function isCredentialProtocol(protocol: string): boolean {
  const p = protocol.toLowerCase();
  return CREDENTIAL_PROTOCOL_PREFIXES.some((prefix) => p.startsWith(prefix));
}

/** The subprotocols offered upstream: the client's, credentials left out. */
export function upstreamSubprotocols(offered: readonly string[]): string[] {
  return offered.filter((p) => !isCredentialProtocol(p));
}

/**
 * The client's handshake headers as the upstream should see them, before the key is added: the HTTP
 * rules (hop-by-hop, credentials, Host) and every Sec-WebSocket-* header, which belong to each hop's
 * own handshake (the WebSocket client sets key, version, extensions and subprotocols itself).
 */
export function upstreamHandshakeHeaders(client: IncomingHttpHeaders): Record<string, string | string[]> {
  const out = upstreamRequestHeaders(client);
  for (const name of Object.keys(out)) if (name.startsWith('sec-websocket-')) delete out[name];
  return out;
}

/**
 * The `model` query parameter (the Realtime API names its model there): '' when absent or unusable, and
 * whether the query names it more than once. keypool routes and checks one value while an upstream may
 * read another (the last, for many servers), so a repeated one is refused rather than guessed.
 */
export function queryModel(url: string): { readonly model: string; readonly repeated: boolean } {
  const q = url.indexOf('?');
  if (q === -1) return NO_MODEL;
  let models: string[];
  try {
    models = new URLSearchParams(url.slice(q + 1)).getAll('model');
  } catch {
    return { model: '', repeated: true };
  }
  const model = models[0];
  const repeated = models.length > 1;
  if (model === undefined || model.length > MAX_MODEL_CHARS || /[\x00-\x1f\x7f]/.test(model)) return repeated ? { model: '', repeated } : NO_MODEL;
  return { model, repeated };
}

const NO_MODEL = Object.freeze({ model: '', repeated: false });
