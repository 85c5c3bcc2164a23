// Bench server: one Express 5 route, bare or behind the request rules, by variant.
//   bare          res.type('json').send(body)
//   rules         requestRules({ signature, permissions (10 allowed hosts), imageParams }): one layer
//   rules-100k    the same with 100,000 allowed hosts
//   layers        signature(), permissions(), imageParams() as three layers (10 hosts)
import express from 'express'
import { imageParams, permissions, requestRules, signature } from '../../src/express.ts'
import { ACCOUNT, allowedHosts, SECRET } from './rules-fixture.ts'

const variant = process.argv[2] ?? 'bare'
const BODY = '{"status":"ok"}'
const app = express()
const rules = {
  signature: { accounts: { [ACCOUNT]: SECRET } },
  permissions: {
    hostsAllowed: allowedHosts(variant === 'rules-100k' ? 100_000 : 10),
    allowOriginalImageRequest: false,
  },
  imageParams: { imageParamsAllowed: ['width', 'height', 'quality', 'crop'], maxWidth: 4000 },
}
const send = (_req: unknown, res: { type(t: string): { send(b: string): void } }) =>
  res.type('json').send(BODY)

if (variant === 'bare') app.get('/img', send)
else if (variant === 'layers')
  app.get(
    '/img',
    signature(rules.signature),
    permissions(rules.permissions),
    imageParams(rules.imageParams),
    send,
  )
else app.get('/img', requestRules(rules), send)

const server = app.listen(0, '127.0.0.1', () => {
  const address = server.address()
  console.log(`listening ${typeof address === 'object' && address !== null ? address.port : 0}`)
})
process.on('SIGTERM', () => server.close(() => process.exit(0)))
