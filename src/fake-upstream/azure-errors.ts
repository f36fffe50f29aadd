// Azure OpenAI's own errors, `{"error":{"code","message"}}` with a string code (the status, or a name
// such as DeploymentNotFound), which its gateway sends before a request reaches the model; errors
// from the model itself are OpenAI's. Messages follow the real ones
// (https://learn.microsoft.com/azure/ai-foundry/openai/reference, .../how-to/quota) but never echo a key.
import { json } from './personality.js';

function azureError(code: string, message: string): Buffer {
  return json({ error: { code, message } });
}

export const MISSING_KEY_BODY = azureError(
  '401',
  'Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.',
);

export const INVALID_KEY_BODY = azureError(
  '401',
  'Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active ' +
    'subscription and use a correct regional API endpoint for your resource.',
);

/** The operation a path names in Azure's 429 message (ChatCompletions_Create, Embeddings_Create, …). */
export function operationOf(path: string): string {
  if (path.endsWith('/chat/completions')) return 'ChatCompletions_Create';
  if (path.endsWith('/embeddings')) return 'Embeddings_Create';
  if (path.endsWith('/completions')) return 'Completions_Create';
  return 'Responses_Create';
}

/** 429: the deployment's token (or call) rate limit, retry after whole seconds. */
export function rateLimitBody(path: string, apiVersion: string, seconds: string, tokens: boolean): Buffer {
  return azureError(
    '429',
    `Requests to the ${operationOf(path)} Operation under Azure OpenAI API version ${apiVersion} have exceeded ` +
      `${tokens ? 'token' : 'call'} rate limit of your current OpenAI S0 pricing tier. Please retry after ${seconds} seconds. ` +
      'Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.',
  );
}

/** Azure has no prepaid credit; a spent quota is a 403 from the resource, as Azure AI services send it. */
export const QUOTA_BODY = azureError(
  '403',
  'Out of call volume quota for OpenAI API. Quota will be replenished in 1.00:00:00.',
);

export const FIREWALL_BODY = azureError('403', 'Access denied due to Virtual Network/Firewall rules.');

export const KEY_AUTH_DISABLED_BODY = azureError('AuthenticationTypeDisabled', 'Key based authentication is disabled for this resource.');

export const DEPLOYMENT_NOT_FOUND_BODY = azureError(
  'DeploymentNotFound',
  'The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.',
);

export const RESOURCE_NOT_FOUND_BODY = azureError('404', 'Resource not found');

export const UNAVAILABLE_BODY = azureError('ServiceUnavailable', 'The service is temporarily unable to process your request. Please try again later.');
