// What a page script on another origin can read of an error response, in a real Chromium: the
// browser, not the server, decides which headers are exposed.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { type Browser, chromium, type Page } from 'playwright-core'
import { icError } from '../src/index.ts'
import { frameworks, type RunningApp, startApp } from './support/harness.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

interface Seen {
  status: number
  code: string | null
  retryAfter: string | null
  requestId: string | null
}

describe('credentialed CORS with Access-Control-Expose-Headers: * in Chromium', () => {
  let browser: Browser
  let pageServer: Server
  let pageUrl: string
  before(async () => {
    pageServer = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
      res.end('<!doctype html><title>page</title>')
    })
    pageServer.listen(0, '127.0.0.1')
    await once(pageServer, 'listening')
    pageUrl = `http://127.0.0.1:${(pageServer.address() as AddressInfo).port}/`
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
      headless: true,
    })
  })
  after(async () => {
    await browser?.close()
    pageServer.closeAllConnections()
    pageServer.close()
  })

  async function fetchFrom(page: Page, url: string, credentials: 'include' | 'omit'): Promise<Seen> {
    return page.evaluate(
      async ([target, mode]) => {
        const r = await fetch(target as string, { credentials: mode as 'include' | 'omit' })
        return {
          status: r.status,
          code: r.headers.get('x-ic-error-code'),
          retryAfter: r.headers.get('retry-after'),
          requestId: r.headers.get('x-request-id'),
        }
      },
      [url, credentials],
    )
  }

  for (const framework of frameworks) {
    test(`${framework}: the page reads x-ic-error-code, Retry-After and x-request-id, with and without credentials`, async () => {
      const app: RunningApp = await startApp(framework, {
        routes: [
          {
            path: '/chart',
            // What cors({ origin: true, credentials: true, exposedHeaders: '*' }) sets.
            handle: ({ req, res }) => {
              res.setHeader('access-control-allow-origin', req.headers.origin ?? '*')
              res.setHeader('access-control-allow-credentials', 'true')
              res.setHeader('access-control-expose-headers', '*')
              res.setHeader('vary', 'Origin')
              throw icError('IC_RATE_LIMITED', { retryAfterSeconds: 7 })
            },
          },
        ],
      })
      const page = await browser.newPage()
      try {
        await page.goto(pageUrl)
        assert.notEqual(new URL(page.url()).origin, new URL(app.url).origin)
        for (const credentials of ['include', 'omit'] as const) {
          const seen = await fetchFrom(page, `${app.url}/chart`, credentials)
          assert.deepEqual(
            { ...seen, requestId: seen.requestId !== null },
            { status: 429, code: 'IC_RATE_LIMITED', retryAfter: '7', requestId: true },
            `credentials: ${credentials}`,
          )
        }
        assert.deepEqual(
          app.reports.map((r) => r.code),
          ['IC_RATE_LIMITED', 'IC_RATE_LIMITED'],
        )
      } finally {
        await page.close()
        await app.close()
      }
    })
  }
})
