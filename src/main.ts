#!/usr/bin/env node
// keypool's command line. Each subcommand lives in src/cli/<name>.ts; cli/run.ts picks one.
import type { CliIo } from './cli/command.js';
import { runCli } from './cli/run.js';

const processIo: CliIo = {
  env: process.env,
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
  isTTY: process.stdout.isTTY === true,
};

runCli(process.argv.slice(2), processIo).then(
  (code) => {
    // Exit now: open keep-alive sockets, timers or a reconnecting Redis client must not keep a stopped
    // keypool alive. The empty write's callback runs once what was written before it is out.
    process.stdout.write('', () => process.exit(code));
  },
  (err: unknown) => {
    process.stderr.write(`keypool: ${err instanceof Error ? err.message : String(err)}\n`, () => process.exit(1));
  },
);
