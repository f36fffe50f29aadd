// The contract each provider personality fulfils: where it reads the key, what it refuses before any
// behaviour, and the reply it gives for each behaviour. server.ts and respond.ts stay provider-blind.
import type { IncomingHttpHeaders } from 'node:http';
import type { Behavior, Provider } from './behaviors.js';

export type HeaderMap = Record<string, string>;

/** What one request gets, before it is written. Bodies are bytes so constant ones are built once. */
export type Reply =
  | { readonly kind: 'json'; readonly status: number; readonly body: Buffer; readonly headers?: HeaderMap }
  /** Status 200 and one write per frame. @default contentType 'text/event-stream' */
  | { readonly kind: 'stream'; readonly frames: readonly Buffer[]; readonly contentType?: string; readonly headers?: HeaderMap };

export interface FakeRequest {
  readonly method: string;
  /** Without the query string. */
  readonly path: string;
  /** The raw query without its `?`; '' when there is none. */
  readonly query: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** Behaviours whose reply depends on the provider (ok, stream and the failures); hang and status do not. */
export type ProviderBehavior = Exclude<Behavior, { kind: 'hang' | 'status' }>;
export type FailureBehavior = Exclude<ProviderBehavior, { kind: 'ok' | 'stream' }>;

export interface FailureEnv {
  readonly now: number;
  /** The limit a scripted 429 reports when the server has no window of its own. */
  readonly scriptedLimit: number;
}

export interface Personality {
  readonly provider: Provider;
  /** The response header that carries the request id (OpenAI x-request-id, Anthropic request-id). */
  readonly requestIdHeader: string;
  /** The request's credential where this provider reads it; `query` is the raw query string. */
  keyOf(headers: IncomingHttpHeaders, query: string): string | undefined;
  /** A refusal every request gets whatever its key's behaviour (Anthropic without `anthropic-version`). */
  precheck(request: FakeRequest): Reply | undefined;
  /** The answer to a request without a key, or with one `acceptKeys` does not list. */
  refuseKey(request: FakeRequest, missing: boolean): Reply;
  /** The `ok` behaviour: the endpoint's success, streamed when the request asks for a stream. */
  ok(request: FakeRequest): Reply;
  /** The `stream` behaviour: this provider's stream of `chunks` text pieces, whatever the path. */
  stream(request: FakeRequest, chunks: number): Reply;
  failure(behavior: FailureBehavior, request: FakeRequest, env: FailureEnv): Reply;
  /** Over the server's fixed window: the provider's 429 telling when the window resets. */
  windowExceeded(request: FakeRequest, limit: number, resetMs: number, now: number): Reply;
  /** Rate-limit headers on a success within the window (none for providers that send none). */
  windowHeaders(limit: number, remaining: number, resetMs: number, now: number): HeaderMap | undefined;
}

const BEARER = /^bearer\s+(\S+)\s*$/i;

/** A header's value when it is one non-empty string. */
export function headerKey(headers: IncomingHttpHeaders, header: string): string | undefined {
  const value = headers[header];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** The bearer token, else `header` (x-api-key, api-key), else undefined. */
export function bearerOr(headers: IncomingHttpHeaders, header: string): string | undefined {
  const authorization = headers.authorization;
  if (authorization !== undefined) {
    const token = BEARER.exec(authorization)?.[1];
    if (token !== undefined) return token;
  }
  return headerKey(headers, header);
}

export const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

export function jsonReply(status: number, body: Buffer, headers?: HeaderMap): Reply {
  return headers === undefined ? { kind: 'json', status, body } : { kind: 'json', status, body, headers };
}

/** One SSE event: `data:` only (OpenAI style) or with an `event:` line (Anthropic, OpenAI Responses). */
export function sseFrame(data: unknown, event?: string): Buffer {
  const line = `data: ${JSON.stringify(data)}\n\n`;
  return Buffer.from(event === undefined ? line : `event: ${event}\n${line}`);
}

/** The `model` field of a JSON request body, or `fallback`. */
export function requestModel(body: Buffer, fallback: string): string {
  const value = parseObject(body)?.['model'];
  return typeof value === 'string' && value !== '' ? value : fallback;
}

export function parseObject(body: Buffer): Record<string, unknown> | undefined {
  if (body.length === 0) return undefined;
  try {
    const value: unknown = JSON.parse(body.toString('utf8'));
    return isObject(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** One value of a raw query string (`key=…`, `api-version=…`), decoded; undefined when absent. */
export function queryParam(query: string, name: string): string | undefined {
  if (query === '') return undefined;
  const value = new URLSearchParams(query).get(name);
  return value === null ? undefined : value;
}

export function decodeOr(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** A token count for bodies the fake does not tokenise: about four bytes a token, at least one. */
export function roughTokens(body: Buffer): number {
  return Math.max(1, Math.ceil(body.length / 4));
}
