// Decides which success a request gets from its method and path suffix (any prefix, so `/v1/models`
// and `/models` both work). The request body is parsed only when the answer depends on it.
import {
  CHAT_COMPLETION_BODY,
  COMPLETION_BODY,
  MODELS_BODY,
  RESPONSE_BODY,
  embeddingsBody,
  modelBody,
} from './openai-bodies.js';
import { invalidUrlBody } from './openai-errors.js';

export type OkRoute =
  | { kind: 'json'; status: number; body: Buffer }
  | { kind: 'stream'; includeUsage: boolean };

const MODEL_ID = /\/models\/([^/]+)$/;

/** `path` excludes the query string. */
export function routeOk(method: string, path: string, body: Buffer): OkRoute {
  if (method === 'POST') {
    if (path.endsWith('/chat/completions')) {
      // A cheap byte search keeps JSON.parse off the plain chat path, the benchmark's hot one.
      if (!body.includes('"stream"')) return { kind: 'json', status: 200, body: CHAT_COMPLETION_BODY };
      const request = parseObject(body);
      if (request?.['stream'] !== true) return { kind: 'json', status: 200, body: CHAT_COMPLETION_BODY };
      return { kind: 'stream', includeUsage: wantsUsage(request) };
    }
    if (path.endsWith('/embeddings')) {
      const request = parseObject(body);
      return {
        kind: 'json',
        status: 200,
        body: embeddingsBody(inputCount(request?.['input']), request?.['encoding_format'] === 'base64'),
      };
    }
    if (path.endsWith('/completions')) return { kind: 'json', status: 200, body: COMPLETION_BODY };
    if (path.endsWith('/responses')) return { kind: 'json', status: 200, body: RESPONSE_BODY };
  } else if (method === 'GET') {
    if (path.endsWith('/models')) return { kind: 'json', status: 200, body: MODELS_BODY };
    const id = MODEL_ID.exec(path)?.[1];
    if (id !== undefined) return { kind: 'json', status: 200, body: modelBody(decodeOr(id)) };
  }
  return { kind: 'json', status: 404, body: invalidUrlBody(method, path) };
}

/** Whether a chat request asked for OpenAI's closing usage chunk. */
export function wantsUsage(request: Record<string, unknown> | undefined): boolean {
  const options = request?.['stream_options'];
  return isObject(options) && options['include_usage'] === true;
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

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Embeddings take a string, a token array, or a list of either; a list gets one vector per item. */
function inputCount(input: unknown): number {
  if (!Array.isArray(input) || input.length === 0) return 1;
  const isBatch = input.every((item) => typeof item === 'string' || Array.isArray(item));
  return isBatch ? input.length : 1;
}

function decodeOr(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
