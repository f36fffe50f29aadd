// Tokens an answer used, read from the `usage` the upstream put in it, without buffering the answer:
// the first bytes (Anthropic's streams report input tokens in their first event) and the last bytes
// (OpenAI's usage ends its JSON, or its last stream chunk; Anthropic's message_delta carries the output
// count; Gemini's usageMetadata, cumulative, ends each chunk) are kept as the body passes, and read once at
// its end. Bounded memory per request.

/** Bytes kept from the start and from the end of an answer. */
const HEAD_BYTES = 4 * 1024;
const TAIL_BYTES = 8 * 1024;

export interface Usage {
  readonly input: number;
  readonly output: number;
}

const INPUT = /"(?:prompt_tokens|input_tokens|promptTokenCount)"\s*:\s*(\d{1,12})/g;
const OUTPUT = /"(?:completion_tokens|output_tokens|candidatesTokenCount)"\s*:\s*(\d{1,12})/g;
/** Gemini's thinking tokens, billed as output and counted apart from the candidates'. */
const THOUGHTS = /"thoughtsTokenCount"\s*:\s*(\d{1,12})/g;

export class UsageTap {
  #head: Buffer[] = [];
  #headSize = 0;
  #tail: Buffer[] = [];
  #tailSize = 0;

  push(chunk: Buffer): void {
    if (this.#headSize < HEAD_BYTES) {
      const part = chunk.subarray(0, HEAD_BYTES - this.#headSize);
      this.#head.push(part);
      this.#headSize += part.length;
    }
    this.#tail.push(chunk);
    this.#tailSize += chunk.length;
    // Drop whole chunks from the front while the rest still covers the tail.
    while (this.#tail.length > 1 && this.#tailSize - this.#tail[0]!.length >= TAIL_BYTES) this.#tailSize -= this.#tail.shift()!.length;
  }

  /** The usage the answer reported, if any: the largest input count seen, the last output count. */
  read(): Usage | undefined {
    // A small answer is all in the tail: read it once, not head and tail over the same bytes.
    if (this.#tailSize === this.#headSize) return usageIn(Buffer.concat(this.#tail).toString('latin1'));
    const tailBuf = Buffer.concat(this.#tail);
    const text = Buffer.concat(this.#head).toString('latin1') + '\n' + tailBuf.subarray(Math.max(0, tailBuf.length - TAIL_BYTES)).toString('latin1');
    return usageIn(text);
  }
}

/** Finds usage counts in text (a JSON answer, or SSE events); undefined when there are none. */
export function usageIn(text: string): Usage | undefined {
  // Every count this reads is named "..._tokens" (OpenAI, Anthropic) or "...TokenCount" (Gemini), and a
  // body names them one way: one search for an OpenAI or Anthropic answer, two for the rest.
  const named = text.includes('_tokens"');
  const gemini = !named && text.includes('TokenCount"');
  if (!named && !gemini) return undefined;
  let input: number | undefined;
  let output: number | undefined;
  for (const m of text.matchAll(INPUT)) input = Math.max(input ?? 0, Number(m[1]));
  for (const m of text.matchAll(OUTPUT)) output = Number(m[1]);
  if (gemini) {
    let thoughts: number | undefined;
    for (const m of text.matchAll(THOUGHTS)) thoughts = Number(m[1]);
    if (thoughts !== undefined) output = (output ?? 0) + thoughts;
  }
  if (input === undefined && output === undefined) return undefined;
  return { input: input ?? 0, output: output ?? 0 };
}
