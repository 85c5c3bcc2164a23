import { icError } from '../../errors.ts'

// biome-ignore lint/suspicious/noControlCharactersInRegex: C0, DEL and C1 controls are what it finds: never part of a key a store should be handed
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/
const PERCENT = /%(?![0-9a-fA-F]{2})/
const ESCAPE = /%[0-9a-fA-F]{2}/
// An absolute-form request target (`POST http://host/images/a.png`, as sent to a proxy).
const ORIGIN = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?#]*/

function refuse(message: string): never {
  throw icError('IS_VALIDATION_ERROR', {
    message,
    validation: [{ message, path: ['path'], type: 'upload.path' }],
  })
}

/**
 * The storage key of an upload: the request path (`req.url` without its query, as the
 * middleware sees it: Express's routers and `app.use(path)` strip their mount path, a route
 * pattern does not), percent-decoded, without its leading `/`. Refused with 400
 * `IS_VALIDATION_ERROR` (item path `['path']`, type `upload.path`) when it names no file or
 * could name another one: an empty, `.` or `..` segment (raw or percent-encoded), a `\` or
 * an encoded `/` or `\`, a control character (NUL included), invalid percent-encoding, an
 * escape encoded twice (`%252e`, which a URL built of the key would decode again)
 * (`/images/%2e%2e/secret` throws). An absolute-form target (`http://host/images/a.png`)
 * counts by its path.
 *
 * @example
 * uploadKey('/images/2024/a%20b.png?v=2') // 'images/2024/a b.png'
 */
export function uploadKey(url: string): string {
  const origin = url.charCodeAt(0) === 0x2f ? undefined : ORIGIN.exec(url)?.[0]
  const target = origin === undefined ? url : url.slice(origin.length)
  const query = target.indexOf('?')
  const path = query === -1 ? target : target.slice(0, query)
  if (path.charCodeAt(0) !== 0x2f || path.length === 1) refuse('The upload path names no file')
  const segments = path.slice(1).split('/')
  for (let i = 0; i < segments.length; i++) {
    const raw = segments[i] as string
    if (raw === '') refuse('The upload path has an empty segment')
    if (PERCENT.test(raw)) refuse('The upload path has invalid percent-encoding')
    let segment: string
    try {
      segment = raw.includes('%') ? decodeURIComponent(raw) : raw
    } catch {
      refuse('The upload path has invalid percent-encoding')
    }
    if (segment === '.' || segment === '..') refuse('The upload path has a "." or ".." segment')
    if (segment.includes('/') || segment.includes('\\'))
      refuse('The upload path has a "\\" or an encoded "/" in a segment')
    if (CONTROL.test(segment)) refuse('The upload path has a control character')
    // Encoded twice (`%252e%252e`): a store putting the key in a URL would decode `..` there.
    if (segment !== raw && ESCAPE.test(segment)) refuse('The upload path has an escape encoded twice')
    segments[i] = segment
  }
  return segments.join('/')
}
