// One upstream's keys from every source (keys, keysFromEnv, keysFromFile): checked, named (`<upstream>-<n>`
// unless named), a secret listed twice used once. Problems name the field and never hold a secret.
import { readFileSync } from 'node:fs';
import { DEFAULT_KEY_OPTIONS, Key, type KeyOptions } from '../keys/key.js';
import { lookup, type Env } from './environment.js';
import type { UpstreamInput } from './upstream-schema.js';

/** `at`: the upstream's field (`upstreams[2]`). Problems and warnings are pushed onto the lists given. */
export function gatherKeys(u: UpstreamInput, at: string, env: Env, problems: string[], warnings: string[]): Key[] {
  const entries: { name: string | undefined; secret: string; field: string; options: KeyOptions }[] = [];
  const plain = (secret: string, field: string) => ({ name: undefined, secret, field, options: DEFAULT_KEY_OPTIONS });
  u.keys.forEach((k, i) => {
    const field = `${at}.keys[${i}]`;
    if (typeof k === 'string') {
      entries.push(plain(k.trim(), field));
    } else {
      const own = k.baseUrl === undefined ? undefined : new URL(k.baseUrl);
      const options = Object.freeze({
        weight: k.weight,
        group: k.group,
        rpm: k.rpm,
        tpm: k.tpm,
        maxConcurrent: k.maxConcurrent,
        origin: own?.origin,
        basePath: own?.pathname.replace(/\/+$/, ''),
      });
      entries.push({ name: k.name, secret: k.key.trim(), field: `${field}.key`, options });
    }
  });
  if (u.keysFromEnv !== undefined) {
    for (const secret of splitKeys(lookup(env, u.keysFromEnv) ?? '')) entries.push(plain(secret, `${at}.keysFromEnv`));
  }
  if (u.keysFromFile !== undefined) {
    try {
      const lines = readFileSync(u.keysFromFile, 'utf8').split(/\r?\n/);
      for (const line of lines) {
        const secret = line.replace(/#.*$/, '').trim();
        if (secret !== '') entries.push(plain(secret, `${at}.keysFromFile`));
      }
    } catch (err) {
      // The path is not repeated: the field names it, and a key pasted here by mistake must not be echoed.
      problems.push(`${at}.keysFromFile: cannot read the file: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  }

  const keys: Key[] = [];
  const bySecret = new Map<string, Key>();
  const names = new Set<string>();
  let n = 0;
  for (const e of entries) {
    if (e.secret === '') {
      problems.push(`${e.field}: key is empty`);
      continue;
    }
    if (/\s/.test(e.secret)) {
      problems.push(`${e.field}: key contains white space`);
      continue;
    }
    const name = e.name ?? nextFreeName(u.name, names, () => ++n);
    const dup = bySecret.get(e.secret);
    if (dup) {
      warnings.push(`${e.field}: same secret as key ${dup.name}; using it once`);
      continue;
    }
    if (names.has(name)) {
      problems.push(`${e.field}: key name ${name} is used twice`);
      continue;
    }
    const key = new Key(name, e.secret, e.options);
    names.add(name);
    bySecret.set(e.secret, key);
    keys.push(key);
  }
  if (keys.length === 0 && entries.length === 0) {
    const hint = u.keysFromEnv ? ` (is ${u.keysFromEnv} set?)` : '';
    problems.push(`${at}.keys: upstream ${u.name} has no keys${hint}; list them in keys, keysFromEnv or keysFromFile`);
  }
  return keys;
}

function nextFreeName(stem: string, taken: ReadonlySet<string>, next: () => number): string {
  for (;;) {
    const candidate = `${stem}-${next()}`;
    if (!taken.has(candidate)) return candidate;
  }
}

function splitKeys(list: string): string[] {
  return list.split(/[\s,]+/).filter((s) => s !== '');
}
