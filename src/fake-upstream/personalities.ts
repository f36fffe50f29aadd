// Which personality plays which provider.
import { anthropicPersonality } from './anthropic-personality.js';
import { azurePersonality } from './azure-personality.js';
import type { Provider } from './behaviors.js';
import { geminiPersonality } from './gemini-personality.js';
import { openAiPersonality } from './openai-personality.js';
import { openRouterPersonality } from './openrouter-personality.js';
import type { Personality } from './personality.js';

const PERSONALITIES: Readonly<Record<Provider, Personality>> = Object.freeze({
  openai: openAiPersonality,
  anthropic: anthropicPersonality,
  gemini: geminiPersonality,
  azure: azurePersonality,
  openrouter: openRouterPersonality,
});

export function personalityFor(provider: Provider): Personality {
  const personality = (PERSONALITIES as Partial<Record<string, Personality>>)[provider];
  // Options come from JavaScript callers and the CLI too, where the type is only a hope.
  if (personality === undefined) throw new TypeError(`fake-upstream: unknown provider ${JSON.stringify(provider)}`);
  return personality;
}
