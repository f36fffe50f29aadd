// Gemini API successes: GenerateContentResponse, its stream (SSE with `?alt=sse`, else one JSON array
// sent piece by piece), countTokens and the model list. Shapes follow
// https://ai.google.dev/api/generate-content, https://ai.google.dev/api/tokens and https://ai.google.dev/api/models.
import { json } from './personality.js';
import { piece, streamedText } from './stream-defaults.js';

export const GEMINI_MODEL = 'gemini-2.5-flash';

const MODELS = [
  { id: 'gemini-2.5-pro', displayName: 'Gemini 2.5 Pro' },
  { id: GEMINI_MODEL, displayName: 'Gemini 2.5 Flash' },
  { id: 'gemini-2.5-flash-lite', displayName: 'Gemini 2.5 Flash-Lite' },
];

function modelObject(id: string, displayName: string): Record<string, unknown> {
  return {
    name: `models/${id}`,
    version: '001',
    displayName,
    inputTokenLimit: 1_048_576,
    outputTokenLimit: 65_536,
    supportedGenerationMethods: ['generateContent', 'countTokens'],
  };
}

export const GEMINI_MODELS_BODY = json({ models: MODELS.map((m) => modelObject(m.id, m.displayName)) });

export function geminiModelBody(id: string): Buffer {
  return json(modelObject(id, MODELS.find((m) => m.id === id)?.displayName ?? id));
}

const PROMPT_TOKENS = 9;

function chunk(model: string, text: string, last: boolean, outputTokens: number): Record<string, unknown> {
  const candidate: Record<string, unknown> = { content: { parts: [{ text }], role: 'model' }, index: 0 };
  if (last) candidate['finishReason'] = 'STOP';
  return {
    candidates: [candidate],
    usageMetadata: {
      promptTokenCount: PROMPT_TOKENS,
      ...(last ? { candidatesTokenCount: outputTokens, totalTokenCount: PROMPT_TOKENS + outputTokens } : { totalTokenCount: PROMPT_TOKENS }),
    },
    modelVersion: model,
    responseId: 'resp_fake',
  };
}

export function generateContentBody(model: string): Buffer {
  return json(chunk(model, streamedText(5), true, 6));
}

export function countTokensBody(totalTokens: number): Buffer {
  return json({ totalTokens });
}

/** The chunks of a streamed answer in `chunks` pieces, the last with finishReason and the usage. */
export function geminiChunks(model: string, chunks: number): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (let index = 0; index < chunks; index++) out.push(chunk(model, piece(index), index === chunks - 1, chunks));
  return out;
}

// Google's SSE separates events with CRLF pairs; clients must accept them as well as LF pairs.
export const geminiSseFrame = (value: unknown): Buffer => Buffer.from(`data: ${JSON.stringify(value)}\r\n\r\n`);

/** `:streamGenerateContent` without `alt=sse`: one JSON array, each element written on its own. */
export function jsonArrayFrames(values: readonly unknown[]): Buffer[] {
  if (values.length === 0) return [Buffer.from('[]')];
  return values.map((value, index) =>
    Buffer.from(`${index === 0 ? '[' : ',\r\n'}${JSON.stringify(value)}${index === values.length - 1 ? ']' : ''}`),
  );
}
