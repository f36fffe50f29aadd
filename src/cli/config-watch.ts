// Reloading the config of a running keypool: on SIGHUP, and when the config file (or a key or token file
// it names) changes. The new document is validated in full first; a bad one changes nothing and the
// log says why. Files are watched through their directories, so an editor's save-by-rename and a
// Kubernetes ConfigMap's symlink swap are seen too; bursts of events make one reload.
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { loadConfigFile } from '../config/load.js';
import { ConfigError } from '../errors.js';

/** Events within this long of each other make one reload (an editor writes a file in several steps). */
export const RELOAD_DEBOUNCE_MS = 300;

export interface ConfigWatch {
  /** Re-reads and applies the config now; resolves whether it was applied. */
  reload(why: string): boolean;
  close(): void;
}

export function watchConfig(app: FastifyInstance, file: string, extraFiles: readonly string[], logger: Logger): ConfigWatch {
  let watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  const reload = (why: string): boolean => {
    let loaded;
    try {
      loaded = loadConfigFile(file);
    } catch (err) {
      const problems = err instanceof ConfigError ? err.problems : [err instanceof Error ? err.message : String(err)];
      logger.error({ why, problems }, 'config reload refused; keeping the config in force');
      return false;
    }
    for (const w of loaded.warnings) logger.warn(w);
    const report = app.reload(loaded.config);
    logger.info({ why, ...report }, report.needsRestart.length > 0 ? 'config reloaded; some changes need a restart' : 'config reloaded');
    watchFiles(loaded.files);
    return true;
  };
  const schedule = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => reload('config file changed'), RELOAD_DEBOUNCE_MS);
    timer.unref();
  };
  const watchFiles = (files: readonly string[]): void => {
    for (const w of watchers) w.close();
    watchers = [];
    const byDir = new Map<string, Set<string>>();
    for (const f of [file, ...files]) {
      const abs = resolve(f);
      const names = byDir.get(dirname(abs)) ?? new Set<string>();
      names.add(basename(abs));
      byDir.set(dirname(abs), names);
    }
    for (const [dir, names] of byDir) {
      try {
        const w = watch(dir, { persistent: false }, (_event, name) => {
          // ConfigMaps swap a "..data" symlink; editors rename temporary files over the original.
          if (name === null || names.has(String(name)) || String(name) === '..data') schedule();
        });
        w.on('error', () => undefined);
        watchers.push(w);
      } catch (err) {
        logger.warn({ dir, err: (err as Error).message }, 'cannot watch for config changes here; SIGHUP still reloads');
      }
    }
  };
  watchFiles(extraFiles);
  return {
    reload,
    close() {
      clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}
