// Decides which OpenAI success a request gets from its method and path suffix (any prefix, so
// `/v1/models`, `/models`, Azure's `/openai/deployments/d/…` and OpenRouter's `/api/v1/…` all work).
// The request body is parsed only when the answer depends on it.
import {
  CHAT_COMPLETION_BODY,
  COMPLETION_BODY,
  MODELS_BODY,
  RESPONSE_BODY,
  embeddingsBody,
  modelBody,
  streamFrames,
} from './openai-bodies.js';
import { invalidUrlBody } from './openai-errors.js';
import { responseStreamFrames } from './openai-responses-stream.js';
import { decodeOr, isObject, jsonReply, parseObject, type Reply } from './personality.js';
import { DEFAULT_STREAM_CHUNKS } from './stream-defaults.js';

const MODEL_ID = /\/models\/([^/]+)$/;

// Built once: the plain chat path is the benchmark's hot one and allocates nothing per request.
const CHAT_REPLY: Reply = Object.freeze(jsonReply(200, CHAT_COMPLETION_BODY));
const COMPLETION_REPLY: Reply = Object.freeze(jsonReply(200, COMPLETION_BODY));
const RESPONSE_REPLY: Reply = Object.freeze(jsonReply(200, RESPONSE_BODY));
const MODELS_REPLY: Reply = Object.freeze(jsonReply(200, MODELS_BODY));

/** `path` excludes the query string. */
export function routeOk(method: string, path: string, body: Buffer): Reply {
  if (method === 'POST') {
    if (path.endsWith('/chat/completions')) {
      // A cheap byte search keeps JSON.parse off the plain chat path.
      if (!body.includes('"stream"')) return CHAT_REPLY;
      const request = parseObject(body);
      if (request?.['stream'] !== true) return CHAT_REPLY;
      return { kind: 'stream', frames: streamFrames(DEFAULT_STREAM_CHUNKS, wantsUsage(request)) };
    }
    if (path.endsWith('/embeddings')) {
      const request = parseObject(body);
      return jsonReply(200, embeddingsBody(inputCount(request?.['input']), request?.['encoding_format'] === 'base64'));
    }
    if (path.endsWith('/completions')) return COMPLETION_REPLY;
    if (path.endsWith('/responses')) {
      if (!body.includes('"stream"') || parseObject(body)?.['stream'] !== true) return RESPONSE_REPLY;
      return { kind: 'stream', frames: responseStreamFrames(DEFAULT_STREAM_CHUNKS) };
    }
  } else if (method === 'GET') {
    if (path.endsWith('/models')) return MODELS_REPLY;
    const id = MODEL_ID.exec(path)?.[1];
    if (id !== undefined) return jsonReply(200, modelBody(decodeOr(id)));
  }
  return jsonReply(404, invalidUrlBody(method, path));
}

/** Whether a chat request asked for OpenAI's closing usage chunk. */
export function wantsUsage(request: Record<string, unknown> | undefined): boolean {
  const options = request?.['stream_options'];
  return isObject(options) && options['include_usage'] === true;
}

/** Embeddings take a string, a token array, or a list of either; a list gets one vector per item. */
function inputCount(input: unknown): number {
  if (!Array.isArray(input) || input.length === 0) return 1;
  const isBatch = input.every((item) => typeof item === 'string' || Array.isArray(item));
  return isBatch ? input.length : 1;
}
