// The request a probe sends: the upstream's probe spec against its base URL, the key injected as the
// proxy injects it, and a model probe that asks about that model.
import { describe, expect, it } from 'vitest';
import { probeRequest, type ProbeTarget } from '../../src/health/probe-request.js';

const target = (probe: Partial<ProbeTarget['probe']> = {}, authHeader = 'authorization'): ProbeTarget => ({
  origin: 'http://127.0.0.1:9',
  basePath: '/v1',
  authHeader,
  probe: { method: 'GET', path: '/models', ...probe },
});

describe('probeRequest', () => {
  it('defaults to GET <baseUrl>/models with a bearer key and no body', () => {
    const r = probeRequest(target(), 'sk-secret-1');
    expect(r).toMatchObject({ method: 'GET', url: 'http://127.0.0.1:9/v1/models', body: undefined, model: '' });
    expect(r.headers['authorization']).toBe('Bearer sk-secret-1');
    expect(r.headers['content-type']).toBeUndefined();
  });

  it('puts a bare key in any other auth header', () => {
    const r = probeRequest(target({}, 'x-api-key'), 'sk-ant-1');
    expect(r.headers['x-api-key']).toBe('sk-ant-1');
    expect(r.headers['authorization']).toBeUndefined();
  });

  it('names the model of a /models/<id> path or of a JSON body', () => {
    expect(probeRequest(target({ path: '/models/gpt-4o%2Dmini' }), 'k').model).toBe('gpt-4o-mini');
    const post = probeRequest(target({ method: 'POST', path: '/chat/completions', body: '{"model":"gpt-4o-mini","max_tokens":1}' }), 'k');
    expect(post).toMatchObject({ method: 'POST', url: 'http://127.0.0.1:9/v1/chat/completions', model: 'gpt-4o-mini' });
    expect(post.headers['content-type']).toBe('application/json');
  });

  it('probes one model: a JSON body gets it, else GET /models/<model>', () => {
    const post = probeRequest(target({ method: 'POST', path: '/chat/completions', body: '{"model":"a","max_tokens":1}' }), 'k', 'gpt/4 o');
    expect(JSON.parse(post.body ?? '')).toEqual({ model: 'gpt/4 o', max_tokens: 1 });
    expect(post.model).toBe('gpt/4 o');
    const get = probeRequest(target(), 'k', 'gpt/4 o');
    expect(get).toMatchObject({ method: 'GET', url: 'http://127.0.0.1:9/v1/models/gpt%2F4%20o', body: undefined, model: 'gpt/4 o' });
  });
});
