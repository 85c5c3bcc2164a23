// TypeScript consumer with nothing but the package and @types/node (no Express or Koa types,
// so no @types/http-errors), and skipLibCheck off: the shipped declarations stand alone.
import { createServer } from 'node:http'
import { createErrorWriter, type IcError, icError } from 'image-api-errors'
import { errorHandler } from 'image-api-errors/koa'

const err: IcError = icError('IC_IMAGE_NOT_FOUND')
const status: number = err.status
const code: 'IC_IMAGE_NOT_FOUND' | string = err.code
// @ts-expect-error: `status` is a number, not `any` (it was `any` when the types leant on @types/http-errors).
const wrong: string = err.status
const write = createErrorWriter()
createServer((req, res) => write(err, req, res)).close()
console.log('bare consumer:', status, code, typeof wrong, typeof errorHandler)
