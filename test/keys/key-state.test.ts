import { describe, expect, it } from 'vitest';
import { MAX_SCOPES, newScope, scopeOf, type Scope } from '../../src/keys/key-state.js';

describe('scopeOf', () => {
  it('tracks each model apart up to MAX_SCOPES, then lets further models share the key-wide scope', () => {
    const scopes = new Map<string, Scope>();
    for (let i = 0; i < MAX_SCOPES + 50; i++) scopeOf(scopes, `model-${i}`).sent++;
    expect(scopes.size).toBe(MAX_SCOPES + 1);
    // The first ones kept their own; the overflow all counted on ''.
    expect(scopes.get('model-0')?.sent).toBe(1);
    expect(scopes.get('')?.sent).toBe(50);
    expect(scopeOf(scopes, 'model-0')).not.toBe(scopeOf(scopes, ''));
    expect(newScope().heldUntil).toBe(0);
  });
});
