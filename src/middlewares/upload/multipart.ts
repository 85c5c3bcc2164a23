import { icError } from '../../errors.ts'

/** Parts read before the file part, at most: a body of tiny parts costs no more than this many. */
const MAX_PARTS = 100
/** Bytes of one part's headers, at most. */
const MAX_PART_HEADER_BYTES = 8192

// `; name="value"` or `; name=value`, each starting where the one before ended (sticky), so a
// `; boundary=` inside a quoted value is never taken for a parameter. A quoted value may hold
// `;` and `\"`. Browsers escape no backslash (they send `"` as %22): a `\` right before the
// closing quote, i.e. one followed by `;` or the end, is the last character of the value
// (`name="photo\"`).
const PARAMETER =
  /[ \t]*;[ \t]*([^\s=;"]+)[ \t]*=[ \t]*(?:"((?:[^"\\]|\\(?="[ \t]*(?:;|$))|\\.)*)"|([^\s;"]*))[ \t]*/y

/**
 * The parameters of a header value from its first `;` on (`multipart/form-data;
 * boundary=XyZ`, `form-data; name="file"`), by lower-case name, the first of a repeated name
 * winning: quoted values unescaped, unquoted ones as sent. A parameter that is not well
 * formed (`; charset;`) is skipped up to the next `;`.
 *
 * @example
 * parametersOf('multipart/form-data; x="; boundary=EVIL"; boundary=XyZ').get('boundary') // 'XyZ'
 */
export function parametersOf(value: string): Map<string, string> {
  const parameters = new Map<string, string>()
  const semicolon = value.indexOf(';')
  if (semicolon === -1) return parameters
  let at = semicolon
  while (at !== -1 && at < value.length) {
    PARAMETER.lastIndex = at
    const match = PARAMETER.exec(value)
    if (match === null) {
      // A parameter that is not well formed (`; charset;`) is skipped, up to the next `;`.
      at = value.indexOf(';', at + 1)
      continue
    }
    const [, name, quoted, token] = match
    const key = (name as string).toLowerCase()
    if (!parameters.has(key))
      parameters.set(key, quoted === undefined ? (token as string) : quoted.replace(/\\(.)/g, '$1'))
    at = PARAMETER.lastIndex
  }
  return parameters
}

/**
 * The parameters of a part's `Content-Disposition` header (`form-data; name="file";
 * filename="a.png"`), by lower-case name: quoted values unescaped, unquoted ones as sent.
 * `undefined` when the part has no such header.
 *
 * @example
 * dispositionOf('Content-Disposition: form-data; name=file; filename="a.png"')?.get('name') // 'file'
 */
export function dispositionOf(headers: string): Map<string, string> | undefined {
  for (const line of headers.split('\r\n')) {
    const colon = line.indexOf(':')
    if (colon === -1 || line.slice(0, colon).trim().toLowerCase() !== 'content-disposition') continue
    return parametersOf(line.slice(colon + 1))
  }
  return undefined
}

/**
 * The file part of a `multipart/form-data` body: the part named `file`, else the first part
 * with a file name (`filename` or `filename*`). `undefined` when there is none or the body is
 * not well formed; throws 400 `IC_UPLOAD_NOT_AN_IMAGE` past 100 parts before the file part or
 * 8 KiB of one part's headers.
 *
 * @example
 * const file = multipartFile(body, 'XyZ') // the bytes between the part's headers and the next boundary
 */
export function multipartFile(body: Buffer, boundary: string): Buffer | undefined {
  const delimiter = Buffer.from(`--${boundary}`, 'latin1')
  const next = Buffer.from(`\r\n--${boundary}`, 'latin1')
  let first: Buffer | undefined
  let parts = 0
  let position = body.indexOf(delimiter)
  while (position !== -1) {
    const headerStart = position + delimiter.length
    if (body[headerStart] === 0x2d && body[headerStart + 1] === 0x2d) break
    if (++parts > MAX_PARTS) {
      if (first !== undefined) return first
      throw icError('IC_UPLOAD_NOT_AN_IMAGE', {
        message: `The multipart body has more than ${MAX_PARTS} parts before its file`,
      })
    }
    const headerEnd = body.indexOf('\r\n\r\n', headerStart, 'latin1')
    if (headerEnd - headerStart > MAX_PART_HEADER_BYTES)
      throw icError('IC_UPLOAD_NOT_AN_IMAGE', {
        message: `A multipart part has more than ${MAX_PART_HEADER_BYTES} bytes of headers`,
      })
    if (headerEnd === -1) break
    const end = body.indexOf(next, headerEnd + 4)
    if (end === -1) break
    const disposition = dispositionOf(body.toString('latin1', headerStart, headerEnd))
    const content = body.subarray(headerEnd + 4, end)
    if (disposition?.get('name') === 'file') return content
    if (first === undefined && (disposition?.has('filename') || disposition?.has('filename*')))
      first = content
    position = end + 2
  }
  return first
}
