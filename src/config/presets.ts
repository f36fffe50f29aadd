// What a provider preset sets, so a user writes `provider: anthropic` instead of knowing base URLs and
// auth styles by heart. Every field can still be set on the upstream, which wins. These are the only
// defaults outside schema.ts: one table, per provider.
// Sources: OpenAI https://platform.openai.com/docs/api-reference; Anthropic https://docs.anthropic.com/en/api/versioning
// and /en/api/errors; Azure OpenAI https://learn.microsoft.com/azure/ai-services/openai/reference; Gemini
// https://ai.google.dev/api/generate-content; OpenRouter https://openrouter.ai/docs/api-reference/errors.

export const PROVIDERS = ['openai', 'anthropic', 'azure', 'gemini', 'openrouter', 'groq', 'together', 'mistral', 'deepseek', 'xai', 'openai-compatible'] as const;
export type Provider = (typeof PROVIDERS)[number];

/** The wire format of a provider's errors, and of keypool's own errors on its upstreams. */
export const FORMATS = ['openai', 'anthropic', 'gemini'] as const;
export type WireFormat = (typeof FORMATS)[number];

export interface Preset {
  /** Undefined: the user must give one (Azure resources, any OpenAI-compatible host). */
  readonly baseUrl: string | undefined;
  readonly prefix: string;
  /** Where the pool key goes: a header (`authorization` means `Bearer <key>`) or a query parameter. */
  readonly auth: { readonly header: string } | { readonly query: string };
  /** Sent when the client did not send them. */
  readonly headers: Readonly<Record<string, string>>;
  readonly format: WireFormat;
  /** The provider is known to put errors in the first event of a 200 stream: look before committing. */
  readonly commitOnContent: boolean;
}

const openaiLike = (baseUrl: string | undefined, prefix: string, commitOnContent = false): Preset => ({
  baseUrl,
  prefix,
  auth: { header: 'authorization' },
  headers: {},
  format: 'openai',
  commitOnContent,
});

export const PRESETS: Readonly<Record<Provider, Preset>> = {
  openai: openaiLike('https://api.openai.com/v1', '/v1'),
  // The Anthropic SDKs (and Claude Code) put /v1 in their paths: ANTHROPIC_BASE_URL=http://host:8787/anthropic.
  anthropic: {
    baseUrl: 'https://api.anthropic.com',
    prefix: '/anthropic',
    auth: { header: 'x-api-key' },
    headers: { 'anthropic-version': '2023-06-01' },
    format: 'anthropic',
    commitOnContent: true,
  },
  // AzureOpenAI({ endpoint: 'http://host:8787/azure' }) sends /azure/openai/deployments/...: baseUrl is the resource.
  azure: { baseUrl: undefined, prefix: '/azure', auth: { header: 'api-key' }, headers: {}, format: 'openai', commitOnContent: false },
  // The google-genai SDKs put /v1beta in their paths. The key goes in a header, never in the URL keypool logs.
  gemini: {
    baseUrl: 'https://generativelanguage.googleapis.com',
    prefix: '/gemini',
    auth: { header: 'x-goog-api-key' },
    headers: {},
    format: 'gemini',
    commitOnContent: false,
  },
  openrouter: openaiLike('https://openrouter.ai/api/v1', '/openrouter', true),
  groq: openaiLike('https://api.groq.com/openai/v1', '/groq'),
  together: openaiLike('https://api.together.xyz/v1', '/together'),
  mistral: openaiLike('https://api.mistral.ai/v1', '/mistral'),
  deepseek: openaiLike('https://api.deepseek.com/v1', '/deepseek'),
  xai: openaiLike('https://api.x.ai/v1', '/xai'),
  'openai-compatible': openaiLike(undefined, '/v1'),
};
