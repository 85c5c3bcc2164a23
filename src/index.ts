export {
  type BuiltInErrorCode,
  defaultCodeForStatus,
  defineErrorCode,
  type ErrorCode,
  type ErrorCodeEntry,
  errorCatalogue,
  lookupErrorCode,
} from './catalogue.ts'
export {
  type ErrorResponse,
  type NormalizedError,
  normalizeError,
  type ProblemDetails,
  type ResponseContext,
  toErrorResponse,
} from './error-response.ts'
export { type IcError, type IcErrorOptions, icError, isIcError } from './errors.ts'
export type { Guard, Published } from './guard.ts'
// Request rules (issue 3): core factories returning Guards, named with `Guard` as the load-protection ones;
// the adapters export middlewares named without it.
export {
  type ApiKeyGrant,
  type ApiKeyInfo,
  type ApiKeyOptions,
  apiKey as apiKeyGuard,
} from './middlewares/api-key/index.ts'
export { isBlockedAddress } from './middlewares/backend-fetch/address.ts'
export {
  type BackendFetch,
  type BackendFetchOptions,
  type BackendResponse,
  createBackendFetch,
  type LookupFunction,
} from './middlewares/backend-fetch/index.ts'
// --- Backend lifecycle: request signal, deadline, client-closed detection, backend fetch, retries ---
export { type ImageFormat, type SniffOptions, sniffImageFormat } from './middlewares/backend-fetch/sniff.ts'
export { createClientClosed } from './middlewares/client-closed/index.ts'
export { createDeadline, type DeadlineOptions } from './middlewares/deadline/index.ts'
export {
  createErrorWriter,
  type ErrorHandlerOptions,
  type ErrorReport,
  isClientGone,
} from './middlewares/error-handler/index.ts'
export {
  DEFAULT_PARAMS_EXEMPT,
  IMAGIZER_PARAMS,
  type ImageParamsOptions,
  type ImageParamValues,
  imageParams as imageParamsGuard,
  type ParamRule,
  type ParamValue,
  type Size,
} from './middlewares/image-params/index.ts'
// Load protection: overload shedding and rate limiting (issue 5).
export {
  createLoadSampler,
  type LoadSample,
  type LoadSampler,
  type LoadSamplerOptions,
  type LoadSheddingOptions,
  type LoadThresholdOptions,
  type LoadThresholds,
  loadSheddingGuard,
  type OverloadReason,
  type OverloadType,
} from './middlewares/load-shedding/index.ts'
export {
  createHostMatcher,
  type HostMatcher,
  type ImageSource,
  type PermissionsOptions,
  permissions as permissionsGuard,
} from './middlewares/permissions/index.ts'
export {
  type ConsumeResult,
  chainGuards,
  type ImageChartsRateLimitsOptions,
  imageChartsRateLimitsGuard,
  ipKey,
  MemoryStore,
  type MemoryStoreOptions,
  type RateLimitGuard,
  type RateLimitKey,
  type RateLimitOptions,
  type RateLimitPolicy,
  type RateLimitReset,
  type RateLimitStore,
  RedisStore,
  type RedisStoreOptions,
  rateLimitGuard,
  type SendCommand,
  StoreDeadlineError,
  StoreTimeoutError,
  type TrustProxy,
} from './middlewares/rate-limit/index.ts'
export {
  type RequestRulesOptions,
  requestRules as requestRulesGuard,
} from './middlewares/request-rules/index.ts'
export {
  createRetryPolicy,
  type FetchWithRetryOptions,
  fetchWithRetry,
  parseRetryAfter,
  type RetryEvent,
  type RetryOptions,
  type RetryPolicy,
  retryDelay,
} from './middlewares/retry/index.ts'
export {
  type FeatureRule,
  imageChartsFeatures,
  type SignatureAccount,
  type SignatureAccountEntry,
  type SignatureOptions,
  type SignedAccount,
  signature as signatureGuard,
  signQuery,
  verifySignature,
} from './middlewares/signature/index.ts'
export {
  UPLOAD_FORMATS,
  type UploadedImage,
  type UploadOptions,
  upload as uploadGuard,
} from './middlewares/upload/index.ts'
export type { Duration } from './options.ts'
export { type ParsedQuery, parseQuery, type QueryValues } from './query.ts'
export { type LifecycleFail, requestSignal } from './request-signal.ts'
export { encodeValidationHeader, headerSafeText, type ValidationItem } from './validation-header.ts'
