// Removes secrets from text that came from an upstream (error messages) before a client or a log sees
// it. OpenAI echoes part of a rejected key ("sk-abc***xyz"), and a misbehaving upstream might echo it whole.
import type { Key } from './key.js';

const KEY_LIKE = /\b(sk|pk|rk|sess|key)-[A-Za-z0-9_*.-]{6,}/g;
// Sentence punctuation ends a token too: "Incorrect API key provided: <key>." must lose the key.
const TOKEN = /[^\s"'`,;:()[\]{}<>=.!?]+/g;
const DELIMITER = /[\s"'`,;:()[\]{}<>=.!?]/;

export type Scrubber = (text: string) => string;

export function createScrubber(keys: readonly Key[]): Scrubber {
  const secrets = new Set<string>();
  // Secrets with a delimiter in them cannot be found token by token; look for those one by one.
  const odd: string[] = [];
  for (const k of keys) {
    const secret = k.reveal();
    if (DELIMITER.test(secret)) odd.push(secret);
    else secrets.add(secret);
  }
  return (text) => {
    let out = text.replace(TOKEN, (token) => (secrets.has(token) ? '[redacted]' : token));
    for (const s of odd) out = out.split(s).join('[redacted]');
    return out.replace(KEY_LIKE, '$1-[redacted]');
  };
}
