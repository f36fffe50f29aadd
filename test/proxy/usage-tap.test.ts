// Usage read from answers as they pass: JSON bodies, OpenAI streams with include_usage, Anthropic
// streams (input in the first event, output in the last), Gemini's usageMetadata, and bodies far longer
// than what is kept.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { UsageTap, usageIn } from '../../src/proxy/usage-tap.js';

const tapOf = (...chunks: string[]) => {
  const t = new UsageTap();
  for (const c of chunks) t.push(Buffer.from(c));
  return t.read();
};

describe('usage', () => {
  it('reads OpenAI chat and Responses bodies', () => {
    expect(tapOf('{"id":"x","usage":{"prompt_tokens":9,"completion_tokens":6,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":3}}}')).toEqual({ input: 9, output: 6 });
    expect(tapOf('{"usage":{"input_tokens":12,"input_tokens_details":{"cached_tokens":0},"output_tokens":4}}')).toEqual({ input: 12, output: 4 });
  });
  it('reads the last chunk of a long OpenAI stream, split anywhere', () => {
    const filler = Array.from({ length: 500 }, (_, i) => `data: {"choices":[{"delta":{"content":"token ${i}"}}]}\n\n`).join('');
    const last = 'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":500,"total_tokens":509}}\n\ndata: [DONE]\n\n';
    const all = filler + last;
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: all.length - 1 }), { maxLength: 20 }), (cuts) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const chunks: string[] = [];
        let at = 0;
        for (const p of points) {
          chunks.push(all.slice(at, p));
          at = p;
        }
        chunks.push(all.slice(at));
        expect(tapOf(...chunks)).toEqual({ input: 9, output: 500 });
      }),
      { numRuns: 50 },
    );
  });
  it('reads an Anthropic stream: input from message_start, output from the last message_delta', () => {
    const start = 'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":25,"cache_creation_input_tokens":100,"output_tokens":1}}}\n\n';
    const deltas = Array.from({ length: 400 }, () => 'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":"hello world"}}\n\n').join('');
    const end = 'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":15}}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n';
    expect(tapOf(start, deltas, end)).toEqual({ input: 25, output: 15 });
  });
  it('reads Gemini: usageMetadata of a body, the last of a stream (cumulative), thinking tokens as output', () => {
    expect(tapOf('{"candidates":[],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":6,"totalTokenCount":15}}')).toEqual({ input: 9, output: 6 });
    const chunks = Array.from({ length: 300 }, (_, i) => `data: {"candidates":[{"content":{"parts":[{"text":"t${i}"}]}}],"usageMetadata":{"promptTokenCount":9,"totalTokenCount":9}}\r\n\r\n`).join('');
    const last = 'data: {"candidates":[{"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":300,"thoughtsTokenCount":40,"totalTokenCount":349}}\r\n\r\n';
    expect(tapOf(chunks, last)).toEqual({ input: 9, output: 340 });
  });
  it('finds nothing where there is nothing, and never throws', () => {
    expect(tapOf('{"ok":true}')).toBeUndefined();
    fc.assert(fc.property(fc.string({ maxLength: 2000 }), (s) => void usageIn(s)));
  });
});
