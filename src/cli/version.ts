// keypool's version, from its package.json: the nearest one above this module named "keypool" (the
// module sits at src/cli/ in a checkout and dist/src/cli/ when built, so the depth differs).
import { readFileSync } from 'node:fs';

/** src/cli or dist/src/cli is at most this many directories below the package root. */
const MAX_DEPTH = 4;

export function keypoolVersion(from: URL = new URL('.', import.meta.url)): string | undefined {
  let dir = from;
  for (let i = 0; i <= MAX_DEPTH; i++) {
    try {
      const pkg: unknown = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8'));
      if (isRecord(pkg) && pkg['name'] === 'keypool' && typeof pkg['version'] === 'string') return pkg['version'];
    } catch {
      // No package.json here (or not ours): look one level up.
    }
    dir = new URL('..', dir);
  }
  return undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
