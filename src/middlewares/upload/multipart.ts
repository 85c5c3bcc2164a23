// `; name="value"` or `; name=value`: a quoted value may hold `;` and `\"`, so it is read whole.
// Browsers escape no backslash (they send `"` as %22): a `\` right before the closing quote, i.e.
// one followed by `;` or the end, is the last character of the value (`name="photo\"`).
const PARAMETER = /;[ \t]*([^\s=;]+)[ \t]*=[ \t]*(?:"((?:[^"\\]|\\(?="[ \t]*(?:;|$))|\\.)*)"|([^\s;"]*))/g

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
    const parameters = new Map<string, string>()
    for (const [, name, quoted, token] of line.slice(colon + 1).matchAll(PARAMETER)) {
      const key = (name as string).toLowerCase()
      if (!parameters.has(key))
        parameters.set(key, quoted === undefined ? (token as string) : quoted.replace(/\\(.)/g, '$1'))
    }
    return parameters
  }
  return undefined
}

/**
 * The file part of a `multipart/form-data` body: the part named `file`, else the first part
 * with a file name (`filename` or `filename*`). `undefined` when there is none or the body is
 * not well formed.
 *
 * @example
 * const file = multipartFile(body, 'XyZ') // the bytes between the part's headers and the next boundary
 */
export function multipartFile(body: Buffer, boundary: string): Buffer | undefined {
  const delimiter = Buffer.from(`--${boundary}`, 'latin1')
  const next = Buffer.from(`\r\n--${boundary}`, 'latin1')
  let first: Buffer | undefined
  let position = body.indexOf(delimiter)
  while (position !== -1) {
    const headerStart = position + delimiter.length
    if (body[headerStart] === 0x2d && body[headerStart + 1] === 0x2d) break
    const headerEnd = body.indexOf('\r\n\r\n', headerStart, 'latin1')
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
