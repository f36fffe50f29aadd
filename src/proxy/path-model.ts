// The model some APIs name in the path instead of the body: Gemini's /v1beta/models/{model}:{method}
// (streaming is the method :streamGenerateContent), Azure's /openai/deployments/{deployment}/...
// Rate limits and model refusals are per model, so scheduling must see it.
import type { Provider } from '../config/presets.js';

export interface PathHints {
  readonly model: string | undefined;
  readonly stream: boolean;
}

const NONE: PathHints = Object.freeze({ model: undefined, stream: false });
const GEMINI = /\/models\/([^/:?]{1,256}):([A-Za-z]+)/;
const AZURE = /\/openai\/deployments\/([^/?]{1,256})\//;

export function pathHints(provider: Provider, path: string): PathHints {
  if (provider === 'gemini') {
    const m = GEMINI.exec(path);
    return m ? { model: decodeSafe(m[1]!), stream: m[2] === 'streamGenerateContent' } : NONE;
  }
  if (provider === 'azure') {
    const m = AZURE.exec(path);
    return m ? { model: decodeSafe(m[1]!), stream: false } : NONE;
  }
  return NONE;
}

function decodeSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
