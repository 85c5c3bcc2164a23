import assert from 'node:assert/strict'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { after, before, describe, it } from 'node:test'
import express5 from 'express'
import fc from 'fast-check'
import imageChartsModule from 'image-charts'
import sharp from 'sharp'
import request from 'supertest'
import { errorHandler, upload } from '../src/express.ts'
import { imageChartsFeatures, type RequestRulesOptions, signQuery } from '../src/index.ts'
import { frameworks, type RouteContext, type RunningApp, startApp } from './support/harness.ts'

// The client is CommonJS (`module.exports = ImageCharts`) while its types declare a default export.
const ImageCharts = imageChartsModule as unknown as typeof imageChartsModule.default
const hosts = JSON.parse(
  readFileSync(new URL('../../shared/vectors/hosts.json', import.meta.url), 'utf8'),
) as {
  allowed: string[]
}
const signatures = JSON.parse(
  readFileSync(new URL('../../shared/vectors/signatures.json', import.meta.url), 'utf8'),
) as {
  valid: { secret: string; url: string }[]
  invalid: { secret: string; url: string; why: string }[]
}

const UPLOAD_TOKEN = 'upl0ad-t0ken'
const MAX_UPLOAD = 64 * 1024
const accounts = { test_fixture: 'plop', demo: 'demo-secret', acme: ['rotated-in', 's3cr3t'] }
const keys = {
  'reader-key': { id: 'reader', scopes: ['images:read'] },
  'admin-key': { id: 'admin', scopes: ['images:read', 'admin'] },
}

const imageRules: RequestRulesOptions = {
  permissions: {
    hostsAllowed: hosts.allowed,
    bucketsAllowed: ['photos'],
    allowOriginalImageRequest: false,
  },
  imageParams: {
    imageParamsAllowed: ['width', 'height', 'dpr', 'quality', 'crop', 'pad_color', 'format', 'blur'],
    maxWidth: 4000,
  },
}

function echo({ locals }: RouteContext) {
  const account = locals.account as { id: string; features: Set<string> } | undefined
  const apiKey = locals.apiKey as { id: string } | undefined
  const upload = locals.upload as { body: Buffer; type: string } | undefined
  return {
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      imageParams: locals.imageParams,
      source: locals.source,
      account: account && { id: account.id, features: [...account.features] },
      apiKey: apiKey?.id,
      upload: upload && { type: upload.type, bytes: upload.body.length },
    }),
  }
}

const chartsFeatures = { ...imageChartsFeatures }
/** The ids a lookup-backed signature inside `requestRules()` was asked for; it throws on NUL, as Postgres does. */
const askedAccounts: string[] = []
async function findAccount(id: string) {
  askedAccounts.push(id)
  if (id.includes('\0')) throw new Error('invalid byte sequence for encoding "UTF8": 0x00')
  return (accounts as Record<string, string | string[]>)[id]
}
function chartUrl(secret: string, account: string): string {
  const url = new URL(
    new ImageCharts({ secret })
      .cht('bvs')
      .chd('a:10,20.5|5,6')
      .chs('700x300')
      .chtt('Ventes été + 10% & more')
      .icac(account)
      .toURL(),
  )
  return `/chart${url.search}`
}

async function png(): Promise<Buffer> {
  return sharp({ create: { width: 16, height: 16, channels: 4, background: '#36c' } })
    .png()
    .toBuffer()
}

/** A raw POST whose body is written by `write`; resolves with the response once it arrives. */
function post(
  app: RunningApp,
  path: string,
  headers: Record<string, string>,
  write: (req: ReturnType<typeof httpRequest>) => void,
) {
  return new Promise<{ res: IncomingMessage; body: string; sent: number }>((resolve, reject) => {
    const req = httpRequest(`${app.url}${path}`, { method: 'POST', headers })
    let sent = 0
    const originalWrite = req.write.bind(req)
    req.write = ((chunk: Buffer, ...rest: never[]) => {
      sent += chunk.length
      return originalWrite(chunk, ...rest)
    }) as typeof req.write
    req.on('error', () => {})
    req.on('response', async (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        body += chunk
      })
      res.on('error', reject)
      await once(res, 'end').catch(reject)
      req.destroy()
      resolve({ res, body, sent })
    })
    write(req)
  })
}

for (const framework of frameworks) {
  describe(`request rules on ${framework}`, () => {
    let app: RunningApp
    let image: Buffer
    before(async () => {
      image = await png()
      app = await startApp(framework, {
        routes: [
          { path: '/img', use: (a) => [a.requestRules(imageRules)], handle: echo },
          {
            path: '/chart',
            use: (a) => [
              a.signature({ accounts, features: chartsFeatures, plans: { pro: ['retina'] } }),
              a.imageParams({
                builtInParams: false,
                params: {
                  cht: { type: 'pattern', pattern: /^[a-z0-9]{1,5}$/, required: true },
                  chs: { type: 'size', required: true, maxWidth: 999, maxHeight: 999, maxPixels: 998_001 },
                },
              }),
            ],
            handle: echo,
          },
          {
            path: '/pro-chart',
            use: (a) => [
              a.signature({
                accounts: { acme: { secrets: ['s3cr3t'], plan: 'pro' }, basic: 'b' },
                lookup: async (id) =>
                  id === 'db-account' ? { secrets: ['from-db'], features: ['retina'] } : undefined,
                features: chartsFeatures,
                plans: { pro: ['retina'] },
                required: true,
              }),
            ],
            handle: echo,
          },
          { path: '/perm', use: (a) => [a.permissions({ allowDynamicOrigin: false })], handle: echo },
          {
            path: '/gated',
            use: (a) => [
              a.requestRules({
                signature: { accounts, features: imageChartsFeatures },
                permissions: { allowDynamicOrigin: false },
                imageParams: { maxWidth: 4000 },
              }),
            ],
            handle: echo,
          },
          {
            path: '/keyed',
            use: (a) => [a.apiKey({ keys, query: 'key', scopes: ['images:read'] })],
            handle: echo,
          },
          { path: '/admin', use: (a) => [a.apiKey({ keys, scopes: ['admin'] })], handle: echo },
          {
            path: '/all',
            use: (a) => [
              a.requestRules({
                apiKey: {
                  keys,
                  lookup: async (key) =>
                    key === 'db-key' ? { id: 'db', scopes: ['images:read'] } : undefined,
                },
                signature: { accounts },
                permissions: { allowDynamicOrigin: false },
                imageParams: {},
              }),
            ],
            handle: echo,
          },
          {
            method: 'POST',
            path: '/upload/a.png',
            use: (a) => [a.upload({ enabled: true, tokens: [UPLOAD_TOKEN], maxBytes: MAX_UPLOAD })],
            handle: echo,
          },
          {
            method: 'POST',
            path: '/upload-db/a.png',
            use: (a) => [
              a.upload({
                enabled: true,
                verifyToken: async (token) => token === 'db-token',
                maxBytes: MAX_UPLOAD,
              }),
            ],
            handle: echo,
          },
          {
            method: 'POST',
            path: '/upload-slow/a.png',
            use: (a) => [
              a.upload({
                enabled: true,
                verifyToken: async (token) => {
                  await new Promise((resolve) => setTimeout(resolve, 150))
                  return token === 'db-token'
                },
                maxBytes: MAX_UPLOAD,
              }),
            ],
            handle: echo,
          },
          { method: 'POST', path: '/upload-off/a.png', use: (a) => [a.upload({})], handle: echo },
          {
            path: '/rules-db',
            use: (a) => [
              a.requestRules({
                signature: { lookup: findAccount },
                permissions: { allowDynamicOrigin: false },
                imageParams: {},
              }),
            ],
            handle: echo,
          },
        ],
      })
    })
    after(() => app.close())

    const table: [string, Record<string, string>, number, string | undefined][] = [
      ['/img?width=300&crop=fit', {}, 200, undefined],
      ['/img?width=300&origin=https://a.cdn.example.net/x.jpg', {}, 200, undefined],
      ['/img?width=300&origin=https://images.example.com@evil.net/x.jpg', {}, 400, 'IS_VALIDATION_ERROR'],
      ['/img?width=300&origin=https://evil.net%5C@images.example.com/x.jpg', {}, 401, 'IC_HOST_NOT_ALLOWED'],
      ['/img?width=300&hostname=cdn.example.net', {}, 401, 'IC_HOST_NOT_ALLOWED'],
      ['/img?width=300&bucket=secrets', {}, 401, 'IC_BUCKET_NOT_ALLOWED'],
      ['/img?width=300&origin=data:image/png;base64,AAAA', {}, 401, 'IC_DATA_URL_NOT_ALLOWED'],
      ['/img', {}, 401, 'IC_ORIGINAL_IMAGE_NOT_ALLOWED'],
      ['/img?width=300&sepia=1', {}, 401, 'IC_PARAM_NOT_ALLOWED'],
      ['/img?width=5000&height=-1&crop=zoom', {}, 400, 'IS_VALIDATION_ERROR'],
      ['/img?width=1&width=2', {}, 400, 'IS_VALIDATION_ERROR'],
      ['/img?width=%E0%A4%A', {}, 400, 'IS_VALIDATION_ERROR'],
      ['/all?width=10', { 'x-api-key': 'reader-key' }, 200, undefined],
      ['/all?width=10', { 'x-api-key': 'db-key' }, 200, undefined],
      ['/all?width=10', {}, 401, 'IC_API_KEY_MISSING'],
      ['/all?width=10&origin=a.com', { 'x-api-key': 'reader-key' }, 401, 'IC_DYNAMIC_ORIGIN_DISABLED'],
      ['/all?width=10&icac=acme', { 'x-api-key': 'reader-key' }, 400, 'IC_MISSING_ENT_PARAMETER'],
      ['/all?width=abc', { 'x-api-key': 'reader-key' }, 400, 'IS_VALIDATION_ERROR'],
      ['/perm?width=1', {}, 200, undefined],
      // A second `?`: Koa 3's ctx.query (URLSearchParams) drops it and reads `origin`, `icretina`.
      ['/perm??origin=https://evil.net/a.jpg', {}, 401, 'IC_DYNAMIC_ORIGIN_DISABLED'],
      ['/img??origin=https://evil.net/a.jpg&width=100', {}, 401, 'IC_HOST_NOT_ALLOWED'],
      ['/chart??icretina=2&cht=p&chs=100x100', {}, 403, 'IC_RETINA_ERROR'],
      // qs reads `icac[]=a&icac=b` as an icac of two values.
      ['/all?width=10&icac%5B%5D=acme', { 'x-api-key': 'reader-key' }, 400, 'IS_VALIDATION_ERROR'],
      ['/all?width=10&icac=acme&ichm[]=x', { 'x-api-key': 'reader-key' }, 400, 'IS_VALIDATION_ERROR'],
      ['/perm?bucket64=cGhvdG9z', {}, 401, 'IC_DYNAMIC_ORIGIN_DISABLED'],
      ['/keyed', { 'x-api-key': 'reader-key' }, 200, undefined],
      ['/keyed?key=reader-key', {}, 200, undefined],
      ['/keyed', {}, 401, 'IC_API_KEY_MISSING'],
      ['/keyed', { 'x-api-key': 'nope' }, 401, 'IC_API_KEY_INVALID'],
      ['/admin', { 'x-api-key': 'reader-key' }, 403, 'IC_API_KEY_FORBIDDEN'],
      ['/admin', { 'x-api-key': 'admin-key' }, 200, undefined],
      ['/chart?cht=p&chs=100x100', {}, 200, undefined],
      ['/chart?cht=p&chs=100x100&icretina=2', {}, 403, 'IC_RETINA_ERROR'],
      ['/chart?cht=p&chs=1000x1000', {}, 400, 'IS_VALIDATION_ERROR'],
      ['/chart?cht=p&chs=100x100&icac=acme', {}, 400, 'IC_MISSING_ENT_PARAMETER'],
      [`/chart?${signQuery('cht=p&chs=100x100&icac=nobody', 'x')}`, {}, 401, 'IC_ACCOUNT_ID_NOT_FOUND'],
      [`/chart?${signQuery('cht=p&chs=100x100&icac=acme', 'wrong')}`, {}, 401, 'IC_INVALID_SIGNATURE'],
      [`/chart?${signQuery('cht=p&chs=100x100&icac=acme', 'rotated-in')}`, {}, 200, undefined],
      ['/pro-chart?cht=p', {}, 400, 'IC_MISSING_ENT_PARAMETER'],
      [`/pro-chart?${signQuery('cht=p&icretina=2&icac=acme', 's3cr3t')}`, {}, 200, undefined],
      [`/pro-chart?${signQuery('cht=p&icretina=2&icac=basic', 'b')}`, {}, 403, 'IC_RETINA_ERROR'],
      [`/pro-chart?${signQuery('cht=p&icretina=2&icac=db-account', 'from-db')}`, {}, 200, undefined],
      [`/pro-chart?${signQuery('cht=p&icac=db-nobody', 'from-db')}`, {}, 401, 'IC_ACCOUNT_ID_NOT_FOUND'],
    ]
    for (const [path, headers, status, code] of table) {
      it(`GET ${path.length > 90 ? `${path.slice(0, 90)}…` : path} ${JSON.stringify(headers)} → ${status} ${code ?? ''}`, async () => {
        const r = await request(app.url).get(path).set(headers)
        assert.equal(r.status, status, r.text)
        assert.equal(r.headers['x-ic-error-code'], code)
        if (code !== undefined) {
          const items = JSON.parse(r.headers['x-ic-error-validation'] ?? '[{"message":"none"}]') as {
            message: string
          }[]
          assert.ok(items.every((i) => typeof i.message === 'string'))
        }
      })
    }

    it('asks the signature lookup for well-formed icac and ichm only: 401 for the others, not 500', async () => {
      askedAccounts.length = 0
      const hex = 'a'.repeat(64)
      const refused: [string, string][] = [
        [`icac=%00&ichm=${hex}`, 'IC_ACCOUNT_ID_NOT_FOUND'],
        [`icac=${'x'.repeat(8000)}&ichm=${hex}`, 'IC_ACCOUNT_ID_NOT_FOUND'],
        [`icac=%0D%0A&ichm=${hex}`, 'IC_ACCOUNT_ID_NOT_FOUND'],
        ['icac=test_fixture&ichm=71bd93', 'IC_INVALID_SIGNATURE'],
        [`icac=test_fixture&ichm=${hex.toUpperCase()}`, 'IC_INVALID_SIGNATURE'],
      ]
      for (const [query, code] of refused) {
        const r = await request(app.url).get(`/rules-db?width=10&${query}`)
        assert.equal(r.status, 401, query)
        assert.equal(r.headers['x-ic-error-code'], code, query)
      }
      assert.deepEqual(askedAccounts, [])
      for (const v of signatures.valid) {
        const r = await request(app.url).get(v.url.replace('/chart', '/rules-db'))
        assert.equal(r.status, 200, v.url)
      }
      assert.deepEqual(askedAccounts, ['test_fixture', 'demo', 'acme', 'acme'])
    })

    it('publishes typed values and the source to the handler', async () => {
      const r = await request(app.url).get(
        `/img?width=300&dpr=2&pad_color=FFF&origin64=${Buffer.from('https://X.cdn.example.net/a.jpg').toString('base64url')}`,
      )
      assert.equal(r.status, 200)
      assert.deepEqual(JSON.parse(r.text), {
        imageParams: { width: 300, dpr: 2, pad_color: 'ffffff' },
        source: {
          kind: 'url',
          param: 'origin',
          url: 'https://x.cdn.example.net/a.jpg',
          host: 'x.cdn.example.net',
        },
      })
    })

    it('reports every validation failure of a request at once, Joi-style', async () => {
      const r = await request(app.url).get('/img?width=5000&height=-1&crop=zoom&quality=101')
      assert.equal(r.status, 400)
      assert.deepEqual(JSON.parse(r.headers['x-ic-error-validation'] as string), [
        { message: '"width" must be less than or equal to 4000', path: ['width'], type: 'number.max' },
        { message: '"height" must be greater than or equal to 1', path: ['height'], type: 'number.min' },
        {
          message: '"crop" must be one of [fit, top, bottom, pad, face, entropy]',
          path: ['crop'],
          type: 'any.only',
        },
        { message: '"quality" must be less than or equal to 100', path: ['quality'], type: 'number.max' },
      ])
    })

    it("lists the permission rules' 400s with the parameters' in one answer", async () => {
      const cases: [string, string[]][] = [
        [
          'hostname=&width=abc&quality=0',
          ['hostname:string.hostname', 'width:number.base', 'quality:number.min'],
        ],
        ['bucket=a..b&width=99999&crop=zoom', ['bucket:string.bucket', 'width:number.max', 'crop:any.only']],
        [
          'origin=https://a.cdn.example.net/x&bucket=photos&width=0',
          ['bucket:object.oxor', 'width:number.min'],
        ],
        // One item per parameter and problem, however often the query sends it.
        ['hostname=&width=%ZZ&width=%ZZ', ['hostname:string.hostname', 'width:query.encoding']],
      ]
      for (const [query, expected] of cases) {
        const r = await request(app.url).get(`/img?${query}`)
        assert.equal(r.status, 400, r.text)
        assert.equal(r.headers['x-ic-error-code'], 'IS_VALIDATION_ERROR')
        assert.deepEqual(
          JSON.parse(r.headers['x-ic-error-validation'] as string).map(
            (i: { path: string[]; type: string }) => `${i.path[0]}:${i.type}`,
          ),
          expected,
          query,
        )
      }
    })

    it('keeps the permission 401s ahead of the repetitions a gated signature finds in names with brackets, and lists those with every 400', async () => {
      const metadata = encodeURIComponent('http://169.254.169.254/')
      for (const query of [
        `origin[]=${metadata}&origin=${metadata}`,
        `width[]=1&width=2&origin=${metadata}`,
      ]) {
        const r = await request(app.url).get(`/gated?${query}`)
        assert.equal(r.status, 401, `${query}: ${r.text}`)
        assert.equal(r.headers['x-ic-error-code'], 'IC_DYNAMIC_ORIGIN_DISABLED', query)
      }
      const listed = async (query: string) => {
        const r = await request(app.url).get(`/gated?${query}`)
        assert.equal(r.status, 400, `${query}: ${r.text}`)
        return JSON.parse(r.headers['x-ic-error-validation'] as string).map(
          (i: { path: string[]; type: string }) => `${i.path[0]}:${i.type}`,
        )
      }
      // With brackets as without: the repetition, then the other failures.
      assert.deepEqual(await listed('width[]=1&width=2&quality=0'), [
        'width:query.repeated',
        'quality:number.min',
      ])
      assert.deepEqual(await listed('width=1&width=2&quality=0'), [
        'width:query.repeated',
        'quality:number.min',
      ])
      // A name no rule judges is still refused when sent with brackets beside its plain form.
      assert.deepEqual(await listed('tags[]=1&tags=2&width=1'), ['tags:query.repeated'])
    })

    it("reports a repeated parameter with the query's other failures, and caps the output side dpr makes", async () => {
      const r = await request(app.url).get('/img?width=abc&crop=fit&crop=top&origin=a.cdn.example.net')
      assert.equal(r.status, 400)
      assert.deepEqual(
        JSON.parse(r.headers['x-ic-error-validation'] as string).map((i: { type: string }) => i.type),
        ['query.repeated', 'number.base'],
      )
      const wide = await request(app.url).get('/img?width=3000&dpr=2')
      assert.equal(wide.status, 400)
      assert.equal(JSON.parse(wide.headers['x-ic-error-validation'] as string)[0].type, 'output.width')
      const bucket = await request(app.url).get('/img?width=1&bucket=photos&region=evil.net%2F')
      assert.equal(bucket.status, 400)
      assert.equal(JSON.parse(bucket.headers['x-ic-error-validation'] as string)[0].type, 'string.region')
    })

    it('names the parameter that is not allowed', async () => {
      const r = await request(app.url).get('/img?width=1&sepia=1&vignette64=MQ')
      assert.equal(r.status, 401)
      assert.deepEqual(
        JSON.parse(r.headers['x-ic-error-validation'] as string).map((i: { path: string[] }) => i.path[0]),
        ['sepia', 'vignette'],
      )
    })

    it('verifies every valid signature vector and refuses every tampered one', async () => {
      for (const v of signatures.valid) {
        const r = await request(app.url).get(v.url.replace('/chart', '/all')).set('x-api-key', 'reader-key')
        assert.equal(r.status, 200, `${v.url}: ${r.text}`)
      }
      for (const v of signatures.invalid) {
        const r = await request(app.url).get(v.url.replace('/chart', '/all')).set('x-api-key', 'reader-key')
        assert.ok(r.status === 401 || r.status === 400, `${v.why}: ${r.status}`)
      }
    })

    it('verifies URLs signed by the official image-charts client and publishes the account', async () => {
      const r = await request(app.url).get(chartUrl('s3cr3t', 'acme'))
      assert.equal(r.status, 200, r.text)
      assert.deepEqual(JSON.parse(r.text).account, { id: 'acme', features: [] })
      const forged = chartUrl('not-the-secret', 'acme')
      assert.equal((await request(app.url).get(forged)).headers['x-ic-error-code'], 'IC_INVALID_SIGNATURE')
    })

    const authorisedUpload = () =>
      request(app.url).post('/upload/a.png').set('authorization', `Bearer ${UPLOAD_TOKEN}`)
    const assertStoredImage = (r: { status: number; text: string }) => {
      assert.equal(r.status, 200, r.text)
      assert.deepEqual(JSON.parse(r.text).upload, { type: 'png', bytes: image.length })
    }

    it('accepts an image upload and publishes its bytes and type', async () => {
      assertStoredImage(await authorisedUpload().set('content-type', 'application/octet-stream').send(image))
    })

    it('takes the file part of a multipart upload', async () => {
      assertStoredImage(await authorisedUpload().field('title', 'x').attach('file', image, 'a.png'))
      // Parameters may be unquoted; a quoted `; name="file"` inside another part's file name is not its name.
      const body = Buffer.concat([
        Buffer.from(
          '--XyZ\r\nContent-Disposition: form-data; name=pic; filename="a; name=\\"file\\".txt"\r\n\r\nnot an image\r\n',
        ),
        Buffer.from('--XyZ\r\nContent-Disposition: form-data; name=file\r\nContent-Type: image/png\r\n\r\n'),
        image,
        Buffer.from('\r\n--XyZ--\r\n'),
      ])
      assertStoredImage(
        await authorisedUpload().set('content-type', 'multipart/form-data; boundary=XyZ').send(body),
      )
    })

    it('refuses uploads that are disabled, unauthorised or not images', async () => {
      const off = await request(app.url)
        .post('/upload-off/a.png')
        .set('authorization', `Bearer ${UPLOAD_TOKEN}`)
        .send(image)
      assert.deepEqual([off.status, off.headers['x-ic-error-code']], [403, 'IC_UPLOAD_DISABLED'])
      const none = await request(app.url).post('/upload/a.png').send(image)
      assert.deepEqual([none.status, none.headers['x-ic-error-code']], [401, 'IC_UPLOAD_UNAUTHORIZED'])
      const wrong = await request(app.url)
        .post('/upload/a.png')
        .set('authorization', 'Bearer nope')
        .send(image)
      assert.deepEqual([wrong.status, wrong.headers['x-ic-error-code']], [401, 'IC_UPLOAD_UNAUTHORIZED'])
      const html = await request(app.url)
        .post('/upload/a.png')
        .set('authorization', `Bearer ${UPLOAD_TOKEN}`)
        .set('content-type', 'image/png')
        .send('<html>not an image</html>')
      assert.deepEqual([html.status, html.headers['x-ic-error-code']], [400, 'IC_UPLOAD_NOT_AN_IMAGE'])
      const db = await request(app.url)
        .post('/upload-db/a.png')
        .set('authorization', 'Bearer db-token')
        .send(image)
      assert.equal(db.status, 200)
      const dbWrong = await request(app.url)
        .post('/upload-db/a.png')
        .set('authorization', 'Bearer other')
        .send(image)
      assert.equal(dbWrong.headers['x-ic-error-code'], 'IC_UPLOAD_UNAUTHORIZED')
    })

    it('refuses a declared Content-Length over the cap before any byte of the body is sent', async () => {
      const { res, sent } = await post(
        app,
        '/upload/a.png',
        { authorization: `Bearer ${UPLOAD_TOKEN}`, 'content-length': String(MAX_UPLOAD + 1) },
        (req) => req.flushHeaders(),
      )
      assert.equal(res.statusCode, 413)
      assert.equal(res.headers['x-ic-error-code'], 'IC_UPLOAD_TOO_LARGE')
      assert.equal(sent, 0)
    })

    it('caps a chunked upload while it streams: 413 before the client has finished sending', async () => {
      const chunk = Buffer.alloc(16 * 1024, 0xff)
      const { res, body } = await post(
        app,
        '/upload/a.png',
        {
          authorization: `Bearer ${UPLOAD_TOKEN}`,
          'transfer-encoding': 'chunked',
          accept: 'application/json',
        },
        (req) => {
          // Write more than the cap and never end the request: only a streaming cap can answer.
          for (let i = 0; i <= MAX_UPLOAD / chunk.length; i++) req.write(chunk)
        },
      )
      assert.equal(res.statusCode, 413)
      assert.equal(res.headers['x-ic-error-code'], 'IC_UPLOAD_TOO_LARGE')
      assert.equal(res.headers.connection, 'close')
      assert.equal(JSON.parse(body).code, 'IC_UPLOAD_TOO_LARGE')
    })

    it('records 499 when the client goes away in the middle of an upload', async () => {
      const received = once(app.server, 'request') as Promise<[IncomingMessage]>
      const req = httpRequest(`${app.url}/upload/a.png`, {
        method: 'POST',
        headers: { authorization: `Bearer ${UPLOAD_TOKEN}`, 'content-length': '1000' },
      })
      req.on('error', () => {})
      req.write(Buffer.alloc(100))
      const [serverRequest] = await received
      req.destroy()
      await new Promise((resolve) => serverRequest.on('close', resolve))
      // The refusal travels through a few promise turns after 'close'; no event marks its end.
      const closed = () => app.reports.find((r) => r.code === 'IC_CLIENT_CLOSED_REQUEST')
      for (let i = 0; i < 100 && closed() === undefined; i++)
        await new Promise((resolve) => setImmediate(resolve))
      const report = closed()
      assert.ok(report, JSON.stringify(app.reports.map((r) => r.code)))
      assert.equal(report.status, 499)
      assert.equal(report.outcome, 'client-gone')
    })

    it('records 499 when the client goes away while its token is being checked', async () => {
      const before = app.reports.length
      const received = once(app.server, 'request') as Promise<[IncomingMessage]>
      const req = httpRequest(`${app.url}/upload-slow/a.png`, {
        method: 'POST',
        headers: { authorization: 'Bearer db-token', 'content-length': '1000' },
      })
      req.on('error', () => {})
      req.write(Buffer.alloc(100))
      const [serverRequest] = await received
      req.destroy()
      await new Promise((resolve) => serverRequest.on('close', resolve))
      // The body is read only after verifyToken() settles (150 ms): the stream is gone by then.
      const closed = () => app.reports.slice(before).find((r) => r.code === 'IC_CLIENT_CLOSED_REQUEST')
      for (let i = 0; i < 60 && closed() === undefined; i++)
        await new Promise((resolve) => setTimeout(resolve, 10))
      const report = closed()
      assert.ok(report, JSON.stringify(app.reports.slice(before).map((r) => r.code)))
      assert.equal(report.status, 499)
    })

    it('closes the connection after refusing an upload whose body is on its way', async () => {
      const chunk = Buffer.alloc(16 * 1024, 0xff)
      for (const [path, authorization, code] of [
        ['/upload/a.png', '', 'IC_UPLOAD_UNAUTHORIZED'],
        ['/upload/a.png', 'Bearer wrong', 'IC_UPLOAD_UNAUTHORIZED'],
        ['/upload-db/a.png', 'Bearer wrong', 'IC_UPLOAD_UNAUTHORIZED'],
        ['/upload-off/a.png', `Bearer ${UPLOAD_TOKEN}`, 'IC_UPLOAD_DISABLED'],
      ] as const) {
        const { res } = await post(
          app,
          path,
          { authorization, 'transfer-encoding': 'chunked', accept: 'application/json' },
          // Never ended: kept alive, the server would read whatever the client sends.
          (req) => req.write(chunk),
        )
        assert.equal(res.headers['x-ic-error-code'], code, path)
        assert.equal(res.headers.connection, 'close', `${path} ${authorization}`)
      }
    })

    it('never answers 500 to arbitrary Authorization headers and bodies on the upload route', async () => {
      const printable = fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c))
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(fc.string({ unit: printable, maxLength: 60 }), fc.constant(`Bearer ${UPLOAD_TOKEN}`)),
          fc.uint8Array({ maxLength: 64 }),
          async (authorization, bytes) => {
            const r = await request(app.url)
              .post('/upload/a.png')
              .set('authorization', authorization)
              .set('content-type', 'application/octet-stream')
              .send(Buffer.from(bytes))
            // Random bytes are almost never an image; when they are (a BMP header, say), 200 is right.
            assert.ok(r.status < 500, `${JSON.stringify(authorization)} → ${r.status} ${r.text}`)
            if (r.status >= 400)
              assert.match(r.headers['x-ic-error-code'] ?? '', /^IC_UPLOAD_(UNAUTHORIZED|NOT_AN_IMAGE)$/)
          },
        ),
        { numRuns: 60 },
      )
    })

    it('never answers 500 to arbitrary query strings and header values', async () => {
      const char = fc.oneof(
        fc.constantFrom(
          '&',
          '=',
          '%',
          '+',
          '64',
          'width',
          'origin',
          'icac',
          'ichm',
          'key',
          'chs',
          'x',
          '%E0',
          '%2',
          '%00',
        ),
        fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)),
        fc
          .integer({ min: 0x80, max: 0x10ffff })
          .map((c) => encodeURIComponent(String.fromCodePoint(c).toWellFormed())),
      )
      const headerValue = fc.string({
        unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
        maxLength: 40,
      })
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom('/img', '/all', '/chart', '/keyed', '/pro-chart'),
          fc.array(char, { maxLength: 30 }),
          headerValue,
          async (path, parts, key) => {
            const query = parts.join('').replaceAll('#', '%23')
            const r = await request(app.url).get(`${path}?${query}`).set('x-api-key', key)
            assert.ok(r.status < 500, `${path}?${query} (${key}) → ${r.status} ${r.text}`)
            if (r.status >= 400) assert.ok(r.headers['x-ic-error-code'])
          },
        ),
        { numRuns: 150 },
      )
      assert.equal(app.reports.filter((report) => report.status >= 500).length, 0)
    })
  })
}

describe('upload() after a body parser (Express 5, real server)', () => {
  // A 400, not a 500: with express.json() app-wide, any client sending JSON to the upload
  // route chose to have its body read first. The message (and a one-time process warning)
  // tells the developer where upload() belongs.
  it('answers 400 IC_UPLOAD_NOT_AN_IMAGE at once, naming the mounting order, instead of leaving the request hanging', async () => {
    const app = express5()
    app.post(
      '/u',
      express5.raw({ type: '*/*' }),
      upload({ enabled: true, tokens: [UPLOAD_TOKEN] }),
      (_req, res) => {
        res.status(201).end()
      },
    )
    app.use(errorHandler())
    const r = await request(app)
      .post('/u')
      .set('authorization', `Bearer ${UPLOAD_TOKEN}`)
      .set('content-type', 'application/octet-stream')
      .set('accept', 'application/json')
      .send(Buffer.alloc(10))
      .timeout(5000)
    assert.equal(r.status, 400)
    assert.equal(r.headers['x-ic-error-code'], 'IC_UPLOAD_NOT_AN_IMAGE')
    assert.match(JSON.parse(r.text).detail, /mount upload\(\) before any body parser/)
  })

  it('answers 400, not 500, to a client sending JSON when express.json() is mounted app-wide', async () => {
    const app = express5()
    app.use(express5.json())
    app.post('/u/*path', upload({ enabled: true, tokens: [UPLOAD_TOKEN] }), (_req, res) => {
      res.status(201).end()
    })
    app.use(errorHandler({ onError: () => {} }))
    const r = await request(app)
      .post('/u/a.png')
      .set('authorization', `Bearer ${UPLOAD_TOKEN}`)
      .set('content-type', 'application/json')
      .send('{"image":true}')
      .timeout(5000)
    assert.equal(r.status, 400)
    assert.equal(r.headers['x-ic-error-code'], 'IC_UPLOAD_NOT_AN_IMAGE')
  })
})
