import type { IncomingMessage } from 'node:http'
import { isIcError } from '../../errors.ts'
import { type Guard, isThenable, type Published } from '../../guard.ts'
import { knownOptions, showValue } from '../../options.ts'
import { type ParsedQuery, parseQuery } from '../../query.ts'
import type { ValidationItem } from '../../validation-header.ts'
import { type ApiKeyOptions, compileApiKey } from '../api-key/index.ts'
import {
  type CompiledImageParams,
  checkImageParams,
  compileImageParams,
  type ImageParamsOptions,
} from '../image-params/index.ts'
import {
  type CompiledPermissions,
  checkPermissions,
  compilePermissions,
  PERMISSION_PARAMS,
  type PermissionsOptions,
} from '../permissions/index.ts'
import { compileSignature, foldBrackets, type SignatureOptions } from '../signature/index.ts'

/**
 * Options of `requestRules()`: the options of each rule to run; a rule left out is not run.
 *
 * @example
 * const options: RequestRulesOptions = {
 *   signature: { accounts: { acme: 'secret' } },
 *   permissions: { hostsAllowed: ['*.example.com'] },
 *   imageParams: { maxWidth: 4000 },
 * }
 */
export interface RequestRulesOptions {
  readonly apiKey?: Readonly<ApiKeyOptions>
  readonly signature?: Readonly<SignatureOptions>
  readonly permissions?: Readonly<PermissionsOptions>
  readonly imageParams?: Readonly<ImageParamsOptions>
}

type Step = (
  req: IncomingMessage,
  query: ParsedQuery,
  out: Record<string, unknown>,
) => undefined | Promise<void>

/** Copies what a rule published under `key` (its only key) onto `out`, now or when it settles. */
function publishAs(
  out: Record<string, unknown>,
  key: 'apiKey' | 'account',
  values: Published | undefined | Promise<Published | undefined>,
): undefined | Promise<void> {
  if (values === undefined) return undefined
  if (isThenable(values)) {
    return Promise.resolve(values).then((resolved) => {
      if (resolved !== undefined) out[key] = resolved[key]
    })
  }
  out[key] = values[key]
  return undefined
}

/** Compiles the options of one rule; a configuration error says which of requestRules' options it is in. */
function compileIn<T>(rule: keyof RequestRulesOptions, compile: () => T): T {
  try {
    return compile()
  } catch (err) {
    if (err instanceof TypeError)
      throw new TypeError(`In \`${rule}\` of requestRules: ${err.message}`, { cause: err })
    throw err
  }
}

/** Which rule reads the query parameter `name`, if one of those configured does. */
function readerOf(
  name: string,
  signature: Readonly<SignatureOptions> | undefined,
  permissions: CompiledPermissions | undefined,
  imageParams: CompiledImageParams | undefined,
): string | undefined {
  if (signature !== undefined) {
    if (name === 'icac' || name === 'ichm') return 'signature'
    for (const rule of Object.values(signature.features ?? {}))
      if (rule.params?.includes(name) === true || rule.param === name) return 'signature (its `features`)'
  }
  if (permissions !== undefined) {
    if (PERMISSION_PARAMS.includes(name)) return 'permissions'
    // A key counted as processing would let a request for the original image through.
    if (!permissions.allowOriginalImageRequest && permissions.processing.has(name))
      return 'permissions (its `processingParams`)'
  }
  const rule = imageParams?.known.get(name)
  if (rule !== undefined && rule !== null) return 'imageParams'
  return undefined
}

function run(
  steps: readonly Step[],
  from: number,
  req: IncomingMessage,
  query: ParsedQuery,
  out: Record<string, unknown>,
): Published | Promise<Published> {
  for (let i = from; i < steps.length; i++) {
    const pending = (steps[i] as Step)(req, query, out)
    if (pending !== undefined) return pending.then(() => run(steps, i + 1, req, query, out))
  }
  return out
}

/**
 * Several request rules as ONE middleware (each Express layer costs about 1% of
 * throughput): the API key, then the signature, then the permission rules, then the image
 * parameters, each with the options you give it; the first refusal wins, except that with
 * `imageParams` every 400 `IS_VALIDATION_ERROR` of the permission rules and of the parameters
 * (and the query problems a gated signature refuses) goes out as one (each failure an item),
 * after the 401s of both. The API key's query parameter, when there is one, is exempt from
 * `imageParamsAllowed`. Publishes what the rules publish (`apiKey`, `account`, `source`,
 * `imageParams`). Synchronous unless a `lookup` is asynchronous. A signature covers the
 * query, not the path (see `signature()`): with `signature`, let the query choose the image
 * (`origin`), not the path.
 *
 * @example
 * import { requestRules } from 'image-api-errors/express'
 * app.get('/img', requestRules({
 *   signature: { accounts: { acme: process.env.ACME_SECRET as string } },
 *   permissions: { allowDynamicOrigin: true, hostsAllowed: ['*.example.com'] },
 *   imageParams: { maxWidth: 4000 },
 * }), handler)
 */
export function requestRules(options: Readonly<RequestRulesOptions>): Guard {
  knownOptions(options, ['apiKey', 'signature', 'permissions', 'imageParams'], 'requestRules')
  const steps: Step[] = []
  const { apiKey, signature, permissions, imageParams } = options
  if (apiKey !== undefined) {
    const check = compileIn('apiKey', () => compileApiKey(apiKey))
    steps.push((req, query, out) => publishAs(out, 'apiKey', check(req, query)))
  }
  if (signature !== undefined) {
    const check = compileIn('signature', () => compileSignature(signature))
    // imageParams refuses every problem of the query, listed with its own findings.
    const othersReported = imageParams !== undefined
    steps.push((_req, query, out) => publishAs(out, 'account', check(query, othersReported)))
  }
  const rules =
    permissions === undefined ? undefined : compileIn('permissions', () => compilePermissions(permissions))
  if (rules !== undefined && imageParams === undefined) {
    steps.push((_req, query, out) => {
      const source = checkPermissions(rules, query)
      if (source !== undefined) out.source = source
      return undefined
    })
  }
  let compiledImageParams: CompiledImageParams | undefined
  if (imageParams !== undefined) {
    // signature({ features }) reads `width[]` as `width` and refuses the two together; with
    // imageParams it leaves that repetition to this step, as the query's other problems.
    const gatedSignature = signature !== undefined && Object.keys(signature.features ?? {}).length > 0
    const keyParam = apiKey?.query
    // The API key's query parameter belongs to apiKey(): imageParamsAllowed must not refuse it.
    const compiled = compileIn('imageParams', () =>
      compileImageParams(imageParams, typeof keyParam === 'string' ? keyParam : undefined),
    )
    compiledImageParams = compiled
    steps.push((_req, query, out) => {
      let found: readonly ValidationItem[] | undefined
      if (rules !== undefined) {
        try {
          const source = checkPermissions(rules, query, true)
          if (source !== undefined) out.source = source
        } catch (err) {
          // Every 400 of a request in one answer: the permission rules' are listed with the parameters'.
          if (!isIcError(err) || err.status !== 400 || err.validation === undefined) throw err
          found = err.validation
        }
      }
      if (gatedSignature && query.brackets) {
        // After the permission 401s, as a plain `width=1&width=2` is.
        const { repeated } = foldBrackets(query)
        if (repeated.length > 0) found = found === undefined ? repeated : [...found, ...repeated]
      }
      out.imageParams = checkImageParams(compiled, query, found)
      return undefined
    })
  }
  if (steps.length === 0) throw new TypeError('Expected at least one rule in requestRules()')
  const keyParam = apiKey?.query
  if (typeof keyParam === 'string') {
    const reader = readerOf(keyParam, signature, rules, compiledImageParams)
    if (reader !== undefined)
      throw new TypeError(
        `Expected \`apiKey.query\` to be a parameter no other rule reads, got ${showValue(keyParam)}, which ${reader} reads too`,
      )
  }
  return function requestRules(req) {
    return run(steps, 0, req, parseQuery(req), {})
  }
}
