// Throughput of a failing Express 5 route answered by errorHandler(), against the same
// route answering 200, and against Express's default error handling of the same failure.
import { printComparisons, runAbba } from './lib/abba.ts'

process.env.NODE_ENV = 'production'
const script = 'bench/servers/express-error.ts'
const path = '/img?w=100&h=100&q=80'
const results = await runAbba({
  baseline: { name: '(a) express 5, 200', script, args: ['ok'], path },
  candidates: [
    { name: '(b) same route failing → errorHandler()', script, args: ['fail-ours'], path },
    {
      name: '(c) same route failing → Express default handler',
      script,
      args: ['fail-default'],
      path,
      quiet: true,
    },
  ],
})
printComparisons('errorHandler(): failing route vs bare Express 5 route', results)
