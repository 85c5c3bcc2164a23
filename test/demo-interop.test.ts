import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import imageChartsModule from 'image-charts'
import sharp from 'sharp'
import { type RunningDemo, startDemo } from '../examples/demo/server.ts'

// image-charts is CommonJS with an ESM-style `export default` in its types: at run time the
// default import is `module.exports`, the client class itself.
const ImageCharts = imageChartsModule as unknown as typeof imageChartsModule.default

interface ClientError extends Error {
  code: string
  statusCode: number
}

async function rejection(promise: Promise<unknown>): Promise<ClientError> {
  try {
    await promise
  } catch (err) {
    return err as ClientError
  }
  assert.fail('the client resolved')
}

for (const framework of ['express', 'koa'] as const) {
  describe(`Image-Charts' official Node client against the demo's /chart (${framework})`, () => {
    let demo: RunningDemo
    let client: (secret?: string) => InstanceType<typeof ImageCharts>

    before(async () => {
      demo = await startDemo({ port: 0, framework })
      const { hostname, port } = new URL(demo.url)
      client = (secret = demo.secret) =>
        new ImageCharts({ secret, protocol: 'http', host: hostname, port: Number(port), timeout: 10_000 })
    })
    after(() => demo.close())

    test('signed requests succeed and return a PNG of the requested size', async () => {
      const charts = [
        client().cht('bvs').chd('t:10,20,30|5,15,25').chs('300x200').chl('a|b|c').icac(demo.account),
        client().cht('lc').chd('a:5,10,15|3,6,9').chs('400x300').chtt('Ventes été 2026').icac(demo.account),
        client().cht('p3').chd('a:1,2.5,3').chs('200x200').chco('FF0000,00FF00').icac(demo.account),
      ]
      for (const chart of charts) {
        assert.match(chart.toURL(), /[?&]ichm=[0-9a-f]{64}$/)
        const png = await chart.toBuffer()
        const meta = await sharp(png).metadata()
        assert.equal(meta.format, 'png')
        const [w, h] = new URL(chart.toURL()).searchParams.get('chs')?.split('x').map(Number) ?? []
        assert.deepEqual([meta.width, meta.height], [w, h])
      }
    })

    test('a bad request surfaces the code and the validation message through the client error', async () => {
      const err = await rejection(client().cht('p').chd('t:1,2,3').icac(demo.account).toBuffer())
      assert.equal(err.statusCode, 400)
      assert.equal(err.code, 'IS_VALIDATION_ERROR')
      assert.equal(err.message, '"chs" is required')
    })

    test('every validation failure reaches the client message, one per line', async () => {
      const err = await rejection(client().cht('zz').chd('t:1').chs('1000x20').toBuffer())
      assert.equal(err.code, 'IS_VALIDATION_ERROR')
      assert.deepEqual(err.message.split('\n'), [
        '"cht" must be one of [bvs, bhs, bvg, bhg, bvo, bho, lc, ls, p, p3, pd]',
        '"chs" width must be less than or equal to 999',
      ])
    })

    test('a URL signed with the wrong secret is refused with IC_INVALID_SIGNATURE', async () => {
      const err = await rejection(
        client('not-the-secret').cht('p').chd('t:1,2').chs('100x100').icac(demo.account).toBuffer(),
      )
      assert.equal(err.statusCode, 401)
      assert.equal(err.code, 'IC_INVALID_SIGNATURE')
    })

    test('an unknown account is refused with IC_ACCOUNT_ID_NOT_FOUND', async () => {
      const err = await rejection(client().cht('p').chd('t:1,2').chs('100x100').icac('nobody').toBuffer())
      assert.equal(err.statusCode, 401)
      assert.equal(err.code, 'IC_ACCOUNT_ID_NOT_FOUND')
    })
  })
}
