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
// The same, with the model's position (for rewriting it).
const GEMINI_AT = new RegExp(GEMINI.source, 'd');
const AZURE_AT = new RegExp(AZURE.source, 'd');

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

/**
 * The path with the model it names replaced (a fallback to another model on Gemini or an Azure
 * deployment); the path as it is when the provider names none in the path.
 */
export function withPathModel(provider: Provider, path: string, model: string): string {
  const found = provider === 'gemini' ? GEMINI_AT.exec(path) : provider === 'azure' ? AZURE_AT.exec(path) : null;
  const at = found?.indices?.[1];
  if (at === undefined) return path;
  return path.slice(0, at[0]) + encodeURIComponent(model) + path.slice(at[1]);
}
