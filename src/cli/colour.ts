// Terminal colour: only on a TTY, never when NO_COLOR is set to anything but '' (https://no-color.org).
import { lookup, type Env } from '../config/environment.js';

export type Paint = (style: Style, text: string) => string;
export type Style = 'red' | 'green' | 'yellow' | 'blue' | 'magenta' | 'cyan' | 'dim' | 'bold';

const CODES: Readonly<Record<Style, readonly [number, number]>> = {
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  blue: [34, 39],
  magenta: [35, 39],
  cyan: [36, 39],
  dim: [2, 22],
  bold: [1, 22],
};

export function useColour(isTTY: boolean, env: Env): boolean {
  const noColour = lookup(env, 'NO_COLOR');
  return isTTY && (noColour === undefined || noColour === '');
}

export function painter(colour: boolean): Paint {
  if (!colour) return (_style, text) => text;
  return (style, text) => `\u001b[${CODES[style][0]}m${text}\u001b[${CODES[style][1]}m`;
}

/** Length as a terminal shows it: ANSI colour sequences take no room. */
export function visibleLength(text: string): number {
  // eslint-disable-next-line no-control-regex
  return [...text.replace(/\u001b\[[0-9;]*m/g, '')].length;
}
