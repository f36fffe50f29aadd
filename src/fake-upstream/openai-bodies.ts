// OpenAI-shaped response bodies, serialised once at load so the ok path only copies bytes.
// Shapes follow https://platform.openai.com/docs/api-reference and are what openai-node v6 parses.
import { piece, REPLY_TEXT } from './stream-defaults.js';

export { REPLY_TEXT } from './stream-defaults.js';

/** A fixed `created` stamp: bodies are built once, and a constant keeps snapshots stable. */
const CREATED = 1_700_000_000;
const CHAT_MODEL = 'gpt-4o-mini';
const COMPLETION_MODEL = 'gpt-3.5-turbo-instruct';
const EMBEDDING_MODEL = 'text-embedding-3-small';
export const MODEL_IDS: readonly string[] = [CHAT_MODEL, 'gpt-4o', COMPLETION_MODEL, EMBEDDING_MODEL];
export { CHAT_MODEL, CREATED };

/** Exactly representable as float32, so the base64 form round-trips to the same numbers. */
export const EMBEDDING: readonly number[] = [0.5, -0.25, 0.125, 0, 1, -1, 0.75, -0.5];

const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

function modelObject(id: string): { id: string; object: 'model'; created: number; owned_by: string } {
  return { id, object: 'model', created: CREATED, owned_by: 'fake' };
}

export const MODELS_BODY = json({ object: 'list', data: MODEL_IDS.map(modelObject) });

export function modelBody(id: string): Buffer {
  return json(modelObject(id));
}

export const CHAT_COMPLETION_BODY = json({
  id: 'chatcmpl-fake',
  object: 'chat.completion',
  created: CREATED,
  model: CHAT_MODEL,
  system_fingerprint: null,
  choices: [
    {
      index: 0,
      message: { role: 'assistant', content: REPLY_TEXT, refusal: null },
      logprobs: null,
      finish_reason: 'stop',
    },
  ],
  usage: { prompt_tokens: 9, completion_tokens: 6, total_tokens: 15 },
});

export const COMPLETION_BODY = json({
  id: 'cmpl-fake',
  object: 'text_completion',
  created: CREATED,
  model: COMPLETION_MODEL,
  choices: [{ text: REPLY_TEXT, index: 0, logprobs: null, finish_reason: 'stop' }],
  usage: { prompt_tokens: 5, completion_tokens: 6, total_tokens: 11 },
});

/** A Responses API `response` object; the stream's `response.created` carries it in progress. */
export function responseObject(text: string, done: boolean, outputTokens: number): Record<string, unknown> {
  return {
    id: 'resp_fake',
    object: 'response',
    created_at: CREATED,
    status: done ? 'completed' : 'in_progress',
    error: null,
    incomplete_details: null,
    model: CHAT_MODEL,
    output: done ? [responseMessage(text, true)] : [],
    parallel_tool_calls: true,
    tool_choice: 'auto',
    tools: [],
    usage: done
      ? {
          input_tokens: 9,
          input_tokens_details: { cached_tokens: 0 },
          output_tokens: outputTokens,
          output_tokens_details: { reasoning_tokens: 0 },
          total_tokens: 9 + outputTokens,
        }
      : null,
  };
}

export function responseMessage(text: string, done: boolean): Record<string, unknown> {
  return {
    type: 'message',
    id: 'msg_fake',
    status: done ? 'completed' : 'in_progress',
    role: 'assistant',
    content: done ? [{ type: 'output_text', text, annotations: [] }] : [],
  };
}

export const RESPONSE_BODY = json(responseObject(REPLY_TEXT, true, 6));

const EMBEDDING_FLOATS = JSON.stringify(EMBEDDING);
// openai-node asks for base64 unless the caller names a format, then decodes little-endian float32.
const EMBEDDING_BASE64 = JSON.stringify(Buffer.from(new Float32Array(EMBEDDING).buffer).toString('base64'));

/** One embedding per input; built by concatenation because the count varies per request. */
export function embeddingsBody(count: number, base64: boolean): Buffer {
  const vector = base64 ? EMBEDDING_BASE64 : EMBEDDING_FLOATS;
  const items: string[] = [];
  for (let index = 0; index < count; index++) {
    items.push(`{"object":"embedding","index":${index},"embedding":${vector}}`);
  }
  const tokens = 8 * count;
  return Buffer.from(
    `{"object":"list","data":[${items.join(',')}],"model":"${EMBEDDING_MODEL}",` +
      `"usage":{"prompt_tokens":${tokens},"total_tokens":${tokens}}}`,
  );
}

export const DONE_FRAME = Buffer.from('data: [DONE]\n\n');

const sseFrame = (value: unknown): Buffer => Buffer.from(`data: ${JSON.stringify(value)}\n\n`);

function chunkFrame(index: number, last: boolean): Buffer {
  const content = piece(index);
  return sseFrame({
    id: 'chatcmpl-fake-stream',
    object: 'chat.completion.chunk',
    created: CREATED,
    model: CHAT_MODEL,
    system_fingerprint: null,
    choices: [
      {
        index: 0,
        delta: index === 0 ? { role: 'assistant', content } : { content },
        logprobs: null,
        finish_reason: last ? 'stop' : null,
      },
    ],
  });
}

/** The closing chunk OpenAI sends when the request asked for `stream_options.include_usage`. */
function usageFrame(chunks: number): Buffer {
  return sseFrame({
    id: 'chatcmpl-fake-stream',
    object: 'chat.completion.chunk',
    created: CREATED,
    model: CHAT_MODEL,
    system_fingerprint: null,
    choices: [],
    usage: { prompt_tokens: 9, completion_tokens: chunks, total_tokens: 9 + chunks },
  });
}

// Few distinct chunk counts occur in practice; the cap keeps odd scripts from growing it without end.
const FRAME_CACHE_LIMIT = 64;
const frameCache = new Map<string, readonly Buffer[]>();

/** Every `data:` event of one stream, `[DONE]` included, one Buffer per write. */
export function streamFrames(chunks: number, includeUsage: boolean): readonly Buffer[] {
  const cacheKey = `${chunks}:${includeUsage}`;
  const cached = frameCache.get(cacheKey);
  if (cached !== undefined) return cached;
  const frames: Buffer[] = [];
  for (let index = 0; index < chunks; index++) frames.push(chunkFrame(index, index === chunks - 1));
  if (includeUsage) frames.push(usageFrame(chunks));
  frames.push(DONE_FRAME);
  if (frameCache.size < FRAME_CACHE_LIMIT) frameCache.set(cacheKey, frames);
  return frames;
}
