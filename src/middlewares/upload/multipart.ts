/**
 * The file part of a `multipart/form-data` body: the part named `file`, else the first part
 * with a `filename`. `undefined` when there is none or the body is not well formed.
 *
 * @example
 * const file = multipartFile(body, 'XyZ') // the bytes between the part's headers and the next boundary
 */
export function multipartFile(body: Buffer, boundary: string): Buffer | undefined {
  const delimiter = Buffer.from(`--${boundary}`, 'latin1')
  let first: Buffer | undefined
  let position = body.indexOf(delimiter)
  while (position !== -1) {
    const headerStart = position + delimiter.length
    if (body[headerStart] === 0x2d && body[headerStart + 1] === 0x2d) break
    const headerEnd = body.indexOf('\r\n\r\n', headerStart, 'latin1')
    if (headerEnd === -1) break
    const next = body.indexOf(Buffer.from(`\r\n--${boundary}`, 'latin1'), headerEnd + 4)
    if (next === -1) break
    const headers = body.toString('latin1', headerStart, headerEnd)
    const disposition = /content-disposition:[^\r\n]*/i.exec(headers)?.[0] ?? ''
    const content = body.subarray(headerEnd + 4, next)
    if (/;\s*name="file"/i.test(disposition)) return content
    if (first === undefined && /;\s*filename="/i.test(disposition)) first = content
    position = next + 2
  }
  return first
}
