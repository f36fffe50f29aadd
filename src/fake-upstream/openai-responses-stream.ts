// The Responses API stream (`POST /v1/responses` with `stream: true`): named events, each carrying its
// `type` and a `sequence_number`, from `response.created` to `response.completed`, no `[DONE]`.
// Event shapes follow https://platform.openai.com/docs/api-reference/responses-streaming and are what
// openai-node's ResponseStream and @ai-sdk/openai accumulate.
import { responseMessage, responseObject } from './openai-bodies.js';
import { sseFrame } from './personality.js';
import { piece, streamedText } from './stream-defaults.js';

const ITEM_ID = 'msg_fake';

// Few distinct chunk counts occur in practice; the cap keeps odd scripts from growing it without end.
const CACHE_LIMIT = 64;
const cache = new Map<number, readonly Buffer[]>();

/** Every event of a streamed response whose text comes in `chunks` deltas. */
export function responseStreamFrames(chunks: number): readonly Buffer[] {
  const cached = cache.get(chunks);
  if (cached !== undefined) return cached;
  const text = streamedText(chunks);
  let sequence = 0;
  const frame = (type: string, fields: Record<string, unknown>): Buffer =>
    sseFrame({ type, sequence_number: sequence++, ...fields }, type);
  const at = { item_id: ITEM_ID, output_index: 0, content_index: 0 };
  const frames: Buffer[] = [
    frame('response.created', { response: responseObject('', false, 0) }),
    frame('response.in_progress', { response: responseObject('', false, 0) }),
    frame('response.output_item.added', { output_index: 0, item: responseMessage('', false) }),
    frame('response.content_part.added', { ...at, part: { type: 'output_text', text: '', annotations: [] } }),
  ];
  for (let index = 0; index < chunks; index++) {
    frames.push(frame('response.output_text.delta', { ...at, delta: piece(index), logprobs: [] }));
  }
  frames.push(
    frame('response.output_text.done', { ...at, text, logprobs: [] }),
    frame('response.content_part.done', { ...at, part: { type: 'output_text', text, annotations: [] } }),
    frame('response.output_item.done', { output_index: 0, item: responseMessage(text, true) }),
    frame('response.completed', { response: responseObject(text, true, chunks) }),
  );
  if (cache.size < CACHE_LIMIT) cache.set(chunks, frames);
  return frames;
}

/**
 * The Responses stream's `error` event (https://platform.openai.com/docs/api-reference/responses-streaming/error).
 * The reference shows code and message at the top level; clients also meet them nested under `error`
 * (@ai-sdk/openai models both forms). The fake sends the nested one: openai-node throws it as an
 * APIError, where the flat one only breaks its accumulator.
 */
export function responseErrorFrame(sequence: number): Buffer {
  return sseFrame(
    {
      type: 'error',
      sequence_number: sequence,
      error: {
        type: 'server_error',
        code: 'server_error',
        message: 'The server had an error while processing your request. Sorry about that!',
        param: null,
      },
    },
    'error',
  );
}
