// A CliIo that captures what a command prints, for running commands in-process.
import type { CliIo } from '../../src/cli/command.js';

export interface CapturedIo extends CliIo {
  readonly stdout: () => string;
  readonly stderr: () => string;
}

export function captureIo(env: Record<string, string | undefined> = {}, isTTY = false): CapturedIo {
  let out = '';
  let err = '';
  return {
    env,
    isTTY,
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    stdout: () => out,
    stderr: () => err,
  };
}
