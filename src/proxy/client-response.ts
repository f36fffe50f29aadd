// What keypool itself writes to a client: its own errors (OpenAI-shaped JSON) and the x-keypool-*
// headers every answer carries. Never a secret: keys appear by name only.
import type { ServerResponse } from 'node:http';
import type { ErrorFormat, KeypoolError } from '../errors.js';

/** x-keypool-* on every answer: attempts, the key's name (never its secret), time waited. */
export function keypoolHeaders<T extends Record<string, unknown>>(headers: T, attempts: number, key: string | undefined, waitedMs: number): T {
  const h = headers as Record<string, unknown>;
  h['x-keypool-attempts'] = String(attempts);
  if (key !== undefined) h['x-keypool-key'] = key;
  if (waitedMs > 0) h['x-keypool-wait-ms'] = String(Math.round(waitedMs));
  return headers;
}

/** The same x-keypool-* appended to a flat header list. */
export function keypoolHeaderList(list: string[], attempts: number, key: string | undefined, waitedMs: number): string[] {
  list.push('x-keypool-attempts', String(attempts));
  if (key !== undefined) list.push('x-keypool-key', key);
  if (waitedMs > 0) list.push('x-keypool-wait-ms', String(Math.round(waitedMs)));
  return list;
}

export function sendError(res: ServerResponse, error: KeypoolError, attempts: number, key?: string, waitedMs = 0, format: ErrorFormat = 'openai'): void {
  const body = JSON.stringify(error.toBody(format));
  const headers = keypoolHeaders({ ...error.headers, 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(body)) }, attempts, key, waitedMs);
  res.writeHead(error.status, headers);
  res.end(body);
}
