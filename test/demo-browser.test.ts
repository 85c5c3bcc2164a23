import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { type BrowserContext, chromium, type Page } from 'playwright-core'
import { renderPage } from '../examples/demo/page.ts'
import { demoScenarios } from '../examples/demo/scenarios.ts'
import { type RunningDemo, startDemo } from '../examples/demo/server.ts'
import { createLoadSampler, type LoadSampler } from '../src/index.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]
const scenarios = demoScenarios({ account: 'demo', secret: 'demo-secret' })

interface TileState {
  id: string
  status: string | undefined
  code: string | undefined
  validation: string | undefined
  naturalWidth: number
}

async function servePage(html: string): Promise<{ url: string; server: Server }> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
    res.end(html)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, server }
}

/** What a page script sees in each tile (read in the page: the browser's view, not the server's). */
function tiles(page: Page): Promise<TileState[]> {
  return page.$$eval('.tile', (nodes) =>
    nodes.map((node) => {
      const el = node as unknown as {
        dataset: Record<string, string | undefined>
        querySelector(selector: 'img'): { naturalWidth: number } | null
      }
      return {
        id: el.dataset.id ?? '',
        status: el.dataset.status,
        code: el.dataset.code,
        validation: el.dataset.validation,
        naturalWidth: el.querySelector('img')?.naturalWidth ?? 0,
      }
    }),
  )
}

for (const framework of ['express', 'koa'] as const) {
  describe(`demo page in Chromium, API on another origin (${framework})`, () => {
    let demo: RunningDemo
    let pageServer: { url: string; server: Server }
    let context: BrowserContext
    let profile: string

    // The load the sampler reports is the test's to set: calm, until the overload tile's test.
    let eventLoopDelayMs = 0
    let sampler: LoadSampler
    before(async () => {
      sampler = createLoadSampler({
        source: () => ({ eventLoopDelayMs, eventLoopUtilization: 0, heapUsedBytes: 0, rssBytes: 0 }),
        sampleIntervalMs: 20,
        maxEventLoopDelayMs: 100,
      })
      demo = await startDemo({ port: 0, framework, timeoutMs: 2000, slowMs: 6000, sampler })
      pageServer = await servePage(renderPage({ apiBase: demo.url, scenarios, framework, account: 'demo' }))
      assert.notEqual(new URL(pageServer.url).origin, new URL(demo.url).origin)
      profile = mkdtempSync(join(tmpdir(), 'demo-chromium-'))
      context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        args: ARGS,
        headless: true,
        viewport: { width: 1280, height: 900 },
      })
    })
    after(async () => {
      await context?.close()
      rmSync(profile, { recursive: true, force: true })
      pageServer.server.closeAllConnections()
      pageServer.server.close()
      await demo.close()
      sampler.close()
    })

    test('every tile shows what the API sent, error headers readable by the page script', async () => {
      const page = await context.newPage()
      const pageErrors: Error[] = []
      page.on('pageerror', (err) => pageErrors.push(err))
      await page.goto(pageServer.url)
      await page.waitForFunction(
        `[...document.querySelectorAll('.tile[data-trigger="load"]')].every((t) => t.dataset.done === '1')`,
      )
      const seen = new Map((await tiles(page)).map((t) => [t.id, t]))
      for (const scenario of scenarios) {
        const tile = seen.get(scenario.id)
        assert.ok(tile, scenario.id)
        assert.equal(tile.status, String(scenario.status), scenario.id)
        if (scenario.status === 200) {
          assert.ok(tile.naturalWidth > 0, `${scenario.id} rendered`)
          assert.equal(tile.code, '')
        } else {
          assert.equal(tile.code, scenario.code, `${scenario.id}: x-ic-error-code readable cross-origin`)
        }
        if (scenario.validation !== undefined)
          assert.ok(tile.validation?.includes(scenario.validation), `${scenario.id}: ${tile.validation}`)
      }
      await page.screenshot({ path: join(tmpdir(), `demo-page-${framework}.png`), fullPage: true })
      assert.deepEqual(pageErrors, [])
      await page.close()
    })

    test('a request the page aborts is logged as 499 by the server', async () => {
      const page = await context.newPage()
      await page.goto(pageServer.url)
      await page.click('#fire-client-closed')
      await page.waitForSelector('[data-id="client-closed"][data-done="1"]')
      const tile = (await tiles(page)).find((t) => t.id === 'client-closed')
      assert.equal(tile?.status, '499')
      assert.equal(tile?.code, 'IC_CLIENT_CLOSED_REQUEST')
      await page.close()
    })

    test('the rate-limit tile: unsigned charts run into 429, Retry-After readable by the page', async () => {
      const page = await context.newPage()
      await page.goto(pageServer.url)
      await page.waitForFunction(
        `[...document.querySelectorAll('.tile[data-trigger="load"]')].every((t) => t.dataset.done === '1')`,
      )
      await page.click('#fire-rate-limit')
      await page.waitForSelector('[data-id="rate-limit"][data-done="1"]')
      const tile = (await tiles(page)).find((t) => t.id === 'rate-limit')
      assert.equal(tile?.status, '429')
      assert.equal(tile?.code, 'IC_RATE_LIMITED')
      const shown = await page.textContent('[data-id="rate-limit"] .received')
      assert.match(shown ?? '', /retry-after\d+/)
      assert.match(shown ?? '', /ratelimit/)
      await page.close()
    })

    test('a page loaded while its IP is over the unsigned-chart quota says so and asks again after Retry-After', async () => {
      const page = await context.newPage()
      await page.goto(pageServer.url)
      await page.waitForFunction(
        `[...document.querySelectorAll('.tile[data-trigger="load"]')].every((t) => t.dataset.done === '1')`,
      )
      // Refusals are sent no-store; a chart the page showed before may come from the browser's cache.
      const unsigned = scenarios.filter(
        (s) => s.kind === 'chart' && s.trigger === 'load' && s.status !== 200 && !s.path.includes('ichm'),
      )
      assert.ok(unsigned.length > 0)
      for (const scenario of unsigned) {
        const tile = `[data-id="${scenario.id}"]`
        assert.equal(
          await page.getAttribute(tile, 'data-status'),
          '429',
          `${scenario.id}: the previous test blocked this IP`,
        )
        assert.match(
          (await page.textContent(`${tile} .received`)) ?? '',
          /trying again in \d+ s/,
          scenario.id,
        )
      }
      const signed = scenarios.find((s) => s.id === 'chart-bar')
      assert.equal(
        await page.getAttribute(`[data-id="${signed?.id}"]`, 'data-status'),
        '200',
        'signed charts are not blocked',
      )
      await page.close()
    })

    test('the overload tile: 503 IC_OVERLOADED once the sampler reports overload', async () => {
      eventLoopDelayMs = 1000
      sampler.refresh()
      try {
        const page = await context.newPage()
        await page.goto(pageServer.url)
        await page.click('#fire-overload')
        await page.waitForSelector('[data-id="overloaded"][data-done="1"]')
        const tile = (await tiles(page)).find((t) => t.id === 'overloaded')
        assert.equal(tile?.status, '503')
        assert.equal(tile?.code, 'IC_OVERLOADED')
        await page.screenshot({ path: join(tmpdir(), `demo-page-${framework}-after.png`), fullPage: true })
        await page.close()
      } finally {
        eventLoopDelayMs = 0
        sampler.refresh()
      }
    })

    test('without CORS exposure the code would be invisible: a response with no Allow-Origin is unreadable', async () => {
      const page = await context.newPage()
      await page.goto(pageServer.url)
      const outcome = await page.evaluate(async (backend) => {
        try {
          await fetch(`${backend}/status/404`)
          return 'read'
        } catch (err) {
          return (err as Error).name
        }
      }, demo.backendUrl)
      assert.equal(outcome, 'TypeError')
      await page.close()
    })
  })
}
