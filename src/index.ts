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
export {
  createErrorWriter,
  type ErrorHandlerOptions,
  type ErrorReport,
  isClientGone,
} from './middlewares/error-handler/index.ts'
export { encodeValidationHeader, headerSafeText, type ValidationItem } from './validation-header.ts'
