// Bench server: one Express 5 route, bare or behind the request rules, by variant.
//   bare          res.type('json').send(body)
//   rules         requestRules({ signature, permissions (10 allowed hosts), imageParams }): one layer
//   rules-handler requestRules(rules, handler): the rules inside the handler's own layer
//   rules-100k    the same with 100,000 allowed hosts
//   layers        signature(), permissions(), imageParams() as three layers (10 hosts)
//   spin-5us      a yardstick: one layer doing 5 µs of arithmetic (timed in this process at
//                 start-up), touching no memory — what 5 µs of work costs on this machine
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
const send = (_req: express.Request, res: express.Response) => {
  res.type('json').send(BODY)
}

let sink = 1
/** A dependent chain of multiplications: its time is arithmetic only, the same in a loop and in a server. */
function spin(rounds: number): number {
  let x = sink | 1
  for (let i = 0; i < rounds; i++) x = (x * 1103515245 + 12345) | 0
  return x
}
function roundsFor(nanoseconds: number): number {
  let rounds = 1000
  for (let pass = 0; pass < 5; pass++) {
    const calls = 2000
    const start = process.hrtime.bigint()
    for (let i = 0; i < calls; i++) sink = spin(rounds)
    const each = Number(process.hrtime.bigint() - start) / calls
    rounds = Math.max(1, Math.round((rounds * nanoseconds) / each))
  }
  return rounds
}

if (variant === 'bare') app.get('/img', send)
else if (variant === 'spin-5us') {
  const rounds = roundsFor(5_000)
  app.get(
    '/img',
    (_req: unknown, _res: unknown, next: () => void) => {
      sink = spin(rounds)
      next()
    },
    send,
  )
} else if (variant === 'layers')
  app.get(
    '/img',
    signature(rules.signature),
    permissions(rules.permissions),
    imageParams(rules.imageParams),
    send,
  )
else if (variant === 'rules-handler') app.get('/img', requestRules(rules, send))
else app.get('/img', requestRules(rules), send)

const server = app.listen(0, '127.0.0.1', () => {
  const address = server.address()
  console.log(`listening ${typeof address === 'object' && address !== null ? address.port : 0}`)
})
process.on('SIGTERM', () => server.close(() => process.exit(0)))
