// Tokens a WebSocket session used: the sum of the `usage` each response reports in its final event
// (Responses API `response.completed`, Realtime API `response.done`), read from the upstream's text
// messages as they pass. Only a message that names one of those types near its start is looked into,
// and only its last bytes (usage closes the response object). Bounded work per message.
import { usageIn, type Usage } from './usage-tap.js';

/** The event type is the first field OpenAI writes; a type further in is not this message's. */
const TYPE_WITHIN_BYTES = 256;
/** Usage closes the response object: this much of the message's end holds it. */
const TAIL_BYTES = 8 * 1024;
const FINAL_TYPES = [Buffer.from('"response.completed"'), Buffer.from('"response.done"')];

export class SessionUsage {
  #input = 0;
  #output = 0;
  #seen = false;

  /** One upstream message; binary ones (audio, anything not JSON) carry no usage. */
  push(data: Buffer, isBinary: boolean): void {
    if (isBinary || !isFinalEvent(data)) return;
    const usage = usageIn(data.subarray(Math.max(0, data.length - TAIL_BYTES)).toString('latin1'));
    if (usage === undefined) return;
    this.#seen = true;
    this.#input += usage.input;
    this.#output += usage.output;
  }

  read(): Usage | undefined {
    return this.#seen ? { input: this.#input, output: this.#output } : undefined;
  }
}

function isFinalEvent(data: Buffer): boolean {
  const head = data.subarray(0, TYPE_WITHIN_BYTES);
  return FINAL_TYPES.some((t) => head.includes(t));
}
