import { showValue } from './options.ts'

/**
 * What the catalogue records about one error code.
 *
 * @example
 * const entry: ErrorCodeEntry = {
 *   status: 402,
 *   title: 'Payment Required',
 *   description: 'The account has no credit left.',
 *   retryable: false,
 *   hint: 'Top up the account, then send the request again.',
 * }
 */
export interface ErrorCodeEntry {
  /** HTTP status sent with the code (499 is recorded, never written). */
  readonly status: number
  /** Short human title, used as the problem body's `title`. */
  readonly title: string
  /** What happened, in one or two sentences. Shown as the detail of 5xx errors instead of the message. */
  readonly description: string
  /** Whether a client may send the same request again (with backoff). */
  readonly retryable: boolean
  /** What to do about it: a troubleshooting hint for the operator or the client. */
  readonly hint: string
  /** `Retry-After` sent with this code unless the error carries its own value. */
  readonly retryAfterSeconds?: number
  /** Where the code comes from: `image-charts` for Image-Charts' own codes. */
  readonly origin?: 'image-charts'
  /** Package version that introduced the code. */
  readonly since?: string
}

const v = '0.1.0'

/**
 * Every code the package emits: the single source of truth for code → status, title,
 * description, retryability and hint. `docs/error-codes.md` is generated from it.
 *
 * @example
 * import { errorCatalogue } from 'image-api-errors'
 * errorCatalogue.IC_RATE_LIMITED.status // 429
 */
export const errorCatalogue = {
  IS_VALIDATION_ERROR: {
    status: 400,
    title: 'Invalid Parameters',
    description:
      'One or more request parameters are missing, malformed, repeated or out of range. Every failure is listed in `x-ic-error-validation`.',
    retryable: false,
    hint: 'Read the messages in `x-ic-error-validation` (a JSON array of `{message, path}`), fix each parameter and send the request again.',
    origin: 'image-charts',
    since: v,
  },
  IC_MISSING_ENT_PARAMETER: {
    status: 400,
    title: 'Incomplete Signature Parameters',
    description:
      'A signed request needs both `icac` (account id) and `ichm` (signature), and one or both are missing.',
    retryable: false,
    hint: 'Send `icac` and `ichm` together (or neither, where unsigned requests are accepted).',
    origin: 'image-charts',
    since: v,
  },
  IC_BAD_REQUEST: {
    status: 400,
    title: 'Bad Request',
    description: 'The request could not be understood.',
    retryable: false,
    hint: 'Default code for a 400 raised without a code (a body parser, a router). Check the message.',
    since: v,
  },
  IC_IMAGE_MALFORMED: {
    status: 400,
    title: 'Malformed Source Image',
    description:
      'The original image from the backend is not an image this service can read (checked by its bytes).',
    retryable: false,
    hint: 'Check that the path points to an image (JPEG, PNG, GIF, WebP, AVIF, HEIF, TIFF, BMP, JPEG XL) and not to an HTML error page.',
    since: v,
  },
  IC_IMAGE_TOO_LARGE: {
    status: 400,
    title: 'Source Image Too Large',
    description:
      'The original image is larger than the configured maximum size; reading stopped at the limit.',
    retryable: false,
    hint: 'Use a smaller source image, or raise the backend fetch `maxBytes` limit.',
    since: v,
  },
  IC_BACKEND_BAD_REQUEST: {
    status: 400,
    title: 'Backend Rejected Request',
    description:
      'The image backend refused the request with a 4xx status that has no code of its own here (400, 405, 422, …).',
    retryable: false,
    hint: 'Check the path and parameters forwarded to the backend, and the backend logs.',
    since: v,
  },
  IC_UPLOAD_NOT_AN_IMAGE: {
    status: 400,
    title: 'Upload Is Not an Image',
    description: 'The uploaded body is not an image (checked by its bytes, not its Content-Type).',
    retryable: false,
    hint: 'Upload the raw bytes (or a multipart `file` part) of a JPEG, PNG, GIF, WebP, AVIF, HEIF, TIFF, BMP or JPEG XL file.',
    since: v,
  },
  IC_UNAUTHORIZED: {
    status: 401,
    title: 'Unauthorized',
    description: 'The request is not authorized.',
    retryable: false,
    hint: 'Default code for a 401 raised without a code.',
    since: v,
  },
  IC_DYNAMIC_ORIGIN_DISABLED: {
    status: 401,
    title: 'Dynamic Origin Disabled',
    description:
      'The request chose its own backend (`origin`, `source_url`, `hostname` or `bucket`) but dynamic origins are disabled.',
    retryable: false,
    hint: 'Remove the parameter to use the configured backend, or enable `allowDynamicOrigin`.',
    since: v,
  },
  IC_HOST_NOT_ALLOWED: {
    status: 401,
    title: 'Host Not Allowed',
    description: 'The requested source host is not in `hostsAllowed`.',
    retryable: false,
    hint: 'Add the host (or a `*.domain` wildcard) to `hostsAllowed`, or fetch from an allowed host.',
    since: v,
  },
  IC_BUCKET_NOT_ALLOWED: {
    status: 401,
    title: 'Bucket Not Allowed',
    description: 'The requested bucket is not in `bucketsAllowed`.',
    retryable: false,
    hint: 'Add the bucket name to `bucketsAllowed`, or use an allowed bucket.',
    since: v,
  },
  IC_PARAM_NOT_ALLOWED: {
    status: 401,
    title: 'Parameter Not Allowed',
    description: 'The request uses an image parameter outside `imageParamsAllowed`.',
    retryable: false,
    hint: 'Remove the parameter named in `x-ic-error-validation`, or add it to `imageParamsAllowed`.',
    since: v,
  },
  IC_ORIGINAL_IMAGE_NOT_ALLOWED: {
    status: 401,
    title: 'Original Image Not Allowed',
    description: 'The request has no processing parameters and original-image requests are disabled.',
    retryable: false,
    hint: 'Add at least one processing parameter (e.g. `width`), or enable `allowOriginalImageRequest`.',
    since: v,
  },
  IC_DATA_URL_NOT_ALLOWED: {
    status: 401,
    title: 'Data URL Not Allowed',
    description: 'The source is a `data:` URL and data URLs are disabled.',
    retryable: false,
    hint: 'Use an http(s) source, or enable `allowDataUrls`.',
    since: v,
  },
  IC_INVALID_SIGNATURE: {
    status: 401,
    title: 'Invalid Signature',
    description:
      'The `ichm` signature does not match the HMAC-SHA256 of the query string under any of the account secrets.',
    retryable: false,
    hint: 'Sign the query string without `ichm` (including `icac`) with the account secret, lower-case hex.',
    origin: 'image-charts',
    since: v,
  },
  IC_ACCOUNT_ID_NOT_FOUND: {
    status: 401,
    title: 'Account Not Found',
    description: 'The `icac` account id is unknown.',
    retryable: false,
    hint: 'Check the account id; only configured accounts may sign requests.',
    origin: 'image-charts',
    since: v,
  },
  IC_API_KEY_MISSING: {
    status: 401,
    title: 'API Key Missing',
    description: 'The request carries no API key.',
    retryable: false,
    hint: 'Send the key in the configured header or query parameter.',
    since: v,
  },
  IC_API_KEY_INVALID: {
    status: 401,
    title: 'API Key Invalid',
    description: 'The API key is not known.',
    retryable: false,
    hint: 'Check the key for typos, or ask for a new one.',
    since: v,
  },
  IC_UPLOAD_UNAUTHORIZED: {
    status: 401,
    title: 'Upload Token Invalid',
    description: 'An upload needs a valid `Authorization: Bearer` token; it was missing or not accepted.',
    retryable: false,
    hint: 'Send `Authorization: Bearer <token>` with a token the upload configuration accepts.',
    since: v,
  },
  IC_BACKEND_UNAUTHORIZED: {
    status: 401,
    title: 'Backend Unauthorized',
    description: 'The image backend answered 401 Unauthorized.',
    retryable: false,
    hint: 'Check the credentials this service uses for the backend.',
    since: v,
  },
  IC_FORBIDDEN: {
    status: 403,
    title: 'Forbidden',
    description: 'The request is not permitted.',
    retryable: false,
    hint: 'Default code for a 403 raised without a code.',
    since: v,
  },
  IC_API_KEY_FORBIDDEN: {
    status: 403,
    title: 'API Key Not Permitted',
    description: 'The API key is valid but not permitted for this route.',
    retryable: false,
    hint: 'Use a key granted this route, or ask for the permission.',
    since: v,
  },
  IC_FEATURE_NOT_ALLOWED: {
    status: 403,
    title: 'Feature Not Allowed',
    description: "The request uses a feature the account's plan does not include.",
    retryable: false,
    hint: 'Remove the parameter named in `x-ic-error-validation`, or upgrade the plan.',
    since: v,
  },
  IC_RETINA_ERROR: {
    status: 403,
    title: 'Retina Not Allowed',
    description: 'Retina output (`icretina`) is not included in the account plan.',
    retryable: false,
    hint: 'Remove `icretina`, or use an account whose plan includes it.',
    origin: 'image-charts',
    since: v,
  },
  IC_LOCALE_ERROR: {
    status: 403,
    title: 'Localisation Not Allowed',
    description: 'Localisation (`iclocale`) is not included in the account plan.',
    retryable: false,
    hint: 'Remove `iclocale`, or use an account whose plan includes it.',
    origin: 'image-charts',
    since: v,
  },
  IC_UNAUTHORIZED_FONT_STYLE_ERROR: {
    status: 403,
    title: 'Font Style Not Allowed',
    description: 'Custom font styles (`icfs`) are not included in the account plan.',
    retryable: false,
    hint: 'Remove `icfs`, or use an account whose plan includes it.',
    origin: 'image-charts',
    since: v,
  },
  IC_UNAUTHORIZED_FONT_FAMILY_ERROR: {
    status: 403,
    title: 'Font Family Not Allowed',
    description: 'Custom font families (`icff`) are not included in the account plan.',
    retryable: false,
    hint: 'Remove `icff`, or use an account whose plan includes it.',
    origin: 'image-charts',
    since: v,
  },
  IC_UNAUTHORIZED_STYLE_TITLE_ERROR: {
    status: 403,
    title: 'Title Style Not Allowed',
    description: 'Styled chart titles (`chts`) are not included in the account plan.',
    retryable: false,
    hint: 'Remove `chts`, or use an account whose plan includes it.',
    origin: 'image-charts',
    since: v,
  },
  IC_UNAUTHORIZED_MULTI_AXIS_ERROR: {
    status: 403,
    title: 'Multiple Axes Not Allowed',
    description: 'Axes beyond a simple `chxt=x,y` are not included in the account plan.',
    retryable: false,
    hint: 'Use `chxt=x,y` at most, or an account whose plan includes multiple axes.',
    origin: 'image-charts',
    since: v,
  },
  IC_UNAUTHORIZED_COMPOUND_CHART_ERROR: {
    status: 403,
    title: 'Compound Chart Not Allowed',
    description: 'Compound charts (line markers over bars) are not included in the account plan.',
    retryable: false,
    hint: 'Remove the markers, or use an account whose plan includes compound charts.',
    origin: 'image-charts',
    since: v,
  },
  IC_UNAUTHORIZED_BACKGROUND_IMAGE_CHART_ERROR: {
    status: 403,
    title: 'Background Image Not Allowed',
    description: 'Chart background images are not included in the account plan.',
    retryable: false,
    hint: 'Remove the background image, or use an account whose plan includes it.',
    origin: 'image-charts',
    since: v,
  },
  IC_UPLOAD_DISABLED: {
    status: 403,
    title: 'Uploads Disabled',
    description: 'Uploads are not enabled on this service.',
    retryable: false,
    hint: 'Enable uploads in the upload configuration, or upload elsewhere.',
    since: v,
  },
  IC_SOURCE_ADDRESS_BLOCKED: {
    status: 403,
    title: 'Source Address Blocked',
    description:
      'The source host resolves to an address that is not public (loopback, private, link-local, CGNAT, unique-local, multicast, reserved, or IPv4 hidden in IPv6).',
    retryable: false,
    hint: 'Fetch from a public host. If the private backend is intended, allow its address range explicitly.',
    since: v,
  },
  IC_BACKEND_FORBIDDEN: {
    status: 403,
    title: 'Backend Forbidden',
    description: 'The image backend answered 403 Forbidden.',
    retryable: false,
    hint: "Check the backend's access rules for this path (bucket policy, referrer rules).",
    since: v,
  },
  IC_NOT_FOUND: {
    status: 404,
    title: 'Not Found',
    description: 'Nothing is served at this path.',
    retryable: false,
    hint: 'Default code for a 404 raised without a code. Check the path.',
    since: v,
  },
  IC_IMAGE_NOT_FOUND: {
    status: 404,
    title: 'Image Not Found',
    description: 'The requested image does not exist.',
    retryable: false,
    hint: 'Check the image path (and, when it came from a backend, the configured backend).',
    since: v,
  },
  IC_UPLOAD_TOO_LARGE: {
    status: 413,
    title: 'Upload Too Large',
    description: 'The uploaded body is larger than the configured maximum; reading stopped at the limit.',
    retryable: false,
    hint: 'Upload a smaller file, or raise the upload `maxBytes` limit.',
    since: v,
  },
  IC_UPLOAD_ENCODING_UNSUPPORTED: {
    status: 415,
    title: 'Upload Encoding Unsupported',
    description:
      'The upload was sent compressed (a Content-Encoding, or a Transfer-Encoding other than chunked); uploads are read as the image bytes themselves.',
    retryable: false,
    hint: 'Send the image as it is, without Content-Encoding: image formats are compressed already.',
    since: v,
  },
  IC_METHOD_NOT_ALLOWED: {
    status: 405,
    title: 'Method Not Allowed',
    description: 'The path exists, but not for this HTTP method.',
    retryable: false,
    hint: 'Use one of the methods the `Allow` header lists.',
    since: v,
  },
  IC_PAYLOAD_TOO_LARGE: {
    status: 413,
    title: 'Payload Too Large',
    description: 'The request body is larger than the server accepts.',
    retryable: false,
    hint: 'Send a smaller body.',
    since: v,
  },
  IC_CLIENT_ERROR: {
    status: 400,
    title: 'Client Error',
    description:
      'The request failed because of the client: sent with the 4xx status it was raised with (400 when raised as this code).',
    retryable: false,
    hint: 'Default code for a 4xx status that has no code of its own. The status tells what went wrong.',
    since: v,
  },
  IC_COST_OVER_LIMIT: {
    status: 403,
    title: 'Request Costs More Than The Limit',
    description:
      'This request alone costs more than the rate limit allows in a whole window: it can never pass, and retrying will not help.',
    retryable: false,
    hint: 'Ask for less (a smaller image, fewer items), or have the limit raised.',
    since: v,
  },
  IC_RATE_LIMITED: {
    status: 429,
    title: 'Too Many Requests',
    description: 'The client sent more requests than its rate limit allows.',
    retryable: true,
    hint: 'Wait `Retry-After` seconds, then retry with truncated exponential backoff and jitter (at least 1 s).',
    retryAfterSeconds: 60,
    since: v,
  },
  IC_CLIENT_CLOSED_REQUEST: {
    status: 499,
    title: 'Client Closed Request',
    description:
      'The client closed the connection before the response was ready. Nothing is sent; the status is recorded in logs and metrics.',
    retryable: true,
    hint: 'Raise the client timeout, or make the work cheaper (smaller source images, fewer operations).',
    since: v,
  },
  IC_INTERNAL_ERROR: {
    status: 500,
    title: 'Internal Server Error',
    description: 'An unexpected error occurred. Details are in the server logs, under the request id.',
    retryable: false,
    hint: 'Find the request id (`x-request-id`, or `instance` in the body) in the server logs.',
    since: v,
  },
  IC_SERVER_ERROR: {
    status: 500,
    title: 'Server Error',
    description:
      'The server failed to complete the request: sent with the 5xx status it was raised with (500 when raised as this code).',
    retryable: false,
    hint: 'Default code for a 5xx status that has no code of its own. Check the server logs.',
    since: v,
  },
  IC_BACKEND_ERROR: {
    status: 502,
    title: 'Backend Error',
    description: 'The image backend answered with a server error (5xx).',
    retryable: true,
    hint: 'Retry with backoff; if it persists, check the backend.',
    since: v,
  },
  IC_BACKEND_UNREACHABLE: {
    status: 502,
    title: 'Backend Unreachable',
    description: 'The image backend could not be reached: DNS failure, connection refused or reset.',
    retryable: true,
    hint: 'Retry with backoff; check that the backend is up and its host name resolves.',
    since: v,
  },
  IC_BACKEND_INVALID_RESPONSE: {
    status: 502,
    title: 'Invalid Backend Response',
    description: 'The image backend sent an invalid or truncated response.',
    retryable: true,
    hint: 'Retry with backoff; check the backend for crashes mid-response.',
    since: v,
  },
  IC_TOO_MANY_REDIRECTS: {
    status: 502,
    title: 'Too Many Redirects',
    description: 'The image backend redirected more times than allowed.',
    retryable: false,
    hint: 'Point the request at the final image URL, or raise `maxRedirects`.',
    since: v,
  },
  IC_BAD_GATEWAY: {
    status: 502,
    title: 'Bad Gateway',
    description: 'An upstream service failed.',
    retryable: true,
    hint: 'Default code for a 502 raised without a code. Retry with backoff.',
    since: v,
  },
  IC_GATEWAY_TIMEOUT: {
    status: 504,
    title: 'Gateway Timeout',
    description: 'An upstream service did not answer in time.',
    retryable: true,
    hint: 'Default code for a 504 raised without a code (the deadline of this package is `IC_BACKEND_TIMEOUT`). Retry with backoff.',
    since: v,
  },
  IC_OVERLOADED: {
    status: 503,
    title: 'Service Overloaded',
    description:
      'The server is under too much load (event-loop delay or utilisation, memory, or requests in flight) and refused the request to stay responsive.',
    retryable: true,
    hint: 'Retry after `Retry-After` seconds. Operators: the reason is in the error detail; add capacity or tune the thresholds.',
    retryAfterSeconds: 5,
    since: v,
  },
  IC_BACKEND_UNAVAILABLE: {
    status: 503,
    title: 'Backend Unavailable',
    description:
      'The image backend is unavailable: it answered 503 Service Unavailable or 429 Too Many Requests.',
    retryable: true,
    hint: 'Retry after `Retry-After` seconds; the backend is overloaded or in maintenance.',
    retryAfterSeconds: 5,
    since: v,
  },
  IC_STORE_UNAVAILABLE: {
    status: 503,
    title: 'Rate-Limit Store Unavailable',
    description: 'The rate-limit store could not be reached and the limiter is configured to fail closed.',
    retryable: true,
    hint: 'Check the store (e.g. Redis); set `failOpen` to serve requests while it is down.',
    retryAfterSeconds: 5,
    since: v,
  },
  IC_SERVICE_UNAVAILABLE: {
    status: 503,
    title: 'Service Unavailable',
    description: 'The service cannot handle the request right now.',
    retryable: true,
    hint: 'Default code for a 503 raised without a code. Retry later.',
    retryAfterSeconds: 5,
    since: v,
  },
  IC_BACKEND_TIMEOUT: {
    status: 504,
    title: 'Backend Timeout',
    description:
      'Fetching or processing the image took longer than the configured deadline; the work on it was stopped.',
    retryable: false,
    hint: 'Use a smaller source image or fewer operations, or raise the deadline (`timeoutMs`).',
    since: v,
  },
  IC_BACKEND_GATEWAY_TIMEOUT: {
    status: 504,
    title: 'Backend Gateway Timeout',
    description: 'The image backend answered 504 Gateway Timeout.',
    retryable: false,
    hint: 'Check the services behind the backend.',
    since: v,
  },
} as const satisfies Record<string, ErrorCodeEntry>

/**
 * A code of the built-in catalogue.
 *
 * @example
 * const code: BuiltInErrorCode = 'IC_HOST_NOT_ALLOWED'
 */
export type BuiltInErrorCode = keyof typeof errorCatalogue

/**
 * Any code: a built-in one, or one added with {@link defineErrorCode}.
 *
 * @example
 * const code: ErrorCode = 'ACME_QUOTA_EXCEEDED'
 */
export type ErrorCode = BuiltInErrorCode | (string & {})

/** The code sent for an error whose status has no code of its own, by exact status, then by class. */
const statusDefaults: Readonly<Record<number, BuiltInErrorCode>> = {
  400: 'IC_BAD_REQUEST',
  401: 'IC_UNAUTHORIZED',
  403: 'IC_FORBIDDEN',
  404: 'IC_NOT_FOUND',
  405: 'IC_METHOD_NOT_ALLOWED',
  413: 'IC_PAYLOAD_TOO_LARGE',
  429: 'IC_RATE_LIMITED',
  499: 'IC_CLIENT_CLOSED_REQUEST',
  500: 'IC_INTERNAL_ERROR',
  502: 'IC_BAD_GATEWAY',
  503: 'IC_SERVICE_UNAVAILABLE',
  504: 'IC_GATEWAY_TIMEOUT',
}

const registry = new Map<string, ErrorCodeEntry>(Object.entries(errorCatalogue))
const CODE_PATTERN = /^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$/

/**
 * Adds a code of your own to the catalogue, so that errors made with it carry the status,
 * title and `Retry-After` you define, and the error handler sends it in `x-ic-error-code`.
 * Built-in codes cannot be redefined.
 *
 * @example
 * defineErrorCode('ACME_QUOTA_EXCEEDED', {
 *   status: 402,
 *   title: 'Quota Exceeded',
 *   description: 'The monthly image quota is used up.',
 *   retryable: false,
 *   hint: 'Upgrade the plan or wait for the next month.',
 * })
 * throw icError('ACME_QUOTA_EXCEEDED')
 */
export function defineErrorCode(code: string, entry: ErrorCodeEntry): void {
  if (typeof code !== 'string' || !CODE_PATTERN.test(code)) {
    throw new TypeError(
      `Expected \`code\` to be SCREAMING_SNAKE_CASE with an underscore, got ${showValue(code)}`,
    )
  }
  if (Object.hasOwn(errorCatalogue, code)) {
    throw new TypeError(`\`${code}\` is a built-in code and cannot be redefined`)
  }
  if (typeof entry !== 'object' || entry === null)
    throw new TypeError(`Expected the entry of ${code} to be an object, got ${showValue(entry)}`)
  // Each field read once, then stored as read: a getter or a prototype's field is copied too.
  const { status, title, description, retryable, hint, retryAfterSeconds, origin, since } = entry
  if (!Number.isInteger(status) || status < 400 || status > 599) {
    throw new TypeError(
      `Expected \`status\` of ${code} to be an integer from 400 to 599, got ${showValue(status)}`,
    )
  }
  if (status === 499)
    throw new TypeError(
      `Expected \`status\` of ${code} not to be 499: a client that left is IC_CLIENT_CLOSED_REQUEST, recorded and never sent`,
    )
  for (const [key, value] of [
    ['title', title],
    ['description', description],
    ['hint', hint],
  ] as const) {
    if (typeof value !== 'string' || value === '') {
      throw new TypeError(`Expected \`${key}\` of ${code} to be a non-empty string`)
    }
  }
  if (typeof retryable !== 'boolean') {
    throw new TypeError(`Expected \`retryable\` of ${code} to be a boolean`)
  }
  if (retryAfterSeconds !== undefined && !(Number.isInteger(retryAfterSeconds) && retryAfterSeconds >= 0)) {
    throw new TypeError(`Expected \`retryAfterSeconds\` of ${code} to be a non-negative integer`)
  }
  const stored: ErrorCodeEntry = {
    status,
    title,
    description,
    retryable,
    hint,
    ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
    ...(origin === undefined ? {} : { origin }),
    ...(since === undefined ? {} : { since }),
  }
  registry.set(code, Object.freeze(stored))
}

/**
 * The catalogue entry of a code, built-in or defined with {@link defineErrorCode}.
 *
 * @example
 * lookupErrorCode('IC_OVERLOADED')?.retryAfterSeconds // 5
 */
export function lookupErrorCode(code: string): ErrorCodeEntry | undefined {
  return registry.get(code)
}

/**
 * The code sent for an error that has a status but no code of its own.
 *
 * @example
 * defaultCodeForStatus(404) // 'IC_NOT_FOUND'
 * defaultCodeForStatus(418) // 'IC_CLIENT_ERROR'
 */
export function defaultCodeForStatus(status: number): BuiltInErrorCode {
  return statusDefaults[status] ?? (status < 500 ? 'IC_CLIENT_ERROR' : 'IC_SERVER_ERROR')
}
