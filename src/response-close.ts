import type { ServerResponse } from 'node:http'
import { constants, type Http2Session, type Http2Stream } from 'node:http2'
import type { Socket } from 'node:net'

/**
 * Whether the peer closed the connection of `res` (its FIN read, or a reset or broken pipe on
 * the socket), rather than our own code destroying the response without an error
 * (`res.destroy()`, which Node does not record in `res.errored`). Internal.
 *
 * @example
 * onResponseClose(res, function () {
 *   if (!this.writableFinished && peerLeft(this)) console.log('the client left')
 * })
 */
export function peerLeft(res: ServerResponse): boolean {
  const stream = http2StreamOf(res)
  if (stream !== undefined) return streamResetByPeer(stream)
  const socket = connectionOf(res)
  return socket == null || socket.readableEnded || socket.errored != null
}

/**
 * The socket of `res`: a pipelined response queued behind another has none of its own yet,
 * so its request's. Internal.
 *
 * @example
 * if (connectionOf(res)?.destroyed === true) dropLateWrites(res)
 */
export function connectionOf(res: ServerResponse): Socket | null | undefined {
  return res.socket ?? res.req?.socket
}

/**
 * The stream of a response made by `node:http2`'s compatibility API (`http2.createServer(
 * app.callback())`), which the package's code takes for a `ServerResponse`. Internal.
 *
 * @example
 * if (http2StreamOf(res) === undefined) res.setHeader('connection', 'close')
 */
export function http2StreamOf(res: ServerResponse): Http2Stream | undefined {
  const stream = (res as { stream?: Http2Stream }).stream ?? undefined
  // A destroyed stream forgets its session, which alone tells a reset socket from our own error.
  if (stream?.session !== undefined && !sessions.has(stream)) sessions.set(stream, stream.session)
  return stream
}

/** The session of each HTTP/2 stream {@link http2StreamOf} met while it had one. */
const sessions = new WeakMap<Http2Stream, Http2Session>()

/** Errors an HTTP/2 stream holds when the client, not the server, ended it. */
const PEER_STREAM_ERRORS: ReadonlySet<unknown> = new Set([
  'ERR_HTTP2_STREAM_ERROR',
  'ERR_HTTP2_SESSION_ERROR',
])
/** Socket errors: the client's when they took the session down, not when our code passed one on. */
const SOCKET_ERRORS: ReadonlySet<unknown> = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED'])

/**
 * Whether the error a stream holds came from the client: a reset stream or session, or a reset
 * socket, which destroys the session with its streams. A backend's ECONNRESET that the
 * server's own code destroyed the response with (Koa 3's pipeline) leaves the session up.
 */
function peerError(stream: Http2Stream, err: Error): boolean {
  const code = errorCode(err)
  if (PEER_STREAM_ERRORS.has(code)) return true
  const session = stream.session ?? sessions.get(stream)
  return SOCKET_ERRORS.has(code) && (session === undefined || session.destroyed)
}

/** HTTP/2 streams {@link cutResponse} reset: no departure of the client's. */
const cutByServer = new WeakSet<Http2Stream>()

function errorCode(err: Error): unknown {
  return (err as { code?: unknown }).code
}

/**
 * A stream the client ended: reset (`RST_STREAM` with any code but `NO_ERROR`, sent also for
 * each stream of a connection it closed), a connection error or a reset socket. The server's
 * own `res.destroy(err)` leaves its error on the stream, and {@link cutResponse} marks its own.
 */
function streamResetByPeer(stream: Http2Stream): boolean {
  if (cutByServer.has(stream)) return false
  const { errored } = stream
  if (errored != null) return peerError(stream, errored)
  const code = stream.rstCode
  return code !== undefined && code !== constants.NGHTTP2_NO_ERROR
}

/**
 * Whether a response that closed had reached its end: all of it handed to the connection.
 * An HTTP/2 compatibility response reads as ended, even finished, once its stream closed,
 * however it closed: there, its stream must have closed cleanly too. Internal.
 *
 * @example
 * onResponseClose(res, function () {
 *   if (!responseFinished(this)) console.log('cut short')
 * })
 */
export function responseFinished(res: ServerResponse): boolean {
  const stream = http2StreamOf(res)
  if (stream === undefined) return res.writableFinished
  return (
    res.writableEnded &&
    stream.errored == null &&
    (stream.rstCode ?? constants.NGHTTP2_NO_ERROR) === constants.NGHTTP2_NO_ERROR &&
    !cutByServer.has(stream)
  )
}

/**
 * The error the server's own code destroyed the response with (`res.destroy(err)`, a
 * pipeline's failure), as `res.errored` holds it on HTTP/1; on HTTP/2 the stream's error,
 * unless the client caused it. Internal.
 *
 * @example
 * if (serverErrorOf(res) != null) console.log('our own failure, not a departure')
 */
export function serverErrorOf(res: ServerResponse): Error | null | undefined {
  const stream = http2StreamOf(res)
  if (stream === undefined) return res.errored
  const { errored } = stream
  return errored != null && !cutByServer.has(stream) && !peerError(stream, errored) ? errored : undefined
}

/**
 * Whether the response was destroyed (by anyone): on HTTP/2, its stream. Internal.
 *
 * @example
 * if (!responseDestroyed(res)) res.destroy()
 */
export function responseDestroyed(res: ServerResponse): boolean {
  const stream = http2StreamOf(res)
  return stream === undefined ? res.destroyed : stream.destroyed
}

/**
 * Ends a started response short, so that the client cannot take it for a whole one: on
 * HTTP/1 the connection is closed; on HTTP/2 its stream is reset with `INTERNAL_ERROR`
 * (a plain `destroy()` would reset it with `NO_ERROR`, which clients read as a clean end).
 * Internal.
 *
 * @example
 * if (res.headersSent) cutResponse(res)
 */
export function cutResponse(res: ServerResponse): void {
  const stream = http2StreamOf(res)
  if (stream !== undefined && !stream.closed) {
    cutByServer.add(stream)
    stream.close(constants.NGHTTP2_INTERNAL_ERROR)
  }
  res.destroy()
}

type CloseListener = (this: ServerResponse) => void

// A response queued behind another on a pipelined connection has no socket yet (`res.socket`
// is null). When the client leaves, Node destroys its request but never emits `close` (nor
// `finish`) on the response, so its `close` listeners are kept here and run when the socket
// closes. One `close` listener per socket, however many responses are queued on it.
const queuedOn = new WeakMap<Socket, Set<ServerResponse>>()
const queuedListeners = new WeakMap<ServerResponse, CloseListener[]>()

/**
 * Calls `listener` (with the response as `this`) once the response has closed, finished or
 * not: on its `close`, or — for a response queued behind another on a pipelined connection,
 * which Node never closes — when its socket closes before the response got it. A response
 * that already closed (or whose socket is already gone) calls it at once. The request's own
 * `close` cannot tell: a queued request whose body was read emits it while its connection
 * lives. Listeners must not mind being called after the response finished.
 *
 * @example
 * onResponseClose(res, function release() {
 *   inFlight--
 * })
 */
export function onResponseClose(res: ServerResponse, listener: CloseListener): void {
  if (res.closed === true) {
    listener.call(res)
    return
  }
  res.on('close', listener)
  // A socket, or a response that finished (detached, its `close` is on its way): Node emits `close`.
  if (res.socket !== null || res.writableFinished) return
  const socket = res.req?.socket as Socket | null | undefined
  if (socket == null) return
  if (socket.destroyed) {
    listener.call(res)
    return
  }
  let listeners = queuedListeners.get(res)
  if (listeners === undefined) {
    listeners = []
    queuedListeners.set(res, listeners)
    let queued = queuedOn.get(socket)
    if (queued === undefined) {
      queued = new Set()
      queuedOn.set(socket, queued)
      socket.once('close', closeQueued)
    }
    queued.add(res)
    // Given the socket, the response closes like any other: Node emits its `close`.
    res.once('socket', leaveQueue)
  }
  listeners.push(listener)
}

function leaveQueue(this: ServerResponse, socket: Socket): void {
  queuedListeners.delete(this)
  queuedOn.get(socket)?.delete(this)
}

function closeQueued(this: Socket): void {
  const queued = queuedOn.get(this)
  if (queued === undefined) return
  queuedOn.delete(this)
  for (const res of queued) {
    const listeners = queuedListeners.get(res)
    queuedListeners.delete(res)
    res.off('socket', leaveQueue)
    if (listeners !== undefined) for (const listener of listeners) listener.call(res)
  }
}
