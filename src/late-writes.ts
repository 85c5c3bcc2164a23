import type { ServerResponse } from 'node:http'

/** Calls the callback a late write passed, if any, as Node would once the write was done. */
function settleLate(args: readonly unknown[]): void {
  const callback = args.find((arg) => typeof arg === 'function') as (() => void) | undefined
  if (callback !== undefined) process.nextTick(callback)
}

const LATE_WRITES: PropertyDescriptorMap = Object.fromEntries(
  Object.entries({
    setHeader(this: ServerResponse) {
      return this
    },
    appendHeader(this: ServerResponse) {
      return this
    },
    removeHeader() {},
    writeHead(this: ServerResponse) {
      return this
    },
    flushHeaders() {},
    addTrailers() {},
    write(...args: unknown[]) {
      settleLate(args)
      return true
    },
    end(this: ServerResponse, ...args: unknown[]) {
      settleLate(args)
      return this
    },
  }).map(([name, value]) => [name, { value, writable: true, configurable: true }]),
)
const LATE_WRITE_NAMES = Object.keys(LATE_WRITES)
/** For each response prototype met (Express's per app, Node's), the same one with late writes dropped. */
const sealedPrototypes = new WeakMap<object, object>()

/**
 * Makes the response ignore what a handler still running writes after the failure was
 * answered; done for requests a lifecycle aborted (a deadline passed, the client left),
 * whose handler may still be running: Express's `res.send()` would throw
 * `ERR_HTTP_HEADERS_SENT` from wherever the handler is (a timer: the process ends), and a
 * late `res.write()` would emit `ERR_STREAM_WRITE_AFTER_END`. Called by the error writer
 * once it answered such a request, and by the lifecycle itself once the failure it handed on
 * was answered by whatever the app has instead (Express's final handler, Koa's `ctx.onerror`);
 * a second call changes nothing. Writes report success, so a
 * late `pipe()` drains its source instead of waiting for `'drain'` forever. The response's
 * prototype is swapped for one made once per prototype: eight own properties per response
 * would cost the error path a third more instructions (V8 reshapes the object for each).
 * Only the methods a middleware replaced on the response itself get an own replacement too:
 * `on-headers` (under morgan, compression, response-time, express-session) wraps `writeHead`
 * that way, and compression `write` and `end`; they shadow the prototype and call the
 * methods they captured from it. Internal.
 *
 * @example
 * res.end('504 Gateway Timeout')
 * dropLateWrites(res)
 * res.setHeader('x-late', 'yes') // does nothing, where it would throw ERR_HTTP_HEADERS_SENT
 */
export function dropLateWrites(res: ServerResponse): void {
  const prototype: object | null = Object.getPrototypeOf(res)
  if (prototype === null) return
  let sealed = sealedPrototypes.get(prototype)
  if (sealed === undefined) {
    sealed = Object.create(prototype, LATE_WRITES) as object
    sealedPrototypes.set(prototype, sealed)
    sealedPrototypes.set(sealed, sealed)
  }
  if (sealed !== prototype) Object.setPrototypeOf(res, sealed)
  for (const name of LATE_WRITE_NAMES)
    if (Object.hasOwn(res, name)) Object.defineProperty(res, name, LATE_WRITES[name] as PropertyDescriptor)
}
