// What a subcommand is to main.ts (a name, a summary, its own usage, a run function over its arguments
// and the process's streams), the exit codes they share, and flag parsing with messages a user can act on.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Env } from '../config/environment.js';

/** The process as a command sees it; tests pass their own. */
export interface CliIo {
  readonly env: Env;
  /** Writes to stdout (the result). */
  readonly out: (text: string) => void;
  /** Writes to stderr (problems, progress). */
  readonly err: (text: string) => void;
  /** stdout is a terminal: colour and alignment for humans are allowed. */
  readonly isTTY: boolean;
}

export interface Command {
  readonly name: string;
  /** One line for `keypool --help`. */
  readonly summary: string;
  /** What `keypool <name> --help` prints. */
  readonly usage: string;
  /** Resolves with the exit code; throws UsageError for bad arguments. */
  run(args: string[], io: CliIo): Promise<number>;
}

export const EXIT_OK = 0;
/** The command ran and found something wrong (a key not ok, a server not healthy, unreachable). */
export const EXIT_FAIL = 1;
/** Bad usage or a bad config. */
export const EXIT_USAGE = 2;

/** Bad arguments: main prints the message and a pointer to the command's --help, and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

type OptionsConfig = NonNullable<ParseArgsConfig['options']>;

/** `--help` or `-h` anywhere before a `--`: help wins over any other problem with the arguments. */
export function wantsHelp(args: readonly string[]): boolean {
  for (const a of args) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
}

/**
 * node:util parseArgs, strict, no positionals, with its errors turned into UsageErrors. A message names
 * the option but never echoes a value or a stray argument: it may be a key typed in the wrong place.
 */
export function parseFlags<const O extends OptionsConfig>(args: string[], options: O) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new UsageError(flagProblem(err));
  }
}

/**
 * A parseArgs error thrown by a module that parses its own flags (the demo, the fake upstream) as a
 * UsageError; anything else is returned as it is.
 */
export function asUsageError(err: unknown): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_') ? new UsageError(flagProblem(err)) : err;
}

function flagProblem(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  const message = err instanceof Error ? err.message : String(err);
  const option = /'(-{1,2}[A-Za-z0-9-]+)/.exec(message)?.[1] ?? 'an option';
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${option}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return /does not take an argument/.test(message) ? `option ${option} takes no value` : `option ${option} needs a value`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return 'unexpected argument: this command takes only options';
    default:
      return 'cannot read the arguments';
  }
}

/** An integer flag within [min, max]; the message names the flag and the range, not the text given. */
export function intFlag(flag: string, raw: string | undefined, min: number, max: number): number | undefined {
  if (raw === undefined) return undefined;
  const n = /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`${flag}: expected a whole number from ${min} to ${max}`);
  return n;
}
