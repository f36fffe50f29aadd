import { describe, expect, it } from 'vitest';
import { Key } from '../../src/keys/key.js';
import { createScrubber } from '../../src/keys/scrub.js';

describe('createScrubber', () => {
  const scrub = createScrubber([new Key('a', 'plainsecretvalue123'), new Key('b', 'odd:secret=with delims'.replace(' ', '_'))]);
  it('removes whole secrets wherever they stand', () => {
    expect(scrub('bad key "plainsecretvalue123" given')).toBe('bad key "[redacted]" given');
    expect(scrub('x odd:secret=with_delims y')).toBe('x [redacted] y');
  });
  it("masks OpenAI's partial echo of a key", () => {
    expect(scrub('Incorrect API key provided: sk-proj-abc1**********************wxyz.')).toBe(
      'Incorrect API key provided: sk-[redacted]',
    );
  });
  it('leaves ordinary text alone', () => {
    expect(scrub('Rate limit reached for gpt-4o-mini in organization org-1 on requests per min')).toBe(
      'Rate limit reached for gpt-4o-mini in organization org-1 on requests per min',
    );
  });
});
