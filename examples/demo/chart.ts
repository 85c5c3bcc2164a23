import sharp from 'sharp'
import { icError, type ValidationItem } from '../../src/index.ts'

/**
 * Chart types the demo renders, by Image-Charts `cht` value.
 *
 * @example
 * chartTypes.includes('bvs') // true
 */
export const chartTypes = ['bvs', 'bhs', 'bvg', 'bhg', 'bvo', 'bho', 'lc', 'ls', 'p', 'p3', 'pd'] as const
/**
 * One of {@link chartTypes}.
 *
 * @example
 * const type: ChartType = 'p3'
 */
export type ChartType = (typeof chartTypes)[number]

/**
 * Image-Charts' published size limits: each side at most 999 px, the area at most 998,001 px;
 * plus the demo's own caps on data values and title length.
 *
 * @example
 * chartLimits.maxPixels // 998001
 */
export const chartLimits = { maxSide: 999, maxPixels: 998_001, maxValues: 2000, maxTitleLength: 200 } as const

/**
 * A validated chart request.
 *
 * @example
 * const spec: ChartSpec = parseChartQuery(new URLSearchParams('cht=p&chd=t:1,2&chs=200x200'))
 */
export interface ChartSpec {
  readonly type: ChartType
  /** Series of values; `null` marks a missing value (`_` in the data). */
  readonly series: readonly (readonly (number | null)[])[]
  /** `t:` (text, 0–100 scale) or `a:` (automatic scale). */
  readonly encoding: 't' | 'a'
  readonly width: number
  readonly height: number
  readonly colors: readonly string[]
  readonly title?: string
  readonly labels: readonly string[]
}

const DEFAULT_COLORS = ['F56991', 'FF9F80', 'FFC48C', 'D1F2A5', 'EFFAB4', '6C8CD5', '2A9D8F', 'E9C46A']
const SIZE = /^(\d{1,6})x(\d{1,6})$/
const COLOR = /^[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$/
const NUMBER = /^-?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?$/i
const KNOWN = ['cht', 'chd', 'chs', 'chco', 'chtt', 'chl'] as const

function item(param: string, message: string, type: string): ValidationItem {
  return { message, path: [param], type }
}

/**
 * Validates an Image-Charts query the way Image-Charts does (Joi-style messages, every
 * failure at once) and returns the chart to draw. Throws `IS_VALIDATION_ERROR` (400) with
 * one `x-ic-error-validation` item per failure, e.g. `"chs" is required`.
 *
 * @example
 * parseChartQuery(new URLSearchParams('cht=bvs&chd=t:10,20|5,5&chs=300x200'))
 */
export function parseChartQuery(query: URLSearchParams): ChartSpec {
  const problems: ValidationItem[] = []
  const one = (name: string): string | undefined => {
    const all = query.getAll(name)
    if (all.length > 1) {
      problems.push(item(name, `"${name}" must not be repeated`, 'any.repeated'))
      return undefined
    }
    return all[0]
  }
  const values = Object.fromEntries(KNOWN.map((name) => [name, one(name)])) as Record<
    (typeof KNOWN)[number],
    string | undefined
  >

  let type: ChartType | undefined
  if (values.cht === undefined) {
    if (query.getAll('cht').length === 0) problems.push(item('cht', '"cht" is required', 'any.required'))
  } else if ((chartTypes as readonly string[]).includes(values.cht)) {
    type = values.cht as ChartType
  } else {
    problems.push(item('cht', `"cht" must be one of [${chartTypes.join(', ')}]`, 'any.only'))
  }

  let encoding: 't' | 'a' = 't'
  let series: (number | null)[][] = []
  if (values.chd === undefined) {
    if (query.getAll('chd').length === 0) problems.push(item('chd', '"chd" is required', 'any.required'))
  } else {
    const match = /^([ta]):(.*)$/s.exec(values.chd)
    if (match === null) {
      problems.push(
        item(
          'chd',
          '"chd" must start with "t:" or "a:" (text data format), e.g. t:10,20,30|5,15,25',
          'string.format',
        ),
      )
    } else {
      encoding = match[1] as 't' | 'a'
      series = (match[2] ?? '').split('|').map((s) => s.split(',').map((v) => (v === '_' ? null : Number(v))))
      const raw = (match[2] ?? '').split('|').flatMap((s) => s.split(','))
      if (raw.some((v) => v !== '_' && !NUMBER.test(v))) {
        problems.push(
          item(
            'chd',
            '"chd" values must be numbers separated by "," (series separated by "|", "_" for none)',
            'string.format',
          ),
        )
      } else if (raw.length > chartLimits.maxValues) {
        problems.push(item('chd', `"chd" must contain at most ${chartLimits.maxValues} values`, 'array.max'))
      } else if (type?.startsWith('p') === true && series.flat().some((v) => v !== null && v < 0)) {
        problems.push(item('chd', '"chd" values must be positive for pie charts', 'number.positive'))
      }
    }
  }

  let width = 0
  let height = 0
  if (values.chs === undefined) {
    if (query.getAll('chs').length === 0) problems.push(item('chs', '"chs" is required', 'any.required'))
  } else {
    const match = SIZE.exec(values.chs)
    if (match === null) {
      problems.push(
        item(
          'chs',
          `"chs" with value "${values.chs}" fails to match the required pattern: /^(\\d+)x(\\d+)$/`,
          'string.pattern.base',
        ),
      )
    } else {
      width = Number(match[1])
      height = Number(match[2])
      const { maxSide, maxPixels } = chartLimits
      if (width < 1 || height < 1)
        problems.push(item('chs', '"chs" width and height must be at least 1', 'number.min'))
      if (width > maxSide)
        problems.push(item('chs', `"chs" width must be less than or equal to ${maxSide}`, 'number.max'))
      if (height > maxSide)
        problems.push(item('chs', `"chs" height must be less than or equal to ${maxSide}`, 'number.max'))
      if (width <= maxSide && height <= maxSide && width * height > maxPixels) {
        problems.push(
          item(
            'chs',
            `"chs" must be at most ${maxPixels.toLocaleString('en-US')} pixels (width x height)`,
            'number.max',
          ),
        )
      }
    }
  }

  let colors = DEFAULT_COLORS
  if (values.chco !== undefined) {
    const list = values.chco.split(/[,|]/)
    if (list.every((c) => COLOR.test(c))) colors = list.map((c) => c.toUpperCase())
    else
      problems.push(
        item('chco', '"chco" must be RRGGBB or RRGGBBAA colours separated by ","', 'string.pattern.base'),
      )
  }

  if (values.chtt !== undefined && values.chtt.length > chartLimits.maxTitleLength) {
    problems.push(
      item(
        'chtt',
        `"chtt" length must be less than or equal to ${chartLimits.maxTitleLength} characters long`,
        'string.max',
      ),
    )
  }

  if (problems.length > 0 || type === undefined) {
    throw icError('IS_VALIDATION_ERROR', {
      message: problems.map((p) => p.message).join('; '),
      validation: problems,
    })
  }
  const spec: ChartSpec = {
    type,
    series,
    encoding,
    width,
    height,
    colors,
    labels: values.chl === undefined ? [] : values.chl.split('|'),
    ...(values.chtt === undefined || values.chtt === '' ? {} : { title: values.chtt }),
  }
  return spec
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

const FONT = 'font-family="DejaVu Sans, sans-serif"'

function color(spec: ChartSpec, index: number): string {
  const c = spec.colors[index % spec.colors.length] ?? '999999'
  return c.length === 8
    ? `#${c.slice(0, 6)}" fill-opacity="${(Number.parseInt(c.slice(6), 16) / 255).toFixed(2)}`
    : `#${c}`
}

function domain(spec: ChartSpec, stacked: boolean): [number, number] {
  const all = spec.series.flat().filter((v): v is number => v !== null)
  let max = all.length === 0 ? 1 : Math.max(...all)
  if (stacked) {
    const n = Math.max(...spec.series.map((s) => s.length))
    for (let i = 0; i < n; i++)
      max = Math.max(
        max,
        spec.series.reduce((sum, s) => sum + Math.max(0, s[i] ?? 0), 0),
      )
  }
  const min = Math.min(0, ...all)
  if (spec.encoding === 't') return [min, Math.max(100, max)]
  return [min, max === min ? min + 1 : max]
}

function pieSvg(spec: ChartSpec, top: number): string {
  const values = (spec.series[0] ?? []).map((v) => Math.max(0, v ?? 0))
  const total = values.reduce((a, b) => a + b, 0)
  const cx = spec.width / 2
  const cy = top + (spec.height - top) / 2
  const r = Math.max(4, Math.min(spec.width, spec.height - top) / 2 - (spec.labels.length > 0 ? 40 : 8))
  const parts: string[] = []
  let angle = -Math.PI / 2
  values.forEach((value, i) => {
    if (total === 0 || value === 0) return
    const sweep = (value / total) * Math.PI * 2
    const end = angle + sweep
    const [x1, y1] = [cx + r * Math.cos(angle), cy + r * Math.sin(angle)]
    const [x2, y2] = [cx + r * Math.cos(end), cy + r * Math.sin(end)]
    const path =
      sweep >= Math.PI * 2 - 1e-9
        ? `M ${cx - r} ${cy} a ${r} ${r} 0 1 0 ${2 * r} 0 a ${r} ${r} 0 1 0 ${-2 * r} 0 Z`
        : `M ${cx} ${cy} L ${x1} ${y1} A ${r} ${r} 0 ${sweep > Math.PI ? 1 : 0} 1 ${x2} ${y2} Z`
    parts.push(`<path d="${path}" fill="${color(spec, i)}" stroke="#fff" stroke-width="1"/>`)
    const label = spec.labels[i]
    if (label !== undefined && label !== '') {
      const mid = angle + sweep / 2
      const lx = cx + (r + 14) * Math.cos(mid)
      const ly = cy + (r + 14) * Math.sin(mid)
      const anchor = Math.cos(mid) >= 0 ? 'start' : 'end'
      parts.push(
        `<text x="${lx.toFixed(1)}" y="${ly.toFixed(1)}" ${FONT} font-size="12" text-anchor="${anchor}" dominant-baseline="middle" fill="#333">${escapeXml(label)}</text>`,
      )
    }
    angle = end
  })
  if (spec.type === 'pd')
    parts.push(`<circle cx="${cx}" cy="${cy}" r="${(r * 0.5).toFixed(1)}" fill="#fff"/>`)
  return parts.join('')
}

function axesSvg(box: Box, horizontal: boolean, lo: number, hi: number): string {
  const parts: string[] = []
  for (let t = 0; t <= 4; t++) {
    const value = lo + ((hi - lo) * t) / 4
    const text = Number.isInteger(value) ? String(value) : value.toFixed(1)
    if (horizontal) {
      const x = box.x + (box.w * t) / 4
      parts.push(`<line x1="${x}" y1="${box.y}" x2="${x}" y2="${box.y + box.h}" stroke="#eee"/>`)
      parts.push(
        `<text x="${x}" y="${box.y + box.h + 14}" ${FONT} font-size="10" text-anchor="middle" fill="#666">${text}</text>`,
      )
    } else {
      const y = box.y + box.h - (box.h * t) / 4
      parts.push(`<line x1="${box.x}" y1="${y}" x2="${box.x + box.w}" y2="${y}" stroke="#eee"/>`)
      parts.push(
        `<text x="${box.x - 4}" y="${y + 3}" ${FONT} font-size="10" text-anchor="end" fill="#666">${text}</text>`,
      )
    }
  }
  parts.push(
    `<path d="M ${box.x} ${box.y} V ${box.y + box.h} H ${box.x + box.w}" fill="none" stroke="#999"/>`,
  )
  return parts.join('')
}

interface Box {
  x: number
  y: number
  w: number
  h: number
}

function barsSvg(spec: ChartSpec, box: Box): string {
  const horizontal = spec.type.startsWith('bh')
  const mode = spec.type[2] as 's' | 'g' | 'o'
  const [lo, hi] = domain(spec, mode === 's')
  const n = Math.max(1, ...spec.series.map((s) => s.length))
  const along = horizontal ? box.h : box.w
  const across = horizontal ? box.w : box.h
  const slot = along / n
  const scale = (v: number): number => ((Math.min(Math.max(v, lo), hi) - lo) / (hi - lo)) * across
  const zero = scale(0)
  const parts: string[] = [axesSvg(box, horizontal, lo, hi)]
  const rect = (start: number, thickness: number, from: number, to: number, fill: string): string => {
    const a = Math.min(from, to)
    const len = Math.abs(to - from)
    return horizontal
      ? `<rect x="${(box.x + a).toFixed(1)}" y="${(box.y + start).toFixed(1)}" width="${len.toFixed(1)}" height="${thickness.toFixed(1)}" fill="${fill}"/>`
      : `<rect x="${(box.x + start).toFixed(1)}" y="${(box.y + box.h - a - len).toFixed(1)}" width="${thickness.toFixed(1)}" height="${len.toFixed(1)}" fill="${fill}"/>`
  }
  for (let i = 0; i < n; i++) {
    const start = i * slot + slot * 0.15
    const width = slot * 0.7
    let stack = zero
    spec.series.forEach((s, k) => {
      const v = s[i]
      if (v === null || v === undefined) return
      if (mode === 's') {
        const next = stack + (scale(v) - zero)
        parts.push(rect(start, width, stack, next, color(spec, k)))
        stack = next
      } else if (mode === 'g') {
        const w = width / spec.series.length
        parts.push(rect(start + k * w, w, zero, scale(v), color(spec, k)))
      } else {
        parts.push(
          rect(start + (width * k) / (spec.series.length * 4), width, zero, scale(v), color(spec, k)),
        )
      }
    })
    const label = spec.labels[i]
    if (label !== undefined && label !== '') {
      const text = escapeXml(label)
      parts.push(
        horizontal
          ? `<text x="${box.x - 4}" y="${(box.y + i * slot + slot / 2 + 4).toFixed(1)}" ${FONT} font-size="11" text-anchor="end" fill="#333">${text}</text>`
          : `<text x="${(box.x + i * slot + slot / 2).toFixed(1)}" y="${box.y + box.h + 28}" ${FONT} font-size="11" text-anchor="middle" fill="#333">${text}</text>`,
      )
    }
  }
  return parts.join('')
}

function linesSvg(spec: ChartSpec, box: Box): string {
  const [lo, hi] = domain(spec, false)
  const sparkline = spec.type === 'ls'
  const n = Math.max(2, ...spec.series.map((s) => s.length))
  const x = (i: number): number => box.x + (box.w * i) / (n - 1)
  const y = (v: number): number => box.y + box.h - ((Math.min(Math.max(v, lo), hi) - lo) / (hi - lo)) * box.h
  const parts: string[] = sparkline ? [] : [axesSvg(box, false, lo, hi)]
  spec.series.forEach((s, k) => {
    const d: string[] = []
    let pen = 'M'
    s.forEach((v, i) => {
      if (v === null) {
        pen = 'M'
        return
      }
      d.push(`${pen} ${x(i).toFixed(1)} ${y(v).toFixed(1)}`)
      pen = 'L'
    })
    parts.push(
      `<path d="${d.join(' ')}" fill="none" stroke="${color(spec, k)}" stroke-width="2.5" stroke-linejoin="round"/>`,
    )
  })
  if (!sparkline) {
    spec.labels.forEach((label, i) => {
      if (i < n && label !== '')
        parts.push(
          `<text x="${x(i).toFixed(1)}" y="${box.y + box.h + 28}" ${FONT} font-size="11" text-anchor="middle" fill="#333">${escapeXml(label)}</text>`,
        )
    })
  }
  return parts.join('')
}

/**
 * Draws a validated chart as SVG, the size `chs` asked for.
 *
 * @example
 * const svg = chartSvg(parseChartQuery(new URLSearchParams('cht=lc&chd=a:1,5,2&chs=300x150')))
 */
export function chartSvg(spec: ChartSpec): string {
  const { width, height } = spec
  const titleLines = spec.title === undefined ? [] : spec.title.split('|')
  const top = titleLines.length * 20 + (titleLines.length > 0 ? 10 : 0)
  const title = titleLines
    .map(
      (line, i) =>
        `<text x="${width / 2}" y="${20 + i * 20}" ${FONT} font-size="15" font-weight="bold" text-anchor="middle" fill="#222">${escapeXml(line)}</text>`,
    )
    .join('')
  let body: string
  if (spec.type.startsWith('p')) {
    body = pieSvg(spec, top)
  } else {
    const sparkline = spec.type === 'ls'
    const horizontal = spec.type.startsWith('bh')
    const left = sparkline ? 4 : horizontal && spec.labels.length > 0 ? 60 : 36
    const bottom = sparkline ? 4 : spec.labels.length > 0 ? 36 : 20
    const box = {
      x: left,
      y: top + 8,
      w: Math.max(1, width - left - 12),
      h: Math.max(1, height - top - 8 - bottom),
    }
    body = spec.type.startsWith('b') ? barsSvg(spec, box) : linesSvg(spec, box)
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}"><rect width="100%" height="100%" fill="#fff"/>${title}${body}</svg>`
}

/**
 * Renders a validated chart to PNG bytes with sharp.
 *
 * @example
 * const png = await renderChart(parseChartQuery(new URLSearchParams('cht=p&chd=t:1,2,3&chs=200x200')))
 */
export function renderChart(spec: ChartSpec): Promise<Buffer> {
  return sharp(Buffer.from(chartSvg(spec)))
    .png({ compressionLevel: 6 })
    .toBuffer()
}
