// `keypool demo`: its usage; the demo itself is src/demo.ts.
import { asUsageError, type CliIo, type Command } from './command.js';

const USAGE = `Usage: keypool demo [options]

Starts the built-in fake upstream with four fake keys on tiny rate limits (one out of credit), puts
keypool in front of it, sends a burst of chat completions and prints each rotation and a summary.
Needs no keys and no network beyond loopback. Exit 0 when no request failed.

Options:
      --requests N      chat completions to send (default 30, at most 10000)
      --concurrency N   sent at once (default 6, at most 100)
  -h, --help            show this help
`;

export const demoCommand: Command = {
  name: 'demo',
  summary: 'watch rotation against a built-in fake upstream (no keys needed)',
  usage: USAGE,
  async run(args: string[], io: CliIo): Promise<number> {
    const { runDemo } = await import('../demo.js');
    try {
      return await runDemo(args, (line) => io.out(`${line}\n`));
    } catch (err) {
      // runDemo parses its flags with node:util parseArgs, strict.
      throw asUsageError(err);
    }
  },
};
