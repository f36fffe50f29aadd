// An upstream answer keypool read to decide and then hands the client (a refusal every key gave, a
// context-length 400): its headers are scrubbed of pool secrets like its body (a gateway may echo the
// credential it refused in a header as well as in the text), as a WebSocket handshake's refusal is.
import { afterEach, describe, expect, it } from 'vitest';
import { chainHarness, type ChainHarness } from '../helpers/chain.js';
import { act } from '../helpers/fault-upstream.js';

const open: ChainHarness[] = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});

describe('answers read before they are delivered', () => {
  it('carry no pool secret in a header the upstream echoed it in', async () => {
    const echo = () =>
      act.afterBody((r) =>
        act.json(404, { error: { message: 'The model does not exist', type: 'invalid_request_error', code: 'model_not_found' } }, { 'x-echoed-credential': `Bearer ${r.key ?? ''}`, 'x-plain': 'kept' }),
      );
    const h = await chainHarness([{ name: 'primary', script: echo, keys: 2 }], { retry: { maxRetries: 0 } });
    open.push(h);
    const r = await h.call();
    expect(r.status).toBe(404);
    expect(h.up.primary!.requests.length).toBeGreaterThan(0);
    const sent = JSON.stringify(r.headers) + r.text;
    for (const q of h.up.primary!.requests) expect(sent.includes(q.key!)).toBe(false);
    expect(r.headers['x-plain']).toBe('kept');
    expect(r.headers['x-echoed-credential']).toBeDefined();
  });
});
