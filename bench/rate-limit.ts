// Throughput cost of rateLimit() with the memory store against bare Express 5 (the goal:
// ≥ 0.95, where express-rate-limit measured 0.76 on this machine), and of the Redis store
// against the memory store (one EVALSHA round trip per request to a local redis-server).
import { RedisServer } from '../test/support/redis-server.ts'
import { printComparisons, runAbba } from './lib/abba.ts'

const script = 'bench/servers/rate-limit.ts'
const path = '/img?w=100&h=100&q=80'
const memory = await runAbba({
  baseline: { name: '(a) express 5, bare', script, args: ['bare'], path },
  candidates: [{ name: '(b) + rateLimit(), memory store', script, args: ['memory'], path }],
})
printComparisons('rateLimit() with the memory store vs bare Express 5', memory)

const redis = await RedisServer.start()
try {
  const results = await runAbba({
    baseline: { name: '(b) rateLimit(), memory store', script, args: ['memory'], path },
    candidates: [{ name: '(c) rateLimit(), Redis store', script, args: ['redis', redis.url], path }],
  })
  printComparisons('rateLimit(): Redis store vs memory store', results)
} finally {
  await redis.stop()
}
