declare module 'koa2' {
  import Koa from 'koa'
  export default Koa
}

/** The parts the tests use of compression and morgan, which ship no types. */
declare module 'compression' {
  import type { IncomingMessage, ServerResponse } from 'node:http'
  export default function compression(options?: {
    readonly threshold?: number | string
  }): (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void
}
declare module 'morgan' {
  import type { IncomingMessage, ServerResponse } from 'node:http'
  export default function morgan(
    format: string,
    options?: { readonly stream?: { write(line: string): void } },
  ): (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void
}
