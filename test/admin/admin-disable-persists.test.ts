// An operator's disable survives a restart (state.file keeps reason `admin` and its open end) and is
// still shown as one afterwards; a file from before the reason existed still loads.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { applyAction } from '../../src/admin/key-routes.js';
import { keyStatus } from '../../src/admin/key-view.js';
import { Key } from '../../src/keys/key.js';
import { KeyPool } from '../../src/keys/pool.js';
import { createLogger } from '../../src/logger.js';
import { StateFile } from '../../src/state/state-file.js';
import { FakeClock } from '../helpers/fake-clock.js';

const SECRETS = ['sk-persist-secret-aaaaaaaaaaaaaaaa1', 'sk-persist-secret-bbbbbbbbbbbbbbbb2'];

function setup(file: string) {
  const clock = new FakeClock(1_000_000);
  const lines: string[] = [];
  const logger = createLogger('info', new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }));
  const pool = new KeyPool('openai', SECRETS.map((s, i) => new Key(`k${i + 1}`, s)));
  const open = () => StateFile.open({ file, pools: new Map([['openai', pool]]), clock, logger, flushDelayMs: 100 });
  return { clock, pool, lines, open };
}

describe('an admin disable across a restart', () => {
  it('is kept, with reason admin and no end', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'kp-admin-state-')), 'state.json');
    const a = setup(file);
    const state = a.open();
    applyAction(a.pool, a.pool.states()[1]!, 'disable');
    await state.close();
    expect(readFileSync(file, 'utf8')).toContain('"admin"');

    const b = setup(file);
    b.clock.advance(400 * 86_400_000);
    b.open();
    const k2 = b.pool.states()[1]!;
    expect(keyStatus(k2, b.clock.now())).toEqual({ state: 'disabled', reason: 'admin', untilMs: undefined });
    expect(b.pool.usable).toBe(1);
    expect(b.lines.join('')).not.toContain('corrupt');
    applyAction(b.pool, k2, 'enable');
    expect(b.pool.usable).toBe(2);
  });
});
