import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { type Duration, durationMs, functionOption, knownOptions, numberOption } from '../../options.ts'

/**
 * One reading of the process load.
 *
 * @example
 * const sample: LoadSample = { eventLoopDelayMs: 12, eventLoopUtilization: 0.4, heapUsedBytes: 8e7, rssBytes: 2e8 }
 */
export interface LoadSample {
  /** A high percentile of the event-loop delay over the last interval, in ms (0 when nothing was recorded). */
  readonly eventLoopDelayMs: number
  /** Event-loop utilisation over the last interval, from 0 to 1. */
  readonly eventLoopUtilization: number
  readonly heapUsedBytes: number
  readonly rssBytes: number
}

/**
 * The limits a sample is judged against, as read from the options (`LoadSampler.thresholds`);
 * each is off when undefined.
 *
 * @example
 * const thresholds: LoadThresholds = { maxEventLoopDelayMs: 200, maxEventLoopUtilization: 0.98 }
 */
export interface LoadThresholds {
  /** Refuse when the event-loop delay percentile exceeds this many ms. */
  readonly maxEventLoopDelayMs?: number
  /** Refuse when event-loop utilisation exceeds this share (0 < x < 1: a utilisation never exceeds 1). */
  readonly maxEventLoopUtilization?: number
  /** Refuse when `heapUsed` exceeds this many bytes. */
  readonly maxHeapUsedBytes?: number
  /** Refuse when the resident set size exceeds this many bytes. */
  readonly maxRssBytes?: number
}

/**
 * The thresholds as the sampler's and `loadShedding()`'s options take them: the delay is a
 * duration, milliseconds or an `ms` string, like every other `…Ms` option.
 *
 * @example
 * const options: LoadThresholdOptions = { maxEventLoopDelayMs: '200ms', maxHeapUsedBytes: 1.5e9 }
 */
export interface LoadThresholdOptions extends Omit<LoadThresholds, 'maxEventLoopDelayMs'> {
  /** Refuse when the event-loop delay percentile exceeds this: milliseconds (at least 1) or an `ms` string. */
  readonly maxEventLoopDelayMs?: Duration
}

/**
 * The names of the {@link LoadThresholds}: options of both the sampler and `loadShedding()`,
 * so each lists them among the options it knows.
 *
 * @example
 * knownOptions(options, [...THRESHOLD_OPTIONS, 'sampleIntervalMs'], 'createLoadSampler')
 */
export const THRESHOLD_OPTIONS = [
  'maxEventLoopDelayMs',
  'maxEventLoopUtilization',
  'maxHeapUsedBytes',
  'maxRssBytes',
] as const satisfies readonly (keyof LoadThresholds)[]

/**
 * Which measure is over its threshold: a stable type code for logs, metrics and health endpoints.
 *
 * @example
 * const type: OverloadType = 'eventLoopDelay'
 */
export type OverloadType = 'eventLoopDelay' | 'eventLoopUtilization' | 'heapUsed' | 'rss' | 'inFlight'

/**
 * Why the process counts as overloaded: the measure with the highest pressure.
 *
 * @example
 * const reason: OverloadReason = { type: 'heapUsed', value: 9e8, threshold: 8e8, pressure: 1.125 }
 */
export interface OverloadReason {
  readonly type: OverloadType
  /** The measured value, in the threshold's unit. */
  readonly value: number
  readonly threshold: number
  /** `value / threshold`: 1 is at the threshold, 2 is twice over. */
  readonly pressure: number
}

/**
 * Options of {@link createLoadSampler}.
 *
 * @example
 * const options: LoadSamplerOptions = { sampleIntervalMs: '500ms', maxEventLoopDelayMs: 200 }
 */
export interface LoadSamplerOptions extends LoadThresholdOptions {
  /** How often a sample is taken; the delay percentile and utilisation cover this window. @default 1000 */
  readonly sampleIntervalMs?: Duration
  /** The event-loop delay percentile reported, from 50 to 100. @default 99 */
  readonly eventLoopDelayPercentile?: number
  /**
   * Resolution of the event-loop delay histogram, in ms: an integer from 1 to 1000, and at most a
   * quarter of `sampleIntervalMs` (coarser, the histogram records next to nothing in a window).
   * The delay is read to within one resolution. @default 10, or a quarter of `sampleIntervalMs` when that is less
   */
  readonly resolutionMs?: number
  /**
   * Replaces the measurement (tests, or metrics from elsewhere): called once per interval and
   * by {@link LoadSampler.refresh}. No histogram is started when it is given.
   */
  readonly source?: () => LoadSample
}

/**
 * A shared, closeable reader of the process load. Its timer is `unref()`'d, so it never keeps
 * the process alive.
 *
 * @example
 * const sampler = createLoadSampler({ maxEventLoopDelayMs: 200 })
 * app.get('/health', (req, res) => res.status(sampler.isOverloaded() ? 503 : 200).json(sampler.reason() ?? {}))
 */
export interface LoadSampler {
  /** The latest sample. */
  readonly current: LoadSample
  /**
   * The sample before {@link LoadSampler.current} (idle before the second one): an overload
   * seen in both is one that lasts, and only then does `loadShedding()` scale its
   * `Retry-After` with the pressure.
   */
  readonly previous: LoadSample
  /** The sampler's own thresholds, also used by `loadShedding()` where it sets none. */
  readonly thresholds: Readonly<LoadThresholds>
  /** Takes a sample now instead of waiting for the interval, and returns it. */
  refresh(): LoadSample
  /** Whether the latest sample is over any of the sampler's thresholds. */
  isOverloaded(): boolean
  /** The measure with the highest pressure when over a threshold, else `undefined`. */
  reason(): OverloadReason | undefined
  /**
   * Stops the timer and the histogram. A closed sampler reads as idle (zeros, never
   * overloaded): closed on shutdown while overloaded, it must not refuse the requests still
   * draining.
   */
  close(): void
}

const ZERO: LoadSample = Object.freeze({
  eventLoopDelayMs: 0,
  eventLoopUtilization: 0,
  heapUsedBytes: 0,
  rssBytes: 0,
})

/**
 * Checks the threshold options shared by the sampler and `loadShedding()`.
 *
 * @example
 * readThresholds({ maxEventLoopDelayMs: '0.2s' }) // { maxEventLoopDelayMs: 200 }
 */
export function readThresholds(options: LoadThresholdOptions): LoadThresholds {
  const out: {
    maxEventLoopDelayMs?: number
    maxEventLoopUtilization?: number
    maxHeapUsedBytes?: number
    maxRssBytes?: number
  } = {}
  if (options.maxEventLoopDelayMs !== undefined)
    out.maxEventLoopDelayMs = durationMs('maxEventLoopDelayMs', options.maxEventLoopDelayMs, {
      max: Number.MAX_SAFE_INTEGER,
    })
  if (options.maxEventLoopUtilization !== undefined)
    out.maxEventLoopUtilization = numberOption('maxEventLoopUtilization', options.maxEventLoopUtilization, {
      min: 0,
      max: 1,
      exclusiveMin: true,
      exclusiveMax: true,
    })
  if (options.maxHeapUsedBytes !== undefined)
    out.maxHeapUsedBytes = numberOption('maxHeapUsedBytes', options.maxHeapUsedBytes, {
      min: 0,
      exclusiveMin: true,
    })
  if (options.maxRssBytes !== undefined)
    out.maxRssBytes = numberOption('maxRssBytes', options.maxRssBytes, { min: 0, exclusiveMin: true })
  return out
}

/**
 * The measure of a sample with the highest pressure against the thresholds, or undefined when none is set.
 *
 * @example
 * highestPressure(sample, { maxHeapUsedBytes: 1e9 })?.pressure // 1.2 when heapUsed is 1.2e9
 */
export function highestPressure(sample: LoadSample, t: LoadThresholds): OverloadReason | undefined {
  let best: OverloadReason | undefined
  const consider = (type: OverloadType, value: number, threshold: number | undefined): void => {
    if (threshold === undefined) return
    const pressure = value / threshold
    if (best === undefined || pressure > best.pressure) best = { type, value, threshold, pressure }
  }
  consider('eventLoopDelay', sample.eventLoopDelayMs, t.maxEventLoopDelayMs)
  consider('eventLoopUtilization', sample.eventLoopUtilization, t.maxEventLoopUtilization)
  consider('heapUsed', sample.heapUsedBytes, t.maxHeapUsedBytes)
  consider('rss', sample.rssBytes, t.maxRssBytes)
  return best
}

function finite(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0
}

/**
 * Starts a load sampler: every `sampleIntervalMs` it reads a high percentile of the
 * event-loop delay over that window (an empty window counts as 0, never as Infinity), the
 * event-loop utilisation over the same window, `heapUsed` and RSS. The first reading (at the
 * first interval, or an earlier `refresh()`) counts its delay and utilisation as 0: that
 * window began when the sampler was made, usually at start-up, whose synchronous work
 * (templates compiled, routes built) is no load to shed. Share one sampler between every
 * `loadShedding()` and the health endpoint; `close()` it on shutdown.
 *
 * @example
 * import { createLoadSampler } from 'image-api-errors'
 * const sampler = createLoadSampler({ sampleIntervalMs: 500, maxEventLoopDelayMs: 200, maxEventLoopUtilization: 0.98 })
 * app.use(loadShedding({ sampler, maxInFlight: 200 }))
 * app.get('/health', (req, res) => res.sendStatus(sampler.isOverloaded() ? 503 : 200))
 */
export function createLoadSampler(options: Readonly<LoadSamplerOptions> = {}): LoadSampler {
  knownOptions(
    options,
    [...THRESHOLD_OPTIONS, 'sampleIntervalMs', 'eventLoopDelayPercentile', 'resolutionMs', 'source'],
    'createLoadSampler',
  )
  const intervalMs = durationMs(
    'sampleIntervalMs',
    options.sampleIntervalMs === undefined ? 1000 : options.sampleIntervalMs,
    { min: 10 },
  )
  const percentile = numberOption(
    'eventLoopDelayPercentile',
    options.eventLoopDelayPercentile === undefined ? 99 : options.eventLoopDelayPercentile,
    { min: 50, max: 100 },
  )
  const quarterMs = Math.floor(intervalMs / 4)
  const resolutionMs = numberOption(
    'resolutionMs',
    options.resolutionMs === undefined ? Math.min(10, quarterMs) : options.resolutionMs,
    { min: 1, max: 1000, integer: true },
  )
  // A reading takes one resolution off the worst interval, and two off the window's uncovered
  // time (a reset histogram records nothing until its timer has run once). Up to a quarter of
  // the window, a stall over half of it still reads to within one resolution; at half, the
  // histogram records next to nothing and a 120 ms stall in 200 ms read as 34.
  // With `source`, no histogram is made: the resolution is not used, so it bounds nothing.
  if (options.source === undefined && resolutionMs > quarterMs)
    throw new TypeError(
      `Expected \`resolutionMs\` to be at most a quarter of \`sampleIntervalMs\` (${quarterMs} ms for ${intervalMs} ms), got ${resolutionMs}`,
    )
  const source = functionOption('source', options.source)
  const thresholds = Object.freeze(readThresholds(options))

  const histogram = source === undefined ? monitorEventLoopDelay({ resolution: resolutionMs }) : undefined
  histogram?.enable()
  let windowStartMs = performance.now()
  let lastElu = source === undefined ? performance.eventLoopUtilization() : undefined
  let firstWindow = source === undefined

  /** `lateMs`: how late this sampler's own timer fired, i.e. how long the loop was blocked at its due time. */
  function measure(lateMs = 0): LoadSample {
    if (source !== undefined) {
      const s = source()
      return {
        eventLoopDelayMs: finite(s?.eventLoopDelayMs),
        eventLoopUtilization: finite(s?.eventLoopUtilization),
        heapUsedBytes: finite(s?.heapUsedBytes),
        rssBytes: finite(s?.rssBytes),
      }
    }
    let delay = 0
    if (histogram !== undefined) {
      const nowMs = performance.now()
      const count = histogram.count
      const coveredMs = count > 0 ? (finite(histogram.mean) / 1e6) * count : 0
      if (count > 0) {
        // Samples are not time: one 600 ms stall among 99 samples of 10 ms is 1 % of the samples
        // but 38 % of the window, so a sample percentile never sees it. When the longest sample
        // alone fills more of the window than the percentile leaves out, it is the percentile
        // by time.
        const maxMs = finite(histogram.max) / 1e6
        const worstMs =
          maxMs >= coveredMs * (1 - percentile / 100) ? maxMs : finite(histogram.percentile(percentile)) / 1e6
        // The histogram records whole timer intervals, the resolution included.
        delay = Math.max(0, worstMs - resolutionMs)
      }
      // A reset histogram records no interval until its timer has run once: a stall that
      // begins right after a reading is missing from it, though not from the window's time.
      // What its intervals leave uncovered, less one resolution at either end, is that stall.
      const uncoveredMs = nowMs - windowStartMs - coveredMs - 2 * resolutionMs
      if (uncoveredMs > delay) delay = uncoveredMs
      histogram.reset()
      windowStartMs = nowMs
    }
    // When a stall ends, the timers due run in the order they were due. If this one was due
    // first, the histogram may not have recorded the stall yet, and the reset above makes it
    // never will (it forgets its last run): this timer's own lateness is then that stall.
    if (lateMs > delay) delay = lateMs
    let utilization = finite(performance.eventLoopUtilization(lastElu).utilization)
    lastElu = performance.eventLoopUtilization()
    if (firstWindow) {
      firstWindow = false
      delay = 0
      utilization = 0
    }
    const memory = process.memoryUsage()
    return {
      eventLoopDelayMs: delay,
      eventLoopUtilization: utilization,
      heapUsedBytes: memory.heapUsed,
      rssBytes: memory.rss,
    }
  }

  let current: LoadSample = source === undefined ? ZERO : measure()
  let previous: LoadSample = ZERO
  let reason: OverloadReason | undefined
  let closed = false
  const judge = (): void => {
    const r = highestPressure(current, thresholds)
    reason = r !== undefined && r.pressure > 1 ? r : undefined
  }
  judge()
  const take = (sample: LoadSample): void => {
    previous = current
    current = sample
    judge()
  }

  let timer: NodeJS.Timeout | undefined
  let pending: NodeJS.Immediate | undefined
  let dueAtMs = 0
  const tick = (): void => {
    pending = undefined
    // Measured here, not when the timer fired: work run between the two (a request's handler
    // in the poll phase) is a stall the histogram, reset below, would never see.
    const lateMs = Math.max(0, performance.now() - dueAtMs)
    try {
      take(measure(lateMs))
    } catch {
      // A failing injected source keeps the last sample rather than crashing the process.
    }
    if (!closed) schedule()
  }
  // Read in the check phase, once the timers due after a stall (the histogram's) have run.
  const onTimer = (): void => {
    // Not unref'd: an unref'd immediate lets an idle loop sleep in poll before the check phase,
    // and that sleep would read as lateness. A ref'd one keeps nothing alive: it runs this turn.
    pending = setImmediate(tick)
  }
  const schedule = (): void => {
    dueAtMs = performance.now() + intervalMs
    timer = setTimeout(onTimer, intervalMs).unref()
  }
  schedule()

  return {
    get current() {
      return current
    },
    get previous() {
      return previous
    },
    thresholds,
    refresh() {
      if (!closed) take(measure())
      return current
    },
    isOverloaded: () => reason !== undefined,
    reason: () => reason,
    close() {
      closed = true
      if (timer !== undefined) clearTimeout(timer)
      if (pending !== undefined) clearImmediate(pending)
      histogram?.disable()
      current = ZERO
      previous = ZERO
      reason = undefined
    },
  }
}
