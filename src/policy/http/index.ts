// The `http` policy domain: request → facts, rule conditions, decision-cache key.
export { normalizePath, encodePath, type NormalizedPath } from './path.js';
export { httpFacts, httpText, parseQuery, collectHeaders, isHttpFacts, SAFE_METHODS, METHOD_OVERRIDE_HEADERS, type HttpFacts, type HttpInput, type HeaderInput } from './facts.js';
export { compileHttpCondition, compilePathGlobs, HTTP_CONDITIONS } from './match.js';
export { httpAction, httpCacheKey, type HttpAction, type HttpRequestInput } from './cache-key.js';
export { parseJsonPath, jsonPathValues, jsonValueText } from './json-path.js';
