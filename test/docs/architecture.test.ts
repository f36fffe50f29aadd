// docs/ARCHITECTURE.md's module map against src/: every .ts file under src/ has its entry, and every entry
// names a file that exists. An entry is a line of the map's code block whose first word is a file name:
// indented 2 under `src/` for a top-level file, 4 under its `folder/` line for a folder's file (wrapped
// description lines are indented further and are not entries).
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const doc = readFileSync(new URL('../../docs/ARCHITECTURE.md', import.meta.url), 'utf8');
const srcDir = new URL('../../src/', import.meta.url);

/** Every .ts file under src/, as a path relative to src/ ("proxy/rotate.ts"). */
function sourceFiles(): string[] {
  return (readdirSync(srcDir, { recursive: true, encoding: 'utf8' }) as string[])
    .map((p) => p.replaceAll('\\', '/'))
    .filter((p) => p.endsWith('.ts'))
    .sort();
}

/** The map's entries, as paths relative to src/, in the order written (duplicates kept). */
function mapEntries(text: string): string[] {
  const start = text.indexOf('## Modules');
  if (start === -1) throw new Error('docs/ARCHITECTURE.md has no "## Modules" section');
  const block = /```\n([\s\S]*?)```/.exec(text.slice(start))?.[1];
  if (block === undefined) throw new Error('the Modules section has no code block');
  const entries: string[] = [];
  let folder: string | undefined;
  for (const line of block.split('\n')) {
    const m = /^( *)(\S+)/.exec(line);
    if (m === null) continue;
    const indent = m[1]!.length;
    const name = m[2]!;
    if (indent === 2 && name.endsWith('/')) folder = name;
    else if (indent === 2 && name.endsWith('.ts')) {
      folder = undefined;
      entries.push(name);
    } else if (indent === 4 && name.endsWith('.ts')) {
      if (folder === undefined) throw new Error(`map entry ${name} is not under a folder line`);
      entries.push(folder + name);
    }
  }
  return entries;
}

describe('docs/ARCHITECTURE.md module map', () => {
  const entries = mapEntries(doc);
  const files = sourceFiles();

  it('reads entries from the map', () => {
    expect(files.length).toBeGreaterThan(100);
    expect(entries.length).toBeGreaterThan(100);
  });

  it('lists every file under src/', () => {
    const listed = new Set(entries);
    expect(files.filter((f) => !listed.has(f))).toEqual([]);
  });

  it('names no file that does not exist', () => {
    const present = new Set(files);
    expect(entries.filter((e) => !present.has(e))).toEqual([]);
  });

  it('lists each file once', () => {
    expect(entries.filter((e, i) => entries.indexOf(e) !== i)).toEqual([]);
  });

  it('names no missing src/ .ts file anywhere else in the document', () => {
    // Prose outside the map names files by path from a folder ("proxy/rotate.ts") or from src/.
    const named = [...doc.matchAll(/(?<![\w./-])((?:src\/)?(?:admin|cli|clients|config|fake-upstream|health|keys|proxy|state)\/[\w-]+\.ts)\b/g)].map((m) => m[1]!.replace(/^src\//, ''));
    const present = new Set(files);
    expect([...new Set(named)].filter((n) => !present.has(n))).toEqual([]);
  });
});
