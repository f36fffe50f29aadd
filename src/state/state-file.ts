// Embedded persistence: cooldowns, disabled keys, streaks and usage counters survive a restart in one
// JSON file. Written atomically (temp file + rename), debounced, flushed on shutdown. A corrupt or
// unreadable file is kept aside and keypool starts clean: it never crashes and never loses the running
// pool over its state file. Keys appear by name and fingerprint only, never by secret.
import { copyFileSync, readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Clock } from '../clock.js';
import type { KeyPool } from '../keys/pool.js';
import type { PoolSnapshot } from '../keys/pool-snapshot.js';

export const STATE_FILE_VERSION = 1;

const scopeSchema = z.object({
  cooldownUntil: z.number(),
  streak: z.number().int().min(0),
  reason: z.enum(['rate_limited', 'out_of_credit', 'model_unavailable']).optional(),
});
const statsSchema = z.object({
  attempts: z.number().int().min(0),
  successes: z.number().int().min(0),
  rateLimited: z.number().int().min(0),
  outOfCredit: z.number().int().min(0),
  serverErrors: z.number().int().min(0),
});
const poolSchema = z.object({
  keys: z.record(
    z.string(),
    z.object({
      name: z.string(),
      disabled: z.enum(['unauthorized', 'forbidden', 'admin']).optional(),
      disabledUntil: z.number().optional(),
      creditUntil: z.number().optional(),
      scopes: z.record(z.string(), scopeSchema).optional(),
      stats: statsSchema,
    }),
  ),
  groups: z.record(z.string(), z.record(z.string(), scopeSchema)).optional(),
});
const fileSchema = z.object({
  version: z.literal(STATE_FILE_VERSION),
  savedAt: z.number(),
  upstreams: z.record(z.string(), poolSchema),
});

export interface StateFileDeps {
  readonly file: string;
  readonly pools: ReadonlyMap<string, KeyPool>;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Writes wait this long after a change, so a busy pool writes at most once per period. */
  readonly flushDelayMs: number;
}

export class StateFile {
  readonly #deps: StateFileDeps;
  #cancelTimer: (() => void) | undefined;
  #writing: Promise<void> = Promise.resolve();
  #lastWritten = '';
  #closed = false;
  readonly #unwatch: (() => void)[] = [];

  private constructor(deps: StateFileDeps) {
    this.#deps = deps;
  }

  /** Loads the file into the pools (if it is there and sound) and starts saving changes. */
  static open(deps: StateFileDeps): StateFile {
    const state = new StateFile(deps);
    state.#load();
    for (const pool of deps.pools.values()) state.#unwatch.push(pool.watch(() => state.#schedule()));
    return state;
  }

  #load(): void {
    const { file, logger, pools, clock } = this.#deps;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') logger.warn({ file, code }, 'state file unreadable; starting with a clean pool');
      return;
    }
    let parsed: z.infer<typeof fileSchema>;
    try {
      parsed = fileSchema.parse(JSON.parse(text));
    } catch (err) {
      const copy = `${file}.corrupt-${clock.now()}`;
      try {
        copyFileSync(file, copy);
      } catch {
        // Keeping a copy is a courtesy; starting clean is what matters.
      }
      logger.warn({ file, copy, problem: describe(err) }, 'state file is corrupt; kept a copy and starting with a clean pool');
      return;
    }
    const now = clock.now();
    for (const [name, snap] of Object.entries(parsed.upstreams)) pools.get(name)?.restore(snap as PoolSnapshot, now);
    this.#lastWritten = JSON.stringify(parsed.upstreams);
    logger.info({ file, savedAt: parsed.savedAt }, 'pool state restored');
  }

  #schedule(): void {
    if (this.#cancelTimer !== undefined || this.#closed) return;
    this.#cancelTimer = this.#deps.clock.timer(this.#deps.flushDelayMs, () => {
      this.#cancelTimer = undefined;
      void this.flush();
    });
  }

  /** Writes the current state now (after any write in progress). */
  flush(): Promise<void> {
    this.#writing = this.#writing.then(() => this.#write());
    return this.#writing;
  }

  /** Stops watching, cancels the pending write and writes once more. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const u of this.#unwatch) u();
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    await this.flush();
  }

  async #write(): Promise<void> {
    const { file, pools, clock, logger } = this.#deps;
    const now = clock.now();
    const upstreams: Record<string, PoolSnapshot> = {};
    for (const [name, pool] of pools) upstreams[name] = pool.snapshot(now);
    // Unchanged state is not written again (savedAt alone does not count as a change).
    const state = JSON.stringify(upstreams);
    if (state === this.#lastWritten) return;
    const body = JSON.stringify({ version: STATE_FILE_VERSION, savedAt: now, upstreams }, null, 1);
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      await writeFile(tmp, body, { mode: 0o600 });
      await rename(tmp, file);
      this.#lastWritten = state;
    } catch (err) {
      logger.warn({ file, code: (err as NodeJS.ErrnoException).code }, 'could not save pool state; will try again on the next change');
    }
  }
}

function describe(err: unknown): string {
  if (err instanceof z.ZodError) return err.issues.map((i) => `${i.path.join('.')}: ${i.message}`).slice(0, 3).join('; ');
  return err instanceof Error ? err.message : String(err);
}
