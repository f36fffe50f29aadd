// keyStatus and keyRow, pure: which state a key is shown in, why, and until when.
import { describe, expect, it } from 'vitest';
import { keyRow, keyStatus, UNTIL_ENABLED } from '../../src/admin/key-view.js';
import { Key } from '../../src/keys/key.js';
import { newKeyState, scopeOf } from '../../src/keys/key-state.js';

const state = () => newKeyState(new Key('k1', 'sk-view-key-aaaaaaaaaaaaaaaaaaaa'), 0);
const NOW = 1_000_000;

describe('keyStatus', () => {
  it('disabled beats cooling; a disable past its end is no longer shown; an admin disable has no end', () => {
    const s = state();
    s.creditUntil = NOW + 5_000;
    s.disabled = 'unauthorized';
    s.disabledUntil = NOW + 9_000;
    expect(keyStatus(s, NOW)).toEqual({ state: 'disabled', reason: 'unauthorized', untilMs: NOW + 9_000 });
    expect(keyStatus(s, NOW + 9_000)).toEqual({ state: 'ok', reason: null, untilMs: undefined });
    s.disabled = 'admin';
    s.disabledUntil = UNTIL_ENABLED;
    expect(keyStatus(s, NOW)).toEqual({ state: 'disabled', reason: 'admin', untilMs: undefined });
  });

  it('cooling: out of credit or key-wide, whichever ends later; a model cooldown leaves the key ok', () => {
    const s = state();
    scopeOf(s.scopes, 'gpt-4o').cooldownUntil = NOW + 1_000;
    expect(keyStatus(s, NOW).state).toBe('ok');
    s.creditUntil = NOW + 5_000;
    const wide = scopeOf(s.scopes, '');
    wide.cooldownUntil = NOW + 3_000;
    wide.reason = 'rate_limited';
    expect(keyStatus(s, NOW)).toEqual({ state: 'cooling', reason: 'out_of_credit', untilMs: NOW + 5_000 });
    wide.cooldownUntil = NOW + 8_000;
    expect(keyStatus(s, NOW)).toEqual({ state: 'cooling', reason: 'rate_limited', untilMs: NOW + 8_000 });
    expect(keyStatus(s, NOW + 8_000).state).toBe('ok');
  });
});

describe('keyRow', () => {
  it('lists model cooldowns and headroom by model, with what is left now', () => {
    const s = state();
    const m = scopeOf(s.scopes, 'gpt-4o');
    m.cooldownUntil = NOW + 2_000;
    m.reason = 'model_unavailable';
    m.requests = { limit: 100, remaining: 40, resetAt: NOW + 30_000, period: 60_000, base: 0 };
    m.sent = 5;
    const r = keyRow(s, NOW, { requests: 3, rateLimited: 1 });
    expect(r.models).toEqual([{ model: 'gpt-4o', state: 'unavailable', reason: 'model_unavailable', until: new Date(NOW + 2_000).toISOString(), leftMs: 2_000 }]);
    expect(r.headroom).toEqual([{ model: 'gpt-4o', requests: { limit: 100, remaining: 35, resetAt: new Date(NOW + 30_000).toISOString() }, tokens: null }]);
    expect(r).toMatchObject({ state: 'ok', masked: 'sk-…aaaa', perMinute: { requests: 3, rateLimited: 1 } });
    expect(JSON.stringify(r)).not.toContain('sk-view-key-aaaa');
  });
});
