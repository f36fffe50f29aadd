// Which config file a command reads (--config, else $KEYPOOL_CONFIG, else a command's fallback) and
// loading it with every problem printed by field.
import { loadConfigFile, type Env, type LoadResult } from '../config/load.js';
import { lookup } from '../config/environment.js';
import { ConfigError } from '../errors.js';
import type { CliIo } from './command.js';

/** The config a command reads: the flag, else $KEYPOOL_CONFIG (empty is unset), else `fallback`. */
export function configPath(flag: string | undefined, env: Env, fallback?: string): string | undefined {
  if (flag !== undefined && flag !== '') return flag;
  const fromEnv = lookup(env, 'KEYPOOL_CONFIG');
  if (fromEnv !== undefined && fromEnv.trim() !== '') return fromEnv;
  return fallback;
}

/** The loaded config, or undefined after saying on stderr why not (the caller exits 2). */
export function loadOrExplain(file: string | undefined, io: CliIo): LoadResult | undefined {
  if (file === undefined) {
    io.err('keypool: no config: pass --config FILE or set KEYPOOL_CONFIG\n');
    return undefined;
  }
  try {
    return loadConfigFile(file, io.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.err(`keypool: invalid config ${file}:\n${err.problems.map((p) => `  ${p}`).join('\n')}\n`);
    return undefined;
  }
}
