// Anthropic Messages API successes: a message, its SSE stream, token counts and the model list.
// Shapes follow https://docs.anthropic.com/en/api/messages, the stream's event flow
// https://docs.anthropic.com/en/docs/build-with-claude/streaming (message_start, content_block_start,
// ping, content_block_delta…, content_block_stop, message_delta with the usage, message_stop),
// https://docs.anthropic.com/en/api/messages-count-tokens and https://docs.anthropic.com/en/api/models-list;
// they are what @anthropic-ai/sdk and @ai-sdk/anthropic parse.
import { json, sseFrame } from './personality.js';
import { piece, streamedText } from './stream-defaults.js';

export const ANTHROPIC_MODEL = 'claude-sonnet-4-5-20250929';

const MODELS = [
  { id: 'claude-opus-4-1-20250805', display_name: 'Claude Opus 4.1', created_at: '2025-08-05T00:00:00Z' },
  { id: ANTHROPIC_MODEL, display_name: 'Claude Sonnet 4.5', created_at: '2025-09-29T00:00:00Z' },
  { id: 'claude-haiku-4-5-20251001', display_name: 'Claude Haiku 4.5', created_at: '2025-10-01T00:00:00Z' },
].map((model) => ({ type: 'model', ...model }));

export const ANTHROPIC_MODELS_BODY = json({
  data: MODELS,
  has_more: false,
  first_id: MODELS[0]?.id ?? null,
  last_id: MODELS[MODELS.length - 1]?.id ?? null,
});

export function anthropicModelBody(id: string): Buffer {
  const known = MODELS.find((model) => model.id === id);
  return json(known ?? { type: 'model', id, display_name: id, created_at: '2025-01-01T00:00:00Z' });
}

const INPUT_TOKENS = 9;

function usage(outputTokens: number): Record<string, number> {
  return { input_tokens: INPUT_TOKENS, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: outputTokens };
}

function message(model: string, text: string | undefined, outputTokens: number): Record<string, unknown> {
  return {
    id: 'msg_fake',
    type: 'message',
    role: 'assistant',
    model,
    content: text === undefined ? [] : [{ type: 'text', text }],
    stop_reason: text === undefined ? null : 'end_turn',
    stop_sequence: null,
    usage: usage(outputTokens),
  };
}

/** The plain answer to POST /v1/messages. */
export function anthropicMessageBody(model: string): Buffer {
  return json(message(model, streamedText(5), 6));
}

export function countTokensBody(inputTokens: number): Buffer {
  return json({ input_tokens: inputTokens });
}

/** Every event of a streamed message whose text comes in `chunks` deltas; `model` echoes the request's. */
export function anthropicStreamFrames(model: string, chunks: number): Buffer[] {
  const frames = [
    sseFrame({ type: 'message_start', message: message(model, undefined, 1) }, 'message_start'),
    sseFrame({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }, 'content_block_start'),
    sseFrame({ type: 'ping' }, 'ping'),
  ];
  for (let index = 0; index < chunks; index++) {
    frames.push(
      sseFrame({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: piece(index) } }, 'content_block_delta'),
    );
  }
  frames.push(
    sseFrame({ type: 'content_block_stop', index: 0 }, 'content_block_stop'),
    sseFrame(
      { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: chunks } },
      'message_delta',
    ),
    sseFrame({ type: 'message_stop' }, 'message_stop'),
  );
  return frames;
}
