// The command line's dispatch: finds the subcommand, answers --help and --version, turns bad usage into
// a message and exit 2. main.ts runs it on the process; tests run it on their own streams.
import { checkCommand } from './check.js';
import { EXIT_OK, EXIT_USAGE, UsageError, wantsHelp, type CliIo, type Command } from './command.js';
import { demoCommand } from './demo.js';
import { fakeUpstreamCommand } from './fake-upstream.js';
import { healthCommand } from './health.js';
import { serveCommand } from './serve-command.js';
import { statusCommand } from './status.js';
import { keypoolVersion } from './version.js';

const COMMANDS: readonly Command[] = [serveCommand, checkCommand, statusCommand, healthCommand, demoCommand, fakeUpstreamCommand];

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return `Usage: keypool <command> [options]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

  keypool <command> --help   options of one command
  keypool --version          print the version
`;
}

export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.err(usage());
    return EXIT_USAGE;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    const about = rest[0] === undefined ? undefined : COMMANDS.find((c) => c.name === rest[0]);
    io.out(about?.usage ?? usage());
    return EXIT_OK;
  }
  if (name === '--version' || name === '-v' || name === 'version') {
    io.out(`${keypoolVersion() ?? 'unknown'}\n`);
    return EXIT_OK;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) {
    // The name is echoed only when it looks like one: a key pasted first must not be printed.
    const shown = /^-?-?[a-z][a-z-]{0,31}$/.test(name) ? ` ${name}` : '';
    io.err(`keypool: unknown command${shown}\n\n${usage()}`);
    return EXIT_USAGE;
  }
  if (wantsHelp(rest)) {
    io.out(command.usage);
    return EXIT_OK;
  }
  try {
    return await command.run(rest, io);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.err(`keypool ${command.name}: ${err.message}\nRun 'keypool ${command.name} --help' for its options.\n`);
    return EXIT_USAGE;
  }
}
