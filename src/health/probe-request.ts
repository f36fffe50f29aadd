// The request a probe sends with one key: the upstream's `probe` (default GET <baseUrl>/models), with
// the key injected as the proxy injects it. Probing one model: a JSON probe body gets that model, and a
// probe without one asks `GET <baseUrl>/models/<model>` (OpenAI's and Anthropic's "retrieve model",
// which answers 404 to a key whose project may not use it). Pure.
import type { Upstream } from '../config/load.js';
import { setKey } from '../proxy/headers.js';

export interface ProbeRequest {
  readonly method: Upstream['probe']['method'];
  readonly url: string;
  readonly headers: Record<string, string | string[]>;
  readonly body: string | undefined;
  /** The model a refusal would concern ('' when none): what blame reads the answer against. */
  readonly model: string;
}

export type ProbeTarget = Pick<Upstream, 'origin' | 'basePath' | 'authHeader' | 'probe'>;

/** `model` given: the probe is about that model (a model refusal being re-checked). */
export function probeRequest(u: ProbeTarget, secret: string, model?: string): ProbeRequest {
  const headers: Record<string, string | string[]> = { accept: 'application/json', 'user-agent': 'keypool-probe' };
  setKey(headers, u.authHeader, secret);
  const base = `${u.origin}${u.basePath}`;
  const spec = u.probe;
  const parsed = spec.body === undefined ? undefined : jsonObject(spec.body);
  if (model !== undefined && model !== '' && (parsed === undefined || !('model' in parsed))) {
    return { method: 'GET', url: `${base}/models/${encodeURIComponent(model)}`, headers, body: undefined, model };
  }
  let body = spec.body;
  if (parsed !== undefined && model !== undefined && model !== '') body = JSON.stringify({ ...parsed, model });
  if (body !== undefined) headers['content-type'] = 'application/json';
  return { method: spec.method, url: `${base}${spec.path}`, headers, body, model: model ?? modelOf(spec.path, parsed) };
}

/** What the probe itself names: the body's `model`, or `/models/<id>` in its path. */
function modelOf(path: string, body: Record<string, unknown> | undefined): string {
  const fromBody = body?.['model'];
  if (typeof fromBody === 'string') return fromBody;
  const id = /\/models\/([^/?]+)/.exec(path)?.[1];
  if (id === undefined) return '';
  try {
    return decodeURIComponent(id);
  } catch {
    return id;
  }
}

function jsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
