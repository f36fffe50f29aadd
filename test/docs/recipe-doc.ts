// Reads docs/RECIPES.md into what recipes.test.ts checks: its fenced blocks with the marker comments
// that precede them (a keypool config, a compose file, client checks), and the presets table. The
// marker syntax is described at the top of RECIPES.md; a marker that precedes no block, a yaml block
// without one, or a client check that does not parse is an error naming its line.
import { z } from 'zod';
import { PROVIDERS as FAKE_PROVIDERS } from '../../src/fake-upstream/server.js';

export const SDKS = ['openai', 'azure', 'anthropic', 'ai-sdk-openai', 'ai-sdk-anthropic'] as const;
export const AUTHS = ['bearer', 'x-api-key', 'api-key', 'x-goog-api-key', 'none'] as const;

const clientCheckSchema = z.strictObject({
  config: z.string(),
  upstream: z.string(),
  setting: z.string().optional(),
  /** "METHOD /suffix" appended to the base URL; required unless `sdk` drives the request. */
  send: z.string().regex(/^(GET|POST) ?(\/\S*)?$/).optional(),
  auth: z.enum(AUTHS).optional(),
  expect: z.string().startsWith('/'),
  client: z.string().optional(),
  sdk: z.enum(SDKS).optional(),
  fake: z.enum(FAKE_PROVIDERS).optional(),
  ws: z.boolean().optional(),
});
export type ClientCheck = z.infer<typeof clientCheckSchema> & { readonly line: number };

export type Marker =
  | { readonly kind: 'config'; readonly name: string }
  | { readonly kind: 'compose'; readonly config: string }
  | { readonly kind: 'client'; readonly check: ClientCheck };

export interface Block {
  readonly lang: string;
  readonly text: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
  readonly markers: readonly Marker[];
}

export interface RecipeDoc {
  readonly blocks: readonly Block[];
  /** Cells of the presets table's body rows, backticks kept. */
  readonly presetRows: readonly (readonly string[])[];
}

const MARKER = /^<!-- (config|compose|client|presets-table)(?::\s*(.*?))?\s*-->$/;
const FENCE = /^```(\S*)\s*$/;

export function readRecipeDoc(markdown: string): RecipeDoc {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  const presetRows: string[][] = [];
  let pending: { marker: Marker; line: number }[] = [];
  let i = 0;
  const fail = (line: number, what: string): never => {
    throw new Error(`docs/RECIPES.md:${line}: ${what}`);
  };
  while (i < lines.length) {
    const line = lines[i]!;
    const at = i + 1;
    const fence = FENCE.exec(line);
    const marker = MARKER.exec(line);
    if (fence !== null) {
      const body: string[] = [];
      for (i++; i < lines.length && !lines[i]!.startsWith('```'); i++) body.push(lines[i]!);
      if (i === lines.length) fail(at, 'a fence that never closes');
      const lang = fence[1] ?? '';
      const markers = pending.map((p) => p.marker);
      if (lang === 'yaml' && !markers.some((m) => m.kind === 'config' || m.kind === 'compose')) {
        fail(at, 'a yaml block without a "config: NAME" or "compose: CONFIG" marker');
      }
      blocks.push({ lang, text: body.join('\n'), line: at, markers });
      pending = [];
    } else if (marker !== null) {
      const [, kind, arg = ''] = marker;
      if (kind === 'presets-table') {
        for (i++; i < lines.length && lines[i]!.startsWith('|'); i++) presetRows.push(cells(lines[i]!));
        presetRows.splice(0, 2); // the header and its separator
        continue;
      }
      pending.push({ marker: parseMarker(kind!, arg, at, fail), line: at });
    } else if (line.startsWith('<!--') && !line.includes('-->')) {
      // A prose comment (the editing note): nothing inside it is a marker.
      while (i < lines.length && !lines[i]!.includes('-->')) i++;
    } else if (line.trim() !== '' && pending.length > 0) {
      fail(pending[0]!.line, 'a marker that is not followed directly by a fenced block');
    }
    i++;
  }
  if (pending.length > 0) fail(pending[0]!.line, 'a marker after the last block');
  return { blocks, presetRows };
}

function parseMarker(kind: string, arg: string, line: number, fail: (line: number, what: string) => never): Marker {
  if (kind === 'config') return { kind, name: arg };
  if (kind === 'compose') return { kind, config: arg };
  let json: unknown;
  try {
    json = JSON.parse(arg);
  } catch {
    return fail(line, 'a client marker whose JSON does not parse');
  }
  const parsed = clientCheckSchema.safeParse(json);
  if (!parsed.success) return fail(line, `a client marker: ${parsed.error.issues.map((e) => `${e.path.join('.')} ${e.message}`).join('; ')}`);
  if (parsed.data.sdk === undefined && (parsed.data.send === undefined || parsed.data.auth === undefined)) {
    return fail(line, 'a client marker without `sdk` needs `send` and `auth`');
  }
  return { kind: 'client', check: { ...parsed.data, line } };
}

function cells(row: string): string[] {
  return row
    .replace(/^\|/, '')
    .replace(/\|\s*$/, '')
    .split('|')
    .map((c) => c.trim());
}

/** The configs by name: each name once. */
export function configsOf(doc: RecipeDoc): Map<string, Block> {
  const out = new Map<string, Block>();
  for (const b of doc.blocks) {
    for (const m of b.markers) {
      if (m.kind !== 'config') continue;
      if (out.has(m.name)) throw new Error(`docs/RECIPES.md:${b.line}: config ${m.name} is defined twice`);
      out.set(m.name, b);
    }
  }
  return out;
}

/** Dummy values for every variable a config reads: `${VAR}` references (tokens, keys) and `keysFromEnv`. */
export function dummyEnv(configText: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const m of configText.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)/g)) env[m[1]!] = `dummy-${m[1]!.toLowerCase()}-0123456789abcdef`;
  for (const m of configText.matchAll(/keysFromEnv:\s*([A-Za-z_][A-Za-z0-9_]*)/g)) {
    env[m[1]!] = [1, 2].map((n) => `pool-${m[1]!.toLowerCase()}-${n}-0123456789`).join(',');
  }
  return env;
}

const KEYPOOL_URL = /https?:\/\/(?:localhost|127\.0\.0\.1|keypool):8787[^\s"'`,)]*/;
/** Where a recipe says keypool is: on this machine, or the compose service. */
export const KEYPOOL_ORIGINS: ReadonlySet<string> = new Set(['http://localhost:8787', 'http://127.0.0.1:8787', 'http://keypool:8787']);

/**
 * The URL a block gives `setting` (`NAME=url`, `NAME: url`, `name = "url"`, `--flag url`, `"NAME": "url"`),
 * or the first keypool URL in it.
 */
export function baseUrlIn(text: string, setting: string | undefined): string | undefined {
  if (setting === undefined) return KEYPOOL_URL.exec(text)?.[0];
  const name = setting.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
  const re = new RegExp(`(?<![A-Za-z0-9_-])${name}["']?\\s*(?:[:=]|\\s)\\s*["']?(https?://[^\\s"'\`,)]+)`);
  return re.exec(text)?.[1];
}

/** A string literal a block gives `name` (`name: 'v'`, `name="v"`). */
export function stringIn(text: string, name: string): string | undefined {
  return new RegExp(`(?<![A-Za-z0-9_])${name}\\s*[:=]\\s*["']([^"']+)["']`).exec(text)?.[1];
}
