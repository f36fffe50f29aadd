// Flag parsing shared by the commands: messages a user can act on that name the option and never echo
// a value or a stray argument (it may be a key typed in the wrong place); help wins; ranges are named.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { UsageError, asUsageError, intFlag, parseFlags, wantsHelp } from '../../src/cli/command.js';

const OPTIONS = { port: { type: 'string' }, json: { type: 'boolean' } } as const;

function problem(args: string[]): string {
  try {
    parseFlags(args, OPTIONS);
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return (err as Error).message;
  }
  return '';
}

describe('parseFlags', () => {
  it.each([
    [['--bogus'], 'unknown option --bogus'],
    [['--bogus=value'], 'unknown option --bogus'],
    [['-x'], 'unknown option -x'],
    [['--port'], 'option --port needs a value'],
    [['--json=yes'], 'option --json takes no value'],
    [['stray'], 'unexpected argument: this command takes only options'],
  ])('%j -> %s', (args, message) => {
    expect(problem(args)).toBe(message);
  });

  it('reads what it knows', () => {
    expect(parseFlags(['--port', '1', '--json'], OPTIONS)).toEqual({ port: '1', json: true });
  });

  it('never echoes a value or a stray argument, whatever it is', () => {
    const secret = fc.stringMatching(/^[A-Za-z0-9_-]{12,40}$/);
    const name = fc.stringMatching(/^[a-z][a-z-]{1,12}$/).filter((n) => n !== 'port' && n !== 'json');
    fc.assert(
      fc.property(name, secret, fc.constantFrom('space', 'equals', 'stray', 'after-flag'), (n, s, shape) => {
        // The option's own name may be named in the message; a "value" that is part of it proves nothing.
        fc.pre(!`--${n}`.includes(s) && !s.includes(n));
        const args = shape === 'space' ? [`--${n}`, s] : shape === 'equals' ? [`--${n}=${s}`] : shape === 'stray' ? [s] : ['--json', s];
        const message = problem(args);
        expect(message).not.toBe('');
        expect(message).not.toContain(s);
      }),
    );
  });

  it('asUsageError turns only parseArgs errors into usage errors', () => {
    const parseError = Object.assign(new TypeError("Unknown option '--zzz'"), { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' });
    expect(asUsageError(parseError)).toEqual(new UsageError('unknown option --zzz'));
    const other = new Error('boom');
    expect(asUsageError(other)).toBe(other);
  });
});

describe('wantsHelp and intFlag', () => {
  it('help anywhere before --', () => {
    expect(wantsHelp(['--port', '1', '-h'])).toBe(true);
    expect(wantsHelp(['--', '--help'])).toBe(false);
    expect(wantsHelp([])).toBe(false);
  });

  it('whole numbers in range, else the flag and the range, not the text', () => {
    expect(intFlag('--n', undefined, 1, 5)).toBeUndefined();
    expect(intFlag('--n', ' 3 ', 1, 5)).toBe(3);
    for (const bad of ['0', '6', '1.5', '-1', '0x2', '', 'sk-abc']) expect(() => intFlag('--n', bad, 1, 5)).toThrow(/^--n: expected a whole number from 1 to 5$/);
  });
});
