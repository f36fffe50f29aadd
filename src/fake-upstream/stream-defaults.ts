// Numbers every personality's streams and scripted waits share.

/** @default chunks of a `stream` behaviour and of an ok request that asks for a stream. */
export const DEFAULT_STREAM_CHUNKS = 5;
/** @default wait told by a scripted rate_limit or resource_exhausted behaviour. */
export const DEFAULT_RATE_LIMIT_MS = 1000;
/** The limit a scripted 429 reports when the server has no rateLimit of its own. */
export const SCRIPTED_REQUEST_LIMIT = 60;

/** Streamed in these pieces, cycling; the default five spell out REPLY_TEXT exactly. */
export const STREAM_PIECES = ['Hello', ' from', ' the', ' fake', ' upstream.'] as const;
export const REPLY_TEXT = STREAM_PIECES.join('');

/** The text of a stream of `chunks` pieces. */
export function streamedText(chunks: number): string {
  let text = '';
  for (let index = 0; index < chunks; index++) text += STREAM_PIECES[index % STREAM_PIECES.length] ?? '';
  return text;
}

/** Piece `index` of a stream. */
export function piece(index: number): string {
  return STREAM_PIECES[index % STREAM_PIECES.length] ?? '';
}
