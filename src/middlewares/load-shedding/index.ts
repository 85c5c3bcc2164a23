import type { ServerResponse } from 'node:http'
import { icError } from '../../errors.ts'
import type { Guard } from '../../guard.ts'
import { functionOption, knownOptions, numberOption, showValue } from '../../options.ts'
import { onResponseClose } from '../../response-close.ts'
import {
  createLoadSampler,
  highestPressure,
  type LoadSample,
  type LoadSampler,
  type LoadThresholdOptions,
  type LoadThresholds,
  type OverloadReason,
  readThresholds,
  THRESHOLD_OPTIONS,
} from './sampler.ts'

export {
  createLoadSampler,
  type LoadSample,
  type LoadSampler,
  type LoadSamplerOptions,
  type LoadThresholdOptions,
  type LoadThresholds,
  type OverloadReason,
  type OverloadType,
} from './sampler.ts'

/**
 * Options of `loadShedding()`. Set at least one threshold.
 *
 * @example
 * const options: LoadSheddingOptions = { maxEventLoopDelayMs: 200, maxInFlight: 100, softThresholdRatio: 0.8 }
 */
export interface LoadSheddingOptions extends LoadThresholdOptions {
  /**
   * The sampler to read; share one between middlewares and the health endpoint. Its own
   * thresholds apply where these options set none.
   * @default a process-wide sampler (1 s interval, p99), started on first use
   */
  readonly sampler?: LoadSampler
  /**
   * Refuse when this many requests through this middleware are already in flight. A request
   * counts until its response finishes or closes (a pipelined one queued behind another: or
   * its connection closes): a client that gives up frees its slot while the handler may still
   * work, so pair it with `clientClosed()`, `deadline()` and `requestSignal(req)` passed to
   * the handler's work.
   */
  readonly maxInFlight?: number
  /**
   * Gradual shedding: from this share of a threshold up to the threshold, a growing share of
   * requests is refused (none at the soft point, all at the threshold), instead of a cliff.
   * @default 1 (off)
   */
  readonly softThresholdRatio?: number
  /**
   * `Retry-After` at the threshold, in whole seconds; also that of a sampled overload seen in
   * one sample only (the previous one was under every threshold). @default 1
   */
  readonly minRetryAfterSeconds?: number
  /**
   * `Retry-After` at twice the threshold and beyond (before jitter), once the sampler's
   * previous sample was over a threshold too. @default 30, or `minRetryAfterSeconds` when that is more
   */
  readonly maxRetryAfterSeconds?: number
  /** Random extra share of `Retry-After`, so refused clients do not return in lock-step. @default 0.5 */
  readonly retryAfterJitterRatio?: number
  /** Source of randomness for gradual shedding and jitter (tests). @default Math.random */
  readonly random?: () => number
}

const LOAD_SHEDDING_OPTIONS = [
  ...THRESHOLD_OPTIONS,
  'sampler',
  'maxInFlight',
  'softThresholdRatio',
  'minRetryAfterSeconds',
  'maxRetryAfterSeconds',
  'retryAfterJitterRatio',
  'random',
] as const satisfies readonly (keyof LoadSheddingOptions)[]

let sharedSampler: LoadSampler | undefined

/** The process-wide default sampler, started on first use. Its timer is unref'd. */
function defaultSampler(): LoadSampler {
  sharedSampler ??= createLoadSampler()
  return sharedSampler
}

const LABELS: Readonly<Record<OverloadReason['type'], string>> = {
  eventLoopDelay: 'event-loop delay',
  eventLoopUtilization: 'event-loop utilisation',
  heapUsed: 'heap used',
  rss: 'resident set size',
  inFlight: 'requests in flight',
}

/**
 * The load-shedding guard behind both adapters' `loadShedding()`: refuses with 503
 * `IC_OVERLOADED` when a measure is over its threshold (or, between the soft point and the
 * threshold, a growing share of requests), with the reason in the error's `details` and a
 * `Retry-After`, plus jitter: the minimum for an overload seen in one sample only (a stall
 * that has already ended), growing with the pressure while consecutive samples are over. A
 * request it meets twice (mounted app-wide and on a route) is judged and counted once.
 *
 * @example
 * const guard = loadSheddingGuard({ maxEventLoopDelayMs: 200, maxInFlight: 100 })
 */
export function loadSheddingGuard(options: Readonly<LoadSheddingOptions>): Guard {
  knownOptions(options, LOAD_SHEDDING_OPTIONS, 'loadShedding')
  const sampler = options.sampler
  // `current` is what every request reads: a sampler without it would fail them all.
  if (
    sampler !== undefined &&
    (typeof sampler !== 'object' ||
      sampler === null ||
      typeof sampler.isOverloaded !== 'function' ||
      typeof sampler.current !== 'object' ||
      sampler.current === null)
  )
    throw new TypeError(
      `Expected \`sampler\` to be a sampler made by createLoadSampler(), with \`current\` (the latest sample) and \`isOverloaded()\`, got ${typeof sampler === 'object' && sampler !== null ? 'an object without them' : showValue(sampler)}`,
    )
  const own = readThresholds(options)
  const thresholds: LoadThresholds = { ...sampler?.thresholds, ...own }
  const maxInFlight =
    options.maxInFlight === undefined
      ? undefined
      : numberOption('maxInFlight', options.maxInFlight, { min: 1, integer: true })
  const soft = numberOption(
    'softThresholdRatio',
    options.softThresholdRatio === undefined ? 1 : options.softThresholdRatio,
    { min: 0, max: 1, exclusiveMin: true },
  )
  const minRetry = numberOption(
    'minRetryAfterSeconds',
    options.minRetryAfterSeconds === undefined ? 1 : options.minRetryAfterSeconds,
    { min: 1, max: 86400, integer: true },
  )
  // The default maximum rises to a minimum set above it, rather than refusing an option never given.
  const maxRetry = numberOption(
    'maxRetryAfterSeconds',
    options.maxRetryAfterSeconds === undefined ? Math.max(30, minRetry) : options.maxRetryAfterSeconds,
    { min: minRetry, max: 86400, integer: true },
  )
  const jitter = numberOption(
    'retryAfterJitterRatio',
    options.retryAfterJitterRatio === undefined ? 0.5 : options.retryAfterJitterRatio,
    { min: 0, max: 10 },
  )
  const random = functionOption('random', options.random) ?? Math.random
  const usesSample =
    thresholds.maxEventLoopDelayMs !== undefined ||
    thresholds.maxEventLoopUtilization !== undefined ||
    thresholds.maxHeapUsedBytes !== undefined ||
    thresholds.maxRssBytes !== undefined
  if (!usesSample && maxInFlight === undefined)
    throw new TypeError(
      'Expected at least one of `maxEventLoopDelayMs`, `maxEventLoopUtilization`, `maxHeapUsedBytes`, `maxRssBytes`, `maxInFlight`',
    )
  const source = usesSample ? (sampler ?? defaultSampler()) : undefined

  let judgedSample: LoadSample | undefined
  let judged: OverloadReason | undefined
  let lasting = false
  let inFlight = 0
  // The responses this instance let through, each with whether it still counts in flight. An
  // instance a request meets twice (mounted app-wide and on its route) judges and counts it once.
  const admitted = new WeakMap<ServerResponse, boolean>()
  function release(this: ServerResponse): void {
    if (admitted.get(this) !== true) return
    admitted.set(this, false)
    inFlight--
  }

  function refuse(reason: OverloadReason, scaled: boolean): never {
    const over = scaled ? Math.min(1, Math.max(0, reason.pressure - 1)) : 0
    const base = minRetry + (maxRetry - minRetry) * over
    // Whole seconds, then whole seconds of jitter: rounding base × (1 + jitter × r) up told
    // every client at the threshold the same 2 s, the herd the jitter is there to spread.
    // Rounded to the nearest: a sampled measure is refused only above its threshold, and
    // rounding up would never give it the minimum.
    const seconds = Math.max(1, Math.round(base))
    const spread = jitter > 0 ? Math.max(1, Math.floor(seconds * jitter)) : 0
    const retryAfterSeconds = seconds + Math.floor(random() * (spread + 1))
    const value = reason.type === 'inFlight' ? reason.value : Math.round(reason.value * 1000) / 1000
    throw icError('IC_OVERLOADED', {
      message: `Overloaded: ${LABELS[reason.type]} ${value} against a threshold of ${reason.threshold}`,
      retryAfterSeconds,
      details: {
        reason: reason.type,
        value: reason.value,
        threshold: reason.threshold,
        pressure: reason.pressure,
      },
      stack: false,
    })
  }

  return function loadShedding(_req, res) {
    if (admitted.has(res)) return undefined
    let reason: OverloadReason | undefined
    if (source !== undefined) {
      const sample = source.current
      if (sample !== judgedSample) {
        judgedSample = sample
        judged = highestPressure(sample, thresholds)
        // One window over, the one before under: a stall that has ended by the time it is read
        // (a boot step, a sync JSON.parse) must not send every client away for half a minute.
        const before = source.previous
        lasting =
          judged !== undefined &&
          judged.pressure > 1 &&
          before !== undefined &&
          (highestPressure(before, thresholds)?.pressure ?? 0) > 1
      }
      reason = judged
    }
    const samplePressure = reason === undefined ? 0 : reason.pressure
    // In flight, the limit itself is already too many (pressure 1 refuses); a sampled measure must exceed its threshold.
    const flightPressure = maxInFlight === undefined ? 0 : inFlight / maxInFlight
    const pressure = Math.max(flightPressure, samplePressure)
    if (pressure > soft || samplePressure > 1 || flightPressure >= 1) {
      const hard = samplePressure > 1 || flightPressure >= 1
      if (hard || random() < (pressure - soft) / (1 - soft)) {
        if (flightPressure > samplePressure || reason === undefined)
          refuse(
            { type: 'inFlight', value: inFlight, threshold: maxInFlight as number, pressure: flightPressure },
            true,
          )
        refuse(reason, lasting)
      }
    }
    if (maxInFlight === undefined) {
      admitted.set(res, false)
    } else {
      inFlight++
      admitted.set(res, true)
      res.on('finish', release)
      // Not res.on('close'): a pipelined response whose client left while it was queued never closes.
      onResponseClose(res, release)
    }
    return undefined
  }
}
