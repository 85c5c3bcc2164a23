import { constants } from 'node:buffer'
import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { icError } from '../../errors.ts'
import type { Guard, Published } from '../../guard.ts'
import { knownOptions, showValue } from '../../options.ts'
import { requestSignal } from '../../request-signal.ts'
import { cutResponse, http2StreamOf, peerLeft } from '../../response-close.ts'
import { type ImageFormat, sniffImageFormat } from '../backend-fetch/sniff.ts'
import { uploadKey } from './key.ts'
import { multipartFile, parametersOf } from './multipart.ts'

/**
 * Every format `upload()` recognises by its header bytes (the formats of `sniffImageFormat()`):
 * the default of its `types` option.
 *
 * @example
 * upload({ enabled: true, tokens, types: UPLOAD_FORMATS.filter((format) => format !== 'bmp') })
 */
export const UPLOAD_FORMATS: readonly ImageFormat[] = Object.freeze([
  'jpeg',
  'png',
  'gif',
  'webp',
  'avif',
  'heif',
  'tiff',
  'bmp',
  'jxl',
])

/**
 * Options of `upload()`.
 *
 * @example
 * const options: UploadOptions = { enabled: true, tokens: [process.env.UPLOAD_TOKEN as string], maxBytes: 5 * 1024 * 1024 }
 */
export interface UploadOptions {
  /** Accept uploads; otherwise every upload gets 403 `IC_UPLOAD_DISABLED`. @default false */
  readonly enabled?: boolean
  /** Accepted `Authorization: Bearer` tokens (compared in constant time). */
  readonly tokens?: readonly string[]
  /** Decides on a token the `tokens` list does not hold (e.g. in a database). */
  readonly verifyToken?: (token: string, req: IncomingMessage) => boolean | Promise<boolean>
  /** Largest body, in bytes; reading stops at the limit (413 `IC_UPLOAD_TOO_LARGE`). @default 10485760 (10 MiB) */
  readonly maxBytes?: number
  /** Formats accepted, recognised by their bytes. @default UPLOAD_FORMATS (all) */
  readonly types?: readonly ImageFormat[]
}

/**
 * What `upload()` publishes as `upload`: the storage key checked from the request path, the
 * image bytes (the `file` part of a multipart body, or the whole body) and their format.
 *
 * @example
 * const { key, body, type } = res.locals.upload as UploadedImage
 * await s3.putObject({ Key: key, Body: body, ContentType: `image/${type}` })
 */
export interface UploadedImage {
  /**
   * Where to store the image: the request path (`req.url` as the middleware sees it, without
   * the query) percent-decoded, without its leading `/`. Never holds an empty, `.` or `..`
   * segment, a `\`, or a control character: a path that would is refused with 400.
   */
  readonly key: string
  readonly body: Buffer
  readonly type: ImageFormat
}

const BEARER = /^Bearer +([\x21-\x7e]+) *$/i
/** A `Content-Encoding` that leaves the bytes as they are: `identity`, or nothing. */
const IDENTITY = /^[ \t]*(?:identity)?[ \t]*$/i
/** A `Transfer-Encoding` Node decodes to the bytes sent: `chunked` alone. */
const CHUNKED_ONLY = /^[ \t]*chunked[ \t]*$/i

function tokenDigest(token: string): Buffer {
  return createHash('sha256').update(token).digest()
}

/**
 * A refusal before the body is read: with a body on its way, keep-alive would make Node read
 * and discard all of it (as much as the client sends) to reach the next request.
 */
function closeIfBody(req: IncomingMessage, res: ServerResponse): void {
  const length = req.headers['content-length']
  const hasBody = req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
  if (hasBody) closeConnection(res)
}

/** `Connection: close` on the response to come; HTTP/2 has no such header (its stream's end stops the body). */
function closeConnection(res: ServerResponse): void {
  if (!res.headersSent && http2StreamOf(res) === undefined) res.setHeader('connection', 'close')
}

function tooLarge(res: ServerResponse, maxBytes: number): never {
  // The rest of the body is not read: closing the connection is cheaper than draining it.
  closeConnection(res)
  throw icError('IC_UPLOAD_TOO_LARGE', { message: `The upload is larger than ${maxBytes} bytes` })
}

let warnedBodyRead = false

function warnBodyRead(): void {
  if (warnedBodyRead) return
  warnedBodyRead = true
  process.emitWarning(
    'upload() found the request body already read: mount upload() before any body parser (such uploads get 400 IC_UPLOAD_NOT_AN_IMAGE)',
    { code: 'IMAGE_API_ERRORS_UPLOAD_BODY_READ' },
  )
}

/**
 * Leaves the rest of the body unread. Kept alive, Node would read and discard all of it after
 * the response, however much the client sends, so the connection is closed: with the error
 * response, or at once when a response has already started.
 */
function abandonBody(req: IncomingMessage, res: ServerResponse): void {
  req.pause()
  if (res.headersSent) cutResponse(res)
  else closeConnection(res)
}

/**
 * Tells the body parsers mounted after `upload()` that the body is read: Express 4's
 * (body-parser 1.x) would read the ended stream again and fail with a 500. Body-parser 2.x
 * sees it from the request itself.
 */
function markRead(req: IncomingMessage): void {
  ;(req as IncomingMessage & { _body?: boolean })._body = true
}

/**
 * Sends the `100 Continue` a client sending `Expect: 100-continue` waits for, if Node has not:
 * it leaves that to a `checkContinue` listener (`server.on('checkContinue', app)`), which
 * routes the request here so that refusals go out before the body. HTTP/1.1 only; Node's
 * HTTP/2 keeps no trace of a 100 sent, so it is left to Node there.
 */
function askForBody(res: ServerResponse): void {
  const state = res as ServerResponse & { _expect_continue?: boolean; _sent100?: boolean }
  if (state._expect_continue === true && state._sent100 !== true && !res.headersSent) res.writeContinue()
}

/**
 * Reads a request body, refusing it as soon as it passes `maxBytes`, and stopping when the
 * request's signal aborts (a deadline passed, the client left) with the signal's reason.
 */
function readBody(req: IncomingMessage, res: ServerResponse, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const signal = requestSignal(req)
    if (signal.aborted) {
      abandonBody(req, res)
      reject(signal.reason)
      return
    }
    // Listeners on a stream that is gone or already read would wait for events that came before.
    if (req.readableEnded || req.readableFlowing === true) {
      // The client chose the Content-Type a body parser took (express.json() app-wide): a 400,
      // not a 500 any client could cause; the warning is for the developer who mounted it first.
      warnBodyRead()
      reject(
        icError('IC_UPLOAD_NOT_AN_IMAGE', {
          message: 'The upload body was already read by a body parser: mount upload() before any body parser',
        }),
      )
      return
    }
    if (req.destroyed || req.readableAborted) {
      reject(
        icError('IC_CLIENT_CLOSED_REQUEST', {
          message: 'The client closed the connection before the upload was read',
        }),
      )
      return
    }
    const chunks: Buffer[] = []
    let size = 0
    const cleanup = () => {
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', onError)
      req.off('close', onClose)
      signal.removeEventListener('abort', onAbort)
    }
    const onAbort = () => {
      cleanup()
      abandonBody(req, res)
      reject(signal.reason)
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > maxBytes) {
        cleanup()
        // A response already on its way (a deadline's 504) cannot say Connection: close.
        if (res.headersSent) cutResponse(res)
        // Keep the socket readable (the discarded bytes flow on) so the 413 can be written.
        else req.resume()
        try {
          tooLarge(res, maxBytes)
        } catch (err) {
          reject(err)
        }
        return
      }
      chunks.push(chunk)
    }
    const onEnd = () => {
      cleanup()
      markRead(req)
      const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size)
      if (http2StreamOf(res) === undefined) {
        resolve(body)
        return
      }
      // Node's HTTP/2 ends the body of a stream the client reset (RST_STREAM) a turn of the
      // event loop before it marks the stream aborted (measured on Node 20): a body cut short,
      // with no Content-Length to tell, would read as whole. Judged two turns later.
      setImmediate(() =>
        setImmediate(() => {
          if (req.aborted || peerLeft(res))
            reject(
              icError('IC_CLIENT_CLOSED_REQUEST', {
                message: 'The client reset the stream during the upload',
              }),
            )
          else resolve(body)
        }),
      )
    }
    const onError = (err: Error) => {
      cleanup()
      reject(icError('IC_CLIENT_CLOSED_REQUEST', { message: 'The upload was interrupted', cause: err }))
    }
    const onClose = () => {
      if (req.readableEnded) return
      cleanup()
      reject(
        icError('IC_CLIENT_CLOSED_REQUEST', {
          message: 'The client closed the connection during the upload',
        }),
      )
    }
    askForBody(res)
    req.on('data', onData)
    req.on('end', onEnd)
    req.on('error', onError)
    req.on('close', onClose)
    signal.addEventListener('abort', onAbort)
    // A stream paused on purpose (`req.pause()`) stays paused when a `data` listener is added.
    if (req.readableFlowing === false) req.resume()
  })
}

/**
 * Imagizer-style uploads: a `POST` of an image to the path it will be stored at. Refused
 * with 403 `IC_UPLOAD_DISABLED` unless `enabled`; then an `Authorization: Bearer` token is
 * required (401 `IC_UPLOAD_UNAUTHORIZED` when missing or not accepted), the body is capped
 * while it streams in (413 `IC_UPLOAD_TOO_LARGE`, from `Content-Length` before reading when
 * it is declared), a compressed body is refused (415 `IC_UPLOAD_ENCODING_UNSUPPORTED`: a
 * `Content-Encoding` but `identity`, a `Transfer-Encoding` but `chunked`), and the bytes must
 * be an image (400 `IC_UPLOAD_NOT_AN_IMAGE`; the `Content-Type` is not trusted). A `multipart/form-data` body gives its `file` part. The
 * request path becomes the storage `key` (decoded, without its leading `/`); a path with an
 * empty, `.` or `..` segment, a `\`, an encoded `/` or `\`, a control character or invalid
 * percent-encoding is refused (400 `IS_VALIDATION_ERROR`). Publishes `upload`
 * (`{ key, body, type }`). Mount it before any body parser.
 *
 * @example
 * import { upload } from 'image-api-errors/express'
 * app.post('/images/*path', upload({ enabled: true, tokens: [process.env.UPLOAD_TOKEN as string] }), async (req, res) => {
 *   await store(res.locals.upload.key, res.locals.upload.body) // 'images/…'
 *   res.status(201).end()
 * })
 */
export function upload(options: Readonly<UploadOptions> = {}): Guard {
  knownOptions(options, ['enabled', 'tokens', 'verifyToken', 'maxBytes', 'types'], 'upload')
  if (options.enabled !== undefined && typeof options.enabled !== 'boolean')
    throw new TypeError(`Expected \`enabled\` to be a boolean, got ${showValue(options.enabled)}`)
  const maxBytes = options.maxBytes === undefined ? 10 * 1024 * 1024 : options.maxBytes
  if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0)
    throw new TypeError(`Expected \`maxBytes\` to be a positive integer, got ${showValue(options.maxBytes)}`)
  // The body is read into one Buffer: a cap above what a Buffer can hold promises what cannot be kept.
  if (maxBytes > constants.MAX_LENGTH)
    throw new TypeError(
      `Expected \`maxBytes\` to be at most ${constants.MAX_LENGTH} (buffer.constants.MAX_LENGTH), got ${maxBytes}`,
    )
  if (options.tokens === null)
    throw new TypeError(
      'Expected `tokens` to be an array of non-empty tokens (printable ASCII, no spaces), got null',
    )
  const tokens = options.tokens ?? []
  if (!Array.isArray(tokens) || tokens.some((t) => typeof t !== 'string' || !/^[\x21-\x7e]+$/.test(t)))
    throw new TypeError('Expected `tokens` to be an array of non-empty tokens (printable ASCII, no spaces)')
  const { verifyToken } = options
  if (verifyToken !== undefined && typeof verifyToken !== 'function')
    throw new TypeError(`Expected \`verifyToken\` to be a function, got ${typeof verifyToken}`)
  if (options.enabled === true && tokens.length === 0 && verifyToken === undefined)
    throw new TypeError(
      'Expected `tokens` or `verifyToken` when uploads are enabled: an upload needs a Bearer token',
    )
  if (options.types !== undefined && (!Array.isArray(options.types) || options.types.length === 0))
    throw new TypeError(
      `Expected \`types\` to be a non-empty array of ${UPLOAD_FORMATS.join(', ')}, got ${showValue(options.types)}`,
    )
  const types = new Set(options.types ?? UPLOAD_FORMATS)
  for (const type of types) {
    if (!UPLOAD_FORMATS.includes(type))
      throw new TypeError(`Expected \`types\` to hold ${UPLOAD_FORMATS.join(', ')}, got ${showValue(type)}`)
  }
  const digests = tokens.map(tokenDigest)
  const enabled = options.enabled === true

  const accept = async (req: IncomingMessage, res: ServerResponse, key: string): Promise<Published> => {
    let body = await readBody(req, res, maxBytes)
    const contentType = req.headers['content-type'] ?? ''
    if (/^multipart\/form-data/i.test(contentType)) {
      const boundary = parametersOf(contentType).get('boundary')
      const file =
        boundary === undefined || boundary.length === 0 || boundary.length > 70
          ? undefined
          : multipartFile(body, boundary)
      if (file === undefined)
        throw icError('IC_UPLOAD_NOT_AN_IMAGE', { message: 'The multipart body has no file part' })
      body = file
    }
    const type = sniffImageFormat(body, { complete: true })
    if (type === undefined || !types.has(type)) {
      throw icError('IC_UPLOAD_NOT_AN_IMAGE', {
        message:
          type === undefined
            ? 'The uploaded bytes are not an image'
            : `Uploads of ${type} images are not accepted (accepted: ${[...types].join(', ')})`,
      })
    }
    return { upload: { key, body, type } satisfies UploadedImage }
  }

  const start = (req: IncomingMessage, res: ServerResponse): Promise<Published> => {
    let key: string
    try {
      key = uploadKey(req.url ?? '')
    } catch (err) {
      closeIfBody(req, res)
      throw err
    }
    const encoding = req.headers['content-encoding']
    const transfer = req.headers['transfer-encoding']
    // Compressed bytes would be sniffed as no image (or stored as one they are not); RFC 9110
    // §15.5.16: 415, with the codings accepted in Accept-Encoding. Node decodes no transfer
    // coding but chunked either: `Transfer-Encoding: gzip, chunked` is the same refusal.
    if (
      (encoding !== undefined && !IDENTITY.test(encoding)) ||
      (transfer !== undefined && !CHUNKED_ONLY.test(transfer))
    ) {
      closeIfBody(req, res)
      throw icError('IC_UPLOAD_ENCODING_UNSUPPORTED', {
        message:
          'Uploads are read as sent: send the image without Content-Encoding or a Transfer-Encoding but chunked',
        headers: { 'accept-encoding': 'identity' },
      })
    }
    const length = req.headers['content-length']
    if (length !== undefined && Number(length) > maxBytes) tooLarge(res, maxBytes)
    return accept(req, res, key)
  }

  return function upload(req, res) {
    if (!enabled) {
      closeIfBody(req, res)
      throw icError('IC_UPLOAD_DISABLED', { message: 'Uploads are disabled' })
    }
    const match = BEARER.exec(req.headers.authorization ?? '')
    if (match === null) {
      closeIfBody(req, res)
      throw icError('IC_UPLOAD_UNAUTHORIZED', {
        message: 'An upload needs an Authorization: Bearer token',
        headers: { 'www-authenticate': 'Bearer' },
      })
    }
    const token = match[1] as string
    const given = tokenDigest(token)
    let ok = false
    for (const digest of digests) if (timingSafeEqual(digest, given)) ok = true
    const refused = () => {
      closeIfBody(req, res)
      return icError('IC_UPLOAD_UNAUTHORIZED', {
        message: 'The upload token is not accepted',
        headers: { 'www-authenticate': 'Bearer error="invalid_token"' },
      })
    }
    if (ok) return start(req, res)
    if (verifyToken === undefined) throw refused()
    // A synchronous throw becomes a rejection too: both fail the request before its body is read.
    return new Promise<unknown>((resolve) => resolve(verifyToken(token, req))).then(
      (verdict) => {
        if (verdict !== true) throw refused()
        return start(req, res)
      },
      (err: unknown) => {
        closeIfBody(req, res)
        throw err
      },
    )
  }
}
