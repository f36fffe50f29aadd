// Server events of the two OpenAI WebSocket APIs, as the fake plays them: the Responses API in WebSocket
// mode (a `response.create` gets the same events as its SSE stream, ending in `response.completed`) and
// the Realtime API (`session.created` on connect; `response.create` streams text and ends in
// `response.done`). Shapes follow https://platform.openai.com/docs/api-reference/responses-streaming and
// https://platform.openai.com/docs/api-reference/realtime-server-events, trimmed to what clients read.
// Pure: ids come from a counter the caller passes.

/** Tokens the fake reports for every response's input. */
export const FAKE_INPUT_TOKENS = 12;

export type WsApi = 'responses' | 'realtime' | 'echo';

/** Which protocol a path speaks: by its last segment, as OpenAI routes them. */
export function apiOf(path: string): WsApi {
  const p = path.split('?')[0]!.replace(/\/+$/, '');
  if (p.endsWith('/responses')) return 'responses';
  if (p.endsWith('/realtime')) return 'realtime';
  return 'echo';
}

type Event = Record<string, unknown>;

function words(n: number): string[] {
  return Array.from({ length: n }, (_, i) => (i === 0 ? 'Hello' : ` part${i}`));
}

/** The events answering one Responses API `response.create`, in order. */
export function responsesEvents(id: number, model: string, deltas: number): Event[] {
  const rid = `resp_fake_${id}`;
  const mid = `msg_fake_${id}`;
  const parts = words(deltas);
  const text = parts.join('');
  const base = { id: rid, object: 'response', created_at: 1_700_000_000, model };
  const item = { id: mid, type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text, annotations: [] }] };
  const events: Event[] = [
    { type: 'response.created', response: { ...base, status: 'in_progress', output: [], usage: null } },
    { type: 'response.in_progress', response: { ...base, status: 'in_progress', output: [], usage: null } },
    { type: 'response.output_item.added', output_index: 0, item: { ...item, status: 'in_progress', content: [] } },
    { type: 'response.content_part.added', item_id: mid, output_index: 0, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } },
    ...parts.map((delta) => ({ type: 'response.output_text.delta', item_id: mid, output_index: 0, content_index: 0, delta })),
    { type: 'response.output_text.done', item_id: mid, output_index: 0, content_index: 0, text },
    { type: 'response.content_part.done', item_id: mid, output_index: 0, content_index: 0, part: item.content[0] },
    { type: 'response.output_item.done', output_index: 0, item },
    {
      type: 'response.completed',
      response: { ...base, status: 'completed', output: [item], usage: { input_tokens: FAKE_INPUT_TOKENS, output_tokens: deltas, total_tokens: FAKE_INPUT_TOKENS + deltas } },
    },
  ];
  return events.map((e, i) => ({ type: e.type, sequence_number: i, ...e }));
}

/** The Realtime API's first event, sent as soon as the session opens. */
export function realtimeSessionCreated(id: number, model: string): Event {
  return { type: 'session.created', event_id: `event_fake_${id}`, session: realtimeSession(id, model) };
}

export function realtimeSession(id: number, model: string, update: Record<string, unknown> = {}): Event {
  return { type: 'realtime', object: 'realtime.session', id: `sess_fake_${id}`, model, output_modalities: ['text'], ...update };
}

/** The events answering one Realtime `response.create`, in order. */
export function realtimeResponseEvents(id: number, deltas: number): Event[] {
  const rid = `resp_fake_${id}`;
  const iid = `item_fake_${id}`;
  const parts = words(deltas);
  const text = parts.join('');
  const item = { id: iid, object: 'realtime.item', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text }] };
  const events: Event[] = [
    { type: 'response.created', response: { id: rid, object: 'realtime.response', status: 'in_progress', output: [] } },
    { type: 'response.output_item.added', response_id: rid, output_index: 0, item: { ...item, status: 'in_progress', content: [] } },
    { type: 'response.content_part.added', response_id: rid, item_id: iid, output_index: 0, content_index: 0, part: { type: 'output_text', text: '' } },
    ...parts.map((delta) => ({ type: 'response.output_text.delta', response_id: rid, item_id: iid, output_index: 0, content_index: 0, delta })),
    { type: 'response.output_text.done', response_id: rid, item_id: iid, output_index: 0, content_index: 0, text },
    { type: 'response.content_part.done', response_id: rid, item_id: iid, output_index: 0, content_index: 0, part: item.content[0] },
    { type: 'response.output_item.done', response_id: rid, output_index: 0, item },
    {
      type: 'response.done',
      response: { id: rid, object: 'realtime.response', status: 'completed', output: [item], usage: { total_tokens: FAKE_INPUT_TOKENS + deltas, input_tokens: FAKE_INPUT_TOKENS, output_tokens: deltas } },
    },
  ];
  return events.map((e, i) => ({ type: e.type, event_id: `event_fake_${id}_${i}`, ...e }));
}

/** The error event both APIs send for a client event they do not know. */
export function unknownEventError(type: string): Event {
  return { type: 'error', error: { type: 'invalid_request_error', code: 'unknown_event', message: `Unknown event type: ${type.slice(0, 100)}`, param: 'type' } };
}
