// Bench server: an Express 5 route that burns about `workMs` of CPU per request (standing in
// for chart rendering or image resizing), with or without loadShedding().
//   argv: <none|shed> [workMs = 4] [JSON tuning of the shed variant, e.g. '{"softThresholdRatio":0.5}']
import { createHash } from 'node:crypto'
import express from 'express'
import { createLoadSampler, errorHandler, loadShedding } from '../../src/express.ts'

const variant = process.argv[2] ?? 'none'
const workMs = Number(process.argv[3] ?? 4)
const app = express()

if (variant === 'shed') {
  // argv[4]: JSON overrides of the sampler interval and the shedding options, to compare settings.
  const { sampleIntervalMs = 20, ...tuning } = JSON.parse(process.argv[4] ?? '{}') as Record<string, number>
  const sampler = createLoadSampler({ sampleIntervalMs, resolutionMs: 1 })
  app.use(
    loadShedding({
      sampler,
      maxEventLoopDelayMs: workMs * 2,
      maxEventLoopUtilization: 0.9,
      softThresholdRatio: 0.6,
      ...tuning,
    }),
  )
}
app.get('/work', (_req, res) => {
  const until = performance.now() + workMs
  let digest = Buffer.alloc(32)
  while (performance.now() < until) digest = createHash('sha256').update(digest).digest()
  res.type('json').send(`{"digest":"${digest.toString('hex')}"}`)
})
app.use(errorHandler({ onError: () => {} }))

const server = app.listen(0, '127.0.0.1', () => {
  const address = server.address()
  console.log(`listening ${typeof address === 'object' && address !== null ? address.port : 0}`)
})
process.on('SIGTERM', () => server.close(() => process.exit(0)))
