import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import sharp from 'sharp'
import { chartLimits, chartSvg, chartTypes, parseChartQuery, renderChart } from '../examples/demo/chart.ts'
import { isIcError } from '../src/index.ts'

function messagesOf(query: string): string[] {
  try {
    parseChartQuery(new URLSearchParams(query))
  } catch (err) {
    assert.ok(isIcError(err), String(err))
    assert.equal(err.code, 'IS_VALIDATION_ERROR')
    assert.equal(err.status, 400)
    return (err.validation ?? []).map((v) => v.message)
  }
  return []
}

test('every chart type renders a PNG of exactly the requested size', async () => {
  for (const cht of chartTypes) {
    const spec = parseChartQuery(
      new URLSearchParams(
        `cht=${cht}&chd=t:10,20,30|5,_,25&chs=210x140&chl=a|b|c&chtt=T|two lines&chco=FF000080,00FF00`,
      ),
    )
    const meta = await sharp(await renderChart(spec)).metadata()
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 210, 140], cht)
  }
})

test('Image-Charts required parameters, with its messages', () => {
  assert.deepEqual(messagesOf(''), ['"cht" is required', '"chd" is required', '"chs" is required'])
  assert.deepEqual(messagesOf('cht=p&chd=t:1,2,3'), ['"chs" is required'])
})

test('chs limits: 999 per side and 998,001 pixels, both edges', () => {
  assert.deepEqual(messagesOf('cht=p&chd=t:1&chs=999x999'), [])
  assert.equal(999 * 999, chartLimits.maxPixels)
  assert.deepEqual(messagesOf('cht=p&chd=t:1&chs=1000x10'), ['"chs" width must be less than or equal to 999'])
  assert.deepEqual(messagesOf('cht=p&chd=t:1&chs=10x1000'), [
    '"chs" height must be less than or equal to 999',
  ])
  assert.deepEqual(messagesOf('cht=p&chd=t:1&chs=0x10'), ['"chs" width and height must be at least 1'])
  assert.deepEqual(messagesOf('cht=p&chd=t:1&chs=10by10'), [
    '"chs" with value "10by10" fails to match the required pattern: /^(\\d+)x(\\d+)$/',
  ])
})

test('data, colours, title and repeats are checked, every failure reported at once', () => {
  assert.deepEqual(messagesOf('cht=lc&chd=s:abc&chs=10x10&chco=red&chs=20x20'), [
    '"chs" must not be repeated',
    '"chd" must start with "t:" or "a:" (text data format), e.g. t:10,20,30|5,15,25',
    '"chco" must be RRGGBB or RRGGBBAA colours separated by ","',
  ])
  assert.deepEqual(messagesOf('cht=p&chd=t:1,-2&chs=10x10'), ['"chd" values must be positive for pie charts'])
  assert.deepEqual(messagesOf(`cht=bvs&chd=t:${'1,'.repeat(chartLimits.maxValues)}1&chs=10x10`), [
    `"chd" must contain at most ${chartLimits.maxValues} values`,
  ])
  assert.deepEqual(messagesOf(`cht=bvs&chd=t:1&chs=10x10&chtt=${'x'.repeat(201)}`), [
    '"chtt" length must be less than or equal to 200 characters long',
  ])
})

test('text in the SVG is escaped: titles and labels cannot inject markup', async () => {
  const spec = parseChartQuery(
    new URLSearchParams('cht=p&chd=t:1,2&chs=100x100&chtt=<svg onload=x>&chl=</text><script>|%26amp%3B'),
  )
  const svg = chartSvg(spec)
  assert.ok(!svg.includes('<svg onload') && !svg.includes('<script>') && !svg.includes('&amp;'), svg)
  assert.ok(svg.includes('&#60;svg onload=x&#62;') && svg.includes('&#38;amp;'))
  assert.ok((await renderChart(spec)).length > 0)
})

test('any query either parses or is a 400 IS_VALIDATION_ERROR, never another error', () => {
  const param = fc.constantFrom('cht', 'chd', 'chs', 'chco', 'chtt', 'chl', 'x')
  const value = fc.oneof(
    fc.string(),
    fc.constantFrom(...chartTypes),
    fc.constantFrom('t:1,2,3', 'a:-1,2.5|3', 't:_,1', '999x999', '1000x1', '0x0', 'FF0000'),
  )
  fc.assert(
    fc.property(fc.array(fc.tuple(param, value), { maxLength: 8 }), (pairs) => {
      const query = new URLSearchParams(pairs)
      try {
        const spec = parseChartQuery(query)
        assert.ok(spec.width >= 1 && spec.width <= 999 && spec.height >= 1 && spec.height <= 999)
      } catch (err) {
        assert.ok(isIcError(err) && err.code === 'IS_VALIDATION_ERROR', String(err))
        assert.ok((err.validation?.length ?? 0) > 0)
      }
    }),
    { numRuns: 500 },
  )
})
