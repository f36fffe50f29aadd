// `keypool fake-upstream`: its usage; the server and its flags are src/fake-upstream/.
import { UsageError, asUsageError, EXIT_OK, type CliIo, type Command } from './command.js';

const USAGE = `Usage: keypool fake-upstream [options]

Runs a fake upstream on its own (to test an agent against rate limits, bad keys, hangs, errors
inside streams), prints "listening <url>" and stops on SIGINT/SIGTERM.

Options:
      --provider P              whose API and errors it plays: openai (default), anthropic, gemini,
                                azure, openrouter
      --host H                  listen address (default 127.0.0.1)
      --port N                  listen port (default: any free port)
      --latency-ms N            added before every successful answer
      --rate-limit R/WINDOW_MS  R requests per key per window, then 429 with rate-limit headers
      --keys-json FILE          JSON object: key -> behaviour, e.g. {"sk-bad": {"kind": "unauthorized"}}
                                (kinds: ok, stream, rate_limit, insufficient_quota, payment_required,
                                unauthorized, forbidden, key_revoked, model_not_found, server_error,
                                overloaded, error_in_stream, resource_exhausted, hang, status)
      --no-record               keep no record of requests (long runs)
  -h, --help                    show this help
`;

export const fakeUpstreamCommand: Command = {
  name: 'fake-upstream',
  summary: 'run the fake OpenAI upstream on its own',
  usage: USAGE,
  async run(args: string[], io: CliIo): Promise<number> {
    const { parseFakeUpstreamArgs, runFakeUpstreamCli } = await import('../fake-upstream/cli.js');
    try {
      // Checked first so that a bad flag is a usage error (exit 2), not a failure of the server.
      await parseFakeUpstreamArgs(args);
    } catch (err) {
      const usage = asUsageError(err);
      // Its own messages name the flag and never a key from --keys-json.
      throw usage instanceof UsageError ? usage : new UsageError(err instanceof Error ? err.message : String(err));
    }
    await runFakeUpstreamCli(args, { print: (line) => io.out(`${line}\n`) });
    return EXIT_OK;
  },
};
