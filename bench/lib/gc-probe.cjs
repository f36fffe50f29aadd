// Preloaded (node --expose-gc --require) into the keypool process of the memory-growth run only, so
// the bench can tell a leak from V8 heap sizing: on SIGUSR2 it runs a full GC and writes
// process.memoryUsage() as JSON to $KEYPOOL_BENCH_PROBE_FILE. Nothing else in keypool changes.
'use strict';
const { renameSync, writeFileSync } = require('node:fs');

const file = process.env.KEYPOOL_BENCH_PROBE_FILE;
if (file) {
  process.on('SIGUSR2', () => {
    if (typeof globalThis.gc === 'function') {
      globalThis.gc();
      globalThis.gc();
    }
    writeFileSync(`${file}.tmp`, JSON.stringify(process.memoryUsage()));
    renameSync(`${file}.tmp`, file);
  });
}
