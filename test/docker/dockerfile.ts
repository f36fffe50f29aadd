// A Dockerfile reader for the image replay: stages and the instructions the replay acts on, parsed as
// the Dockerfile reference says (https://docs.docker.com/reference/dockerfile/): line continuations,
// comments, exec (JSON) and shell forms, `ENV k=v ...` with quotes, COPY flags.

export type Form = { readonly exec: true; readonly argv: readonly string[] } | { readonly exec: false; readonly shell: string };

export type Instruction =
  | { readonly kind: 'WORKDIR'; readonly path: string }
  | { readonly kind: 'COPY'; readonly from: string | undefined; readonly chown: string | undefined; readonly sources: readonly string[]; readonly dest: string }
  | { readonly kind: 'RUN'; readonly form: Form }
  | { readonly kind: 'ENV'; readonly vars: readonly (readonly [string, string])[] }
  | { readonly kind: 'USER'; readonly user: string }
  | { readonly kind: 'ENTRYPOINT' | 'CMD'; readonly form: Form }
  | { readonly kind: 'HEALTHCHECK'; readonly options: Readonly<Record<string, string>>; readonly form: Form | undefined }
  | { readonly kind: 'EXPOSE' | 'VOLUME' | 'ARG' | 'LABEL' | 'STOPSIGNAL' | 'SHELL' | 'ONBUILD'; readonly args: string };

export interface Stage {
  readonly base: string;
  readonly name: string | undefined;
  readonly instructions: readonly Instruction[];
}

/** Instruction lines: continuations joined, comments and blank lines dropped. */
export function logicalLines(text: string): string[] {
  const out: string[] = [];
  let current = '';
  for (const raw of text.split(/\r?\n/)) {
    const trimmed = raw.trim();
    // A comment line inside a continued instruction is dropped too (the reference says so).
    if (trimmed.startsWith('#')) continue;
    if (trimmed === '' && current === '') continue;
    if (trimmed.endsWith('\\')) {
      current += `${trimmed.slice(0, -1)} `;
      continue;
    }
    current += trimmed;
    if (current.trim() !== '') out.push(current.trim());
    current = '';
  }
  if (current.trim() !== '') out.push(current.trim());
  return out;
}

export function parseDockerfile(text: string): Stage[] {
  const stages: { base: string; name: string | undefined; instructions: Instruction[] }[] = [];
  for (const line of logicalLines(text)) {
    const m = /^(\S+)\s*(.*)$/s.exec(line);
    if (!m) continue;
    const keyword = (m[1] ?? '').toUpperCase();
    const args = (m[2] ?? '').trim();
    if (keyword === 'FROM') {
      const from = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (!from) throw new Error(`FROM: cannot read "${args}"`);
      stages.push({ base: from[1] ?? '', name: from[2], instructions: [] });
      continue;
    }
    const stage = stages.at(-1);
    if (stage === undefined) throw new Error(`${keyword} before any FROM`);
    stage.instructions.push(instruction(keyword, args));
  }
  return stages;
}

function instruction(keyword: string, args: string): Instruction {
  switch (keyword) {
    case 'WORKDIR':
      return { kind: 'WORKDIR', path: args };
    case 'COPY':
    case 'ADD': {
      if (keyword === 'ADD') throw new Error('ADD: the image uses COPY only (ADD fetches URLs and unpacks archives)');
      let from: string | undefined;
      let chown: string | undefined;
      let rest = args;
      for (let f = /^--([a-z]+)(?:=(\S*))?\s+/.exec(rest); f; f = /^--([a-z]+)(?:=(\S*))?\s+/.exec(rest)) {
        if (f[1] === 'from') from = f[2];
        else if (f[1] === 'chown') chown = f[2];
        else if (f[1] !== 'chmod' && f[1] !== 'link') throw new Error(`COPY: unknown flag --${f[1]}`);
        rest = rest.slice(f[0].length);
      }
      const exec = form(rest);
      const paths = exec.exec ? exec.argv : splitWords(rest);
      const dest = paths.at(-1);
      if (dest === undefined || paths.length < 2) throw new Error(`COPY: needs a source and a destination: "${args}"`);
      return { kind: 'COPY', from, chown, sources: paths.slice(0, -1), dest };
    }
    case 'RUN':
      return { kind: 'RUN', form: form(args) };
    case 'ENV':
      return { kind: 'ENV', vars: envPairs(args) };
    case 'USER':
      return { kind: 'USER', user: args };
    case 'ENTRYPOINT':
    case 'CMD':
      return { kind: keyword, form: form(args) };
    case 'HEALTHCHECK': {
      if (/^NONE$/i.test(args)) return { kind: 'HEALTHCHECK', options: {}, form: undefined };
      const options: Record<string, string> = {};
      let rest = args;
      for (let o = /^--([a-z-]+)=(\S+)\s+/.exec(rest); o; o = /^--([a-z-]+)=(\S+)\s+/.exec(rest)) {
        options[o[1] ?? ''] = o[2] ?? '';
        rest = rest.slice(o[0].length);
      }
      const cmd = /^CMD\s+(.*)$/is.exec(rest);
      if (!cmd) throw new Error(`HEALTHCHECK: expected CMD: "${args}"`);
      return { kind: 'HEALTHCHECK', options, form: form(cmd[1] ?? '') };
    }
    case 'EXPOSE':
    case 'VOLUME':
    case 'ARG':
    case 'LABEL':
    case 'STOPSIGNAL':
    case 'SHELL':
    case 'ONBUILD':
      return { kind: keyword, args };
    default:
      throw new Error(`unknown instruction ${keyword}`);
  }
}

/** Exec form when the arguments are a JSON array of strings, else shell form (run by /bin/sh -c). */
export function form(args: string): Form {
  const t = args.trim();
  if (t.startsWith('[')) {
    try {
      const v: unknown = JSON.parse(t);
      if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return { exec: true, argv: v };
    } catch {
      // Not JSON: Docker runs it as a shell command, and so does this reader.
    }
  }
  return { exec: false, shell: t };
}

/** `ENV a=1 b="two words" c=x\ y`, or the old `ENV name value with spaces`. */
export function envPairs(args: string): [string, string][] {
  if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(args)) {
    const m = /^(\S+)\s+(.*)$/s.exec(args);
    if (!m) throw new Error(`ENV: cannot read "${args}"`);
    return [[m[1] ?? '', m[2] ?? '']];
  }
  return splitWords(args).map((w) => {
    const i = w.indexOf('=');
    if (i <= 0) throw new Error(`ENV: expected name=value, got "${w}"`);
    return [w.slice(0, i), w.slice(i + 1)];
  });
}

/** Words split on blanks, with "double", 'single' quotes and backslash escapes removed. */
export function splitWords(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] ?? '';
    if (quote !== undefined) {
      if (c === quote) quote = undefined;
      else if (c === '\\' && quote === '"' && i + 1 < text.length) word += text[++i];
      else word += c;
      continue;
    }
    if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < text.length) {
      word += text[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote !== undefined) throw new Error(`unclosed quote in "${text}"`);
  if (inWord) words.push(word);
  return words;
}
