import { type ErrorCode, lookupErrorCode } from '../../catalogue.ts'
import { icError } from '../../errors.ts'
import type { Guard, Published } from '../../guard.ts'
import { knownOptions, recordOption, showValue } from '../../options.ts'
import {
  bracketItem,
  distinctItems,
  isPlainName,
  type ParsedQuery,
  parseQuery,
  quoteName,
  rootName,
} from '../../query.ts'
import { ReadonlySetView } from '../../readonly-set.ts'
import type { ValidationItem } from '../../validation-header.ts'
import { bracketedSigningName, matchesAny, SIGNING_PARAMS, type SigningKey, signingKey } from './verify.ts'

export { signQuery, verifySignature } from './verify.ts'

/**
 * One signing account: its secrets (several while one is being rotated), and the features
 * it may use, listed or through its plan.
 *
 * @example
 * const account: SignatureAccount = { secrets: ['new-secret', 'old-secret'], plan: 'enterprise' }
 */
export interface SignatureAccount {
  readonly secrets: readonly string[]
  readonly features?: readonly string[]
  readonly plan?: string
}

/**
 * An account as configured: one secret, a list of secrets, or a full {@link SignatureAccount}.
 *
 * @example
 * const entry: SignatureAccountEntry = ['new-secret', 'old-secret']
 */
export type SignatureAccountEntry = string | readonly string[] | SignatureAccount

/**
 * A plan-gated feature: a request uses it when one of `params` is present or `test` says so.
 *
 * @example
 * const retina: FeatureRule = { params: ['icretina'], code: 'IC_RETINA_ERROR' }
 */
export interface FeatureRule {
  /** Parameters whose presence means the feature is used. */
  readonly params?: readonly string[]
  /** A finer test over the decoded query values. */
  readonly test?: (values: ReadonlyMap<string, string>) => boolean
  /**
   * The parameter a refusal found by `test` names in `x-ic-error-validation` (the one `test`
   * reads). @default the first of `params`, else the feature's name
   */
  readonly param?: string
  /** Code of the 403. @default 'IC_FEATURE_NOT_ALLOWED' */
  readonly code?: ErrorCode
}

/**
 * Options of `signature()`.
 *
 * @example
 * const options: SignatureOptions = {
 *   accounts: { acme: { secrets: [process.env.ACME_SECRET as string], plan: 'enterprise' } },
 *   features: imageChartsFeatures,
 *   plans: { enterprise: ['retina', 'locale'] },
 * }
 */
export interface SignatureOptions {
  /** Accounts by id (`icac`). */
  readonly accounts?: Readonly<Record<string, SignatureAccountEntry>>
  /**
   * Finds an account the `accounts` record does not hold (e.g. in a database); `undefined` when
   * unknown, as is an entry left without secrets once its `null` ones are skipped (`[]`,
   * `[null]`, `{ secrets: [] }`). Asked only for a well-formed id, in a request whose `ichm`
   * can be a signature (64 lower-case hex digits): an `icac` of anything but 1 to 128 printable ASCII characters
   * without spaces is 401 `IC_ACCOUNT_ID_NOT_FOUND`, any other `ichm` 401
   * `IC_INVALID_SIGNATURE`, both without a lookup, so `lookup` never sees a NUL, a control
   * character, a space or an id longer than 128 characters.
   */
  readonly lookup?: (
    accountId: string,
  ) => SignatureAccountEntry | undefined | Promise<SignatureAccountEntry | undefined>
  /** Refuse unsigned requests with 400 `IC_MISSING_ENT_PARAMETER`. @default false */
  readonly required?: boolean
  /**
   * Plan-gated features by name, e.g. {@link imageChartsFeatures}. Decided on the package's
   * strict parse: with features set, a query with a problem (a repeated parameter, malformed
   * percent-encoding, invalid base64) is refused with 400, and `name[…]` counts as `name`.
   * @default {}
   */
  readonly features?: Readonly<Record<string, FeatureRule>>
  /** Features of each plan, by plan name. @default {} */
  readonly plans?: Readonly<Record<string, readonly string[]>>
  /** Features unsigned requests may use; signed accounts may use them too. @default [] */
  readonly unsignedFeatures?: readonly string[]
}

/**
 * What `signature()` publishes as `account` for a signed request.
 *
 * @example
 * const account = res.locals.account as SignedAccount | undefined // undefined: unsigned request
 */
export interface SignedAccount {
  readonly id: string
  readonly features: ReadonlySet<string>
}

/**
 * Image-Charts' plan-gated features, each with the code Image-Charts answers with:
 * `retina` (`icretina`), `locale` (`iclocale`), `fontStyle` (`icfs`), `fontFamily`
 * (`icff`), `titleStyle` (`chts`), `multiAxis` (`chxt` beyond `x,y`), `compoundChart` (a
 * `D` line marker in `chm`).
 *
 * @example
 * signature({ accounts, features: imageChartsFeatures, plans: { enterprise: Object.keys(imageChartsFeatures) } })
 */
export const imageChartsFeatures: Readonly<Record<string, FeatureRule>> = Object.freeze({
  retina: { params: ['icretina'], code: 'IC_RETINA_ERROR' },
  locale: { params: ['iclocale'], code: 'IC_LOCALE_ERROR' },
  fontStyle: { params: ['icfs'], code: 'IC_UNAUTHORIZED_FONT_STYLE_ERROR' },
  fontFamily: { params: ['icff'], code: 'IC_UNAUTHORIZED_FONT_FAMILY_ERROR' },
  titleStyle: { params: ['chts'], code: 'IC_UNAUTHORIZED_STYLE_TITLE_ERROR' },
  multiAxis: {
    test: (values) => {
      const axes = values.get('chxt')
      if (axes === undefined) return false
      const list = axes.split(',')
      return list.length > 2 || list.some((axis) => axis !== 'x' && axis !== 'y')
    },
    param: 'chxt',
    code: 'IC_UNAUTHORIZED_MULTI_AXIS_ERROR',
  },
  compoundChart: {
    test: (values) => /(?:^|\|)D,/.test(values.get('chm') ?? ''),
    param: 'chm',
    code: 'IC_UNAUTHORIZED_COMPOUND_CHART_ERROR',
  },
})

/** The longest account id: a longer `icac` is an unknown account, never looked up. */
const MAX_ACCOUNT_ID_CHARS = 128

/**
 * What an account id can be: 1 to 128 printable ASCII characters, none of them a space or a
 * control character (Image-Charts' ids are names such as `test_fixture`). An `icac` (or
 * decoded `icac64`) outside this is 401 `IC_ACCOUNT_ID_NOT_FOUND` without a `lookup`; an
 * `accounts` id outside it throws at construction.
 */
const ACCOUNT_ID_RULE = `1 to ${MAX_ACCOUNT_ID_CHARS} printable ASCII characters, without spaces or control characters`
const ACCOUNT_ID = new RegExp(`^[\\x21-\\x7e]{1,${MAX_ACCOUNT_ID_CHARS}}$`)
/** What an `ichm` can be: an HMAC-SHA256 in lower-case hex, as Image-Charts writes it. */
const SIGNATURE_HEX = /^[0-9a-f]{64}$/

interface CompiledFeature {
  readonly name: string
  readonly params: readonly string[]
  readonly test: ((values: ReadonlyMap<string, string>) => boolean) | undefined
  /** What a refusal found by `test` names. */
  readonly param: string
  readonly code: ErrorCode
}

interface ResolvedAccount {
  readonly keys: readonly SigningKey[]
  readonly published: Published
  readonly features: ReadonlySet<string>
}

/** A secret a database holds for none: NULL. An empty string stays a broken secret (a 500). */
const noSecret = (secret: unknown): boolean => secret === null || secret === undefined

/**
 * A lookup() answer without the secrets no request can verify against (a database NULL in the
 * list: a LEFT JOIN's revoked key), or `undefined` when none is left:
 * an empty list, `{ secrets }` empty or NULL. Such an account is unknown, as `undefined` is:
 * a `rows.map(…)` of no rows must not fail with 500.
 */
function usableEntry(entry: unknown): unknown {
  if (Array.isArray(entry)) {
    const secrets = entry.filter((secret) => !noSecret(secret))
    return secrets.length === 0 ? undefined : secrets
  }
  if (typeof entry !== 'object' || entry === null) return entry
  const { secrets } = entry as { secrets?: unknown }
  if (secrets === null) return undefined
  if (!Array.isArray(secrets)) return entry
  const usable = secrets.filter((secret) => !noSecret(secret))
  // Over the row, not a spread of it: a model's plan and features may be getters of its class.
  return usable.length === 0
    ? undefined
    : Object.create(entry, { secrets: { value: usable, enumerable: true } })
}

function entryFeatures(
  entry: SignatureAccount,
  plans: ReadonlyMap<string, readonly string[]>,
  known: ReadonlySet<string>,
  option: string,
  unsigned: ReadonlySet<string>,
  configured: boolean,
): Set<string> {
  // A signature never takes away what an unsigned request may use.
  const features = new Set<string>(unsigned)
  // A lookup() row may hold a database NULL for no plan or no features of its own.
  const plan = entry.plan === null && !configured ? undefined : entry.plan
  const own = entry.features === null && !configured ? undefined : entry.features
  if (plan !== undefined) {
    const granted = plans.get(plan)
    if (granted === undefined) throw new TypeError(`Unknown plan ${showValue(plan)} in \`${option}.plan\``)
    for (const feature of granted) features.add(feature)
  }
  if (own !== undefined) {
    if (!Array.isArray(own)) throw new TypeError(`Expected \`${option}.features\` to be an array`)
    for (const feature of own) {
      if (!known.has(feature))
        throw new TypeError(`Unknown feature ${showValue(feature)} in \`${option}.features\``)
      features.add(feature)
    }
  }
  return features
}

function resolveAccount(
  id: string,
  entry: unknown,
  plans: ReadonlyMap<string, readonly string[]>,
  known: ReadonlySet<string>,
  option: string,
  unsigned: ReadonlySet<string>,
  configured = true,
): ResolvedAccount {
  const account: SignatureAccount =
    typeof entry === 'string'
      ? { secrets: [entry] }
      : Array.isArray(entry)
        ? { secrets: entry as string[] }
        : (entry as SignatureAccount)
  if (
    typeof account !== 'object' ||
    account === null ||
    !Array.isArray(account.secrets) ||
    account.secrets.length === 0
  )
    throw new TypeError(
      `Expected \`${option}\` to be a secret, a list of secrets or { secrets }, got ${typeof entry}`,
    )
  // A record from lookup() may be a database row with fields of its own; a configured account may not.
  if (configured && !Array.isArray(entry) && typeof entry === 'object')
    knownOptions(account, ['secrets', 'features', 'plan'], `\`${option}\``)
  for (const secret of account.secrets) {
    if (typeof secret !== 'string' || secret === '')
      throw new TypeError(`Expected \`${option}.secrets\` to hold non-empty strings`)
  }
  const features = new ReadonlySetView(entryFeatures(account, plans, known, option, unsigned, configured))
  return {
    keys: account.secrets.map(signingKey),
    features,
    published: { account: Object.freeze({ id, features }) as SignedAccount },
  }
}

/**
 * Image-Charts sends the code's description as the validation message when one half is missing;
 * each item names a parameter that is missing (or empty).
 */
function missing(message: string, params: readonly ('icac' | 'ichm')[], half: boolean): never {
  const detail = half ? (lookupErrorCode('IC_MISSING_ENT_PARAMETER')?.description ?? message) : message
  throw icError('IC_MISSING_ENT_PARAMETER', {
    message,
    validation: params.map((param) => ({ message: detail, path: [param], type: 'any.required' })),
  })
}

/**
 * A query with brackets as `qs` reads it: the values with every name under its root
 * (`icretina[]=1` is `icretina`; the first value wins), and a `query.repeated` item for each
 * root two names share (`width[]` and `width`), once. Internal: `requestRules()` lists these
 * items with `imageParams`' findings.
 *
 * @example
 * foldBrackets(parseQuery({ url: '/chart?chs[]=1x1&chs=2x2' })).repeated[0]?.path // ['chs']
 */
export function foldBrackets(query: ParsedQuery): {
  values: ReadonlyMap<string, string>
  repeated: ValidationItem[]
} {
  const folded = new Map<string, string>()
  const repeated: ValidationItem[] = []
  const reported = new Set<string>()
  const { names, texts } = query.values
  for (let i = 0; i < names.length; i++) {
    const root = rootName(names[i] as string)
    if (!folded.has(root)) folded.set(root, texts[i] as string)
    else if (!reported.has(root)) {
      reported.add(root)
      repeated.push({
        message: `${quoteName(root)} must not be repeated`,
        path: [root],
        type: 'query.repeated',
      })
    }
  }
  return { values: folded, repeated }
}

/**
 * The values plan-gated features are judged on: the package's strict parse, refused whole
 * (400, every problem listed) when the query has a problem. Let through, a problem reads
 * differently in the handler's parser: `req.query` keeps `icretina=%ZZ` as sent, gives an
 * array for `chxt=x,y&chxt=x,y,r` where the strict parse dropped a value. Names with brackets
 * count under their root (`icretina[]=1` is `icretina`, an array in `qs`); two names with the
 * same root are a repetition. With `othersReported`, a rule after this one refuses every
 * problem of the query, these repetitions included (`requestRules()` with `imageParams`), so
 * none is thrown here: they wait for the 401s that outrank them.
 */
function gatedValues(query: ParsedQuery, othersReported: boolean): ReadonlyMap<string, string> {
  if (othersReported) return query.brackets ? foldBrackets(query).values : query.values
  let issues = query.issues
  let values: ReadonlyMap<string, string> = query.values
  if (query.brackets) {
    const folded = foldBrackets(query)
    values = folded.values
    if (folded.repeated.length > 0) issues = [...issues, ...folded.repeated]
  }
  if (issues.length > 0) {
    throw icError('IS_VALIDATION_ERROR', {
      message: (issues[0] as ValidationItem).message,
      validation: distinctItems(issues),
    })
  }
  return values
}

function checkFeatures(
  features: readonly CompiledFeature[],
  granted: ReadonlySet<string>,
  values: ReadonlyMap<string, string>,
  who: string,
): void {
  let refused: { code: ErrorCode; items: ValidationItem[] } | undefined
  for (const feature of features) {
    if (granted.has(feature.name)) continue
    let used = feature.params.find((param) => values.has(param))
    if (used === undefined && feature.test?.(values) === true) used = feature.param
    if (used === undefined) continue
    const item = {
      message: `"${used}" needs the ${feature.name} feature, which ${who} does not include`,
      path: [used],
      type: 'feature.notAllowed',
    }
    if (refused === undefined) refused = { code: feature.code, items: [item] }
    else refused.items.push(item)
  }
  if (refused !== undefined) {
    throw icError(refused.code, {
      message: (refused.items[0] as ValidationItem).message,
      validation: refused.items,
    })
  }
}

/**
 * Image-Charts' signed requests: `icac` names the account, `ichm` is the lower-case hex
 * (as Image-Charts writes it; upper-case is a 401 `IC_INVALID_SIGNATURE`)
 * HMAC-SHA256 of the query string without `ichm` (anywhere in the query), accepted over the
 * raw or the percent-decoded query, under any of the account's secrets (rotation), compared
 * in constant time. `icac` without `ichm` or the reverse: 400 `IC_MISSING_ENT_PARAMETER`;
 * unknown account: 401 `IC_ACCOUNT_ID_NOT_FOUND`; wrong signature: 401
 * `IC_INVALID_SIGNATURE`; a feature the account's plan lacks: 403 with the feature's code.
 * The 401s are decided in this order, the first two without asking `lookup`: an `icac` no
 * account id can be (anything but 1 to 128 printable ASCII characters without spaces) is an
 * unknown account; an `ichm` no signature can be (not 64 lower-case hex digits) is a wrong
 * signature, whatever the account; then an account neither `accounts` nor `lookup` knows;
 * then a signature that does not match.
 * With `features`, a query problem (a repeated parameter, malformed percent-encoding,
 * invalid base64; `name` and `name[…]` together count as repeated) is 400
 * `IS_VALIDATION_ERROR`, every problem listed, since the handler's own parser would read
 * such a query differently from the parse the features were judged on.
 * Unsigned requests pass unless `required`. Publishes `account` for signed requests.
 *
 * Only the query is signed, never the path (Image-Charts' path is always `/chart`): a signed
 * query verifies on every path this guard is mounted on. Mount it where the query alone
 * chooses what is served, not on a route such as `/img/:name`, whose path would pick any
 * image under the same signature.
 *
 * @example
 * import { signature, imageChartsFeatures } from 'image-api-errors/express'
 * app.get('/chart', signature({
 *   accounts: { acme: ['current-secret', 'previous-secret'] },
 *   lookup: async (id) => db.accounts.findSecrets(id),
 *   features: imageChartsFeatures,
 * }), handler)
 */
export function signature(options: Readonly<SignatureOptions> = {}): Guard {
  const check = compileSignature(options)
  return function signature(req) {
    return check(parseQuery(req))
  }
}

/**
 * The check `signature()` and `requestRules()` run over a parsed query.
 *
 * @example
 * const check: SignatureCheck = compileSignature({ accounts: { acme: 'secret' } })
 */
export type SignatureCheck = (
  query: ParsedQuery,
  othersReported?: boolean,
) => Published | undefined | Promise<Published>

/**
 * Validates the options and returns the check `signature()` and `requestRules()` run.
 *
 * @example
 * const check = compileSignature({ accounts: { acme: 'secret' } })
 * check(parseQuery(req))
 */
export function compileSignature(options: Readonly<SignatureOptions> = {}): SignatureCheck {
  knownOptions(
    options,
    ['accounts', 'lookup', 'required', 'features', 'plans', 'unsignedFeatures'],
    'signature',
  )
  for (const record of ['accounts', 'features', 'plans'] as const)
    if (options[record] !== undefined) recordOption(record, options[record])
  const { lookup } = options
  if (lookup !== undefined && typeof lookup !== 'function')
    throw new TypeError(`Expected \`lookup\` to be a function, got ${typeof lookup}`)
  if (options.accounts === undefined && lookup === undefined)
    throw new TypeError('Expected `accounts` or `lookup`: signature() needs a way to find secrets')
  if (options.required !== undefined && typeof options.required !== 'boolean')
    throw new TypeError(`Expected \`required\` to be a boolean, got ${showValue(options.required)}`)
  const features: CompiledFeature[] = []
  for (const [name, rule] of Object.entries(options.features ?? {})) {
    const option = `features.${name}`
    if (typeof rule !== 'object' || rule === null)
      throw new TypeError(`Expected \`${option}\` to be a feature rule`)
    knownOptions(rule, ['params', 'test', 'param', 'code'], `\`${option}\``)
    const params = rule.params === undefined ? [] : rule.params
    if (!Array.isArray(params) || params.some((p) => typeof p !== 'string' || p === ''))
      throw new TypeError(
        `Expected \`${option}.params\` to be an array of parameter names, got ${showValue(params)}`,
      )
    // The query holds `NAME64` under `NAME` and `NAME[]` under its root: such a name is never present.
    const unreadable = params.find((p) => !isPlainName(p))
    if (unreadable !== undefined)
      throw new TypeError(
        `Expected \`${option}.params\` to hold plain parameter names (not ending in 64, without brackets: \`NAME64\` and \`NAME[]\` are read as \`NAME\`), got ${showValue(unreadable)}`,
      )
    if (rule.test !== undefined && typeof rule.test !== 'function')
      throw new TypeError(`Expected \`${option}.test\` to be a function`)
    if (params.length === 0 && rule.test === undefined)
      throw new TypeError(`Expected \`${option}\` to have \`params\` or \`test\``)
    if (rule.param !== undefined && (typeof rule.param !== 'string' || rule.param === ''))
      throw new TypeError(`Expected \`${option}.param\` to be a parameter name, got ${showValue(rule.param)}`)
    const code = rule.code === undefined ? 'IC_FEATURE_NOT_ALLOWED' : rule.code
    if (lookupErrorCode(code) === undefined)
      throw new TypeError(`Expected \`${option}.code\` to be a catalogue code, got ${showValue(code)}`)
    features.push({ name, params, test: rule.test, param: rule.param ?? params[0] ?? name, code })
  }
  const known = new Set(features.map((f) => f.name))
  const plans = new Map<string, readonly string[]>()
  for (const [plan, list] of Object.entries(options.plans ?? {})) {
    if (!Array.isArray(list))
      throw new TypeError(`Expected \`plans.${plan}\` to be an array of feature names`)
    for (const feature of list) {
      if (!known.has(feature))
        throw new TypeError(`Unknown feature ${showValue(feature)} in \`plans.${plan}\``)
    }
    plans.set(plan, [...list])
  }
  const unsigned = new Set<string>()
  if (options.unsignedFeatures !== undefined && !Array.isArray(options.unsignedFeatures))
    throw new TypeError(
      `Expected \`unsignedFeatures\` to be an array of feature names, got ${showValue(options.unsignedFeatures)}`,
    )
  for (const feature of options.unsignedFeatures ?? []) {
    if (!known.has(feature))
      throw new TypeError(`Unknown feature ${showValue(feature)} in \`unsignedFeatures\``)
    unsigned.add(feature)
  }
  const accounts = new Map<string, ResolvedAccount>()
  for (const [id, entry] of Object.entries(options.accounts ?? {})) {
    if (!ACCOUNT_ID.test(id))
      throw new TypeError(`Expected \`accounts\` ids to be ${ACCOUNT_ID_RULE}, got ${quoteName(id)}`)
    accounts.set(id, resolveAccount(id, entry, plans, known, `accounts.${id}`, unsigned))
  }
  const required = options.required === true
  const gated = features.length > 0

  const unknownAccount = (id: string): never => {
    const message = `Unknown account ${quoteName(id)}`
    throw icError('IC_ACCOUNT_ID_NOT_FOUND', {
      message,
      validation: [{ message, path: ['icac'], type: 'account.unknown' }],
    })
  }
  const invalidSignature = (): never => {
    const message = 'The ichm signature does not match the query'
    throw icError('IC_INVALID_SIGNATURE', {
      message,
      validation: [{ message, path: ['ichm'], type: 'signature.invalid' }],
    })
  }

  const finish = (
    account: ResolvedAccount | undefined,
    id: string,
    query: ParsedQuery,
    othersReported: boolean,
  ): Published => {
    if (account === undefined) return unknownAccount(id)
    if (!matchesAny(query.withoutSignature, query.values.get('ichm'), account.keys)) return invalidSignature()
    if (gated) checkFeatures(features, account.features, gatedValues(query, othersReported), `account ${id}`)
    return account.published
  }

  return (query, othersReported = false) => {
    const { values } = query
    for (const issue of query.issues) {
      if (SIGNING_PARAMS.has(String(issue.path?.[0]))) {
        throw icError('IS_VALIDATION_ERROR', { message: issue.message, validation: [issue] })
      }
    }
    const bracketed = bracketedSigningName(query)
    if (bracketed !== undefined) {
      const item = bracketItem(bracketed, rootName(bracketed))
      throw icError('IS_VALIDATION_ERROR', { message: item.message, validation: [item] })
    }
    const id = values.get('icac')
    const hasSignature = values.has('ichm')
    if (id === undefined && !hasSignature) {
      if (required) missing('This route needs a signed request: send icac and ichm', ['icac', 'ichm'], false)
      if (gated) checkFeatures(features, unsigned, gatedValues(query, othersReported), 'an unsigned request')
      return undefined
    }
    if (id === undefined || id === '' || !hasSignature) {
      // An empty icac counts as missing: `?icac=` alone lacks both halves.
      const absent = [
        ...(id === undefined || id === '' ? ['icac' as const] : []),
        ...(hasSignature ? [] : ['ichm' as const]),
      ]
      missing('icac and ichm must be sent together', absent, absent.length === 1)
    }
    // Answers that no account can change come first, so neither costs a lookup: an icac no
    // account id can be is unknown, an ichm no HMAC can be (not 64 lower-case hex) is wrong.
    if (!ACCOUNT_ID.test(id)) return unknownAccount(id)
    if (!SIGNATURE_HEX.test(values.get('ichm') as string)) return invalidSignature()
    const configured = accounts.get(id)
    if (configured !== undefined || lookup === undefined) return finish(configured, id, query, othersReported)
    return Promise.resolve(lookup(id)).then((answer) => {
      const entry = answer ? usableEntry(answer) : undefined
      return finish(
        entry === undefined
          ? undefined
          : resolveAccount(id, entry, plans, known, 'lookup()', unsigned, false),
        id,
        query,
        othersReported,
      )
    })
  }
}
