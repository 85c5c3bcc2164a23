// Keeps the results stated in the TSDoc `@example` blocks of src/, and in the `js`/`ts` code blocks of the
// Markdown docs (MARKDOWN_DOCS), true, so the documentation never lies.
//
// Every `@example` block of every src/**/*.ts file (not *.test.ts) is read as text, compiled with esbuild's
// TypeScript loader (examples may show types) and run in a scope holding every export of its own module, of
// src/index.ts, and what its module imports from src/ (a Markdown block: every export of src/express.ts). A line `expression // <literal>` (or an expression line followed by a line that is only
// `// <literal>`) is a claim: its value must deepStrictEqual the literal. `// throws` (optionally `: text`)
// claims that it throws (the key words of the text must be in the message). A quoted result with `…` only
// fixes the start and the end (and the parts between, in order). Other lines run as set-up, in order.
//
// A block stops (and its remaining claims are not checked) when it needs what an example cannot have here:
// a request, an app, a server... seen as a ReferenceError for one of CONTEXT_NAMES. Any other error fails.

import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { transformSync } from 'esbuild'
import createError from 'http-errors'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SRC = join(ROOT, 'src')
const MARKDOWN_DOCS = ['README.md', 'docs/api.md', 'docs/frameworks.md']

// Names that examples take from the reader's own program: the request, the response, the app, a router, a
// handler, a database, a logger... An example needing one of them cannot run here. A ReferenceError for any
// other name fails: an example that uses a renamed or removed export must not be skipped silently.
const CONTEXT_NAMES: ReadonlySet<string> = new Set([
  'a', // rate-limit: two rate-limit option objects of the reader's
  'accounts',
  'app',
  'b',
  'body', // a request or response body
  'client', // a redis client
  'compiled', // compiled options in a request handler
  'ctx',
  'db',
  'err',
  'fetchImage', // the reader's createBackendFetch() result
  'found',
  'handler',
  'head', // the first bytes of a response body
  'http', // node:http, to create a server
  'key',
  'log',
  'logger',
  'metrics',
  'options', // the options object a factory received
  'req',
  'res',
  'router',
  'sample', // a LoadSample of the reader's
  'search', // a request's query string
  'sendCommand', // the reader's Redis command function
  'token',
  'tokens',
  'url',
  // Names of the Markdown docs' fragments
  'attempt', // a retry loop's attempt number
  'chartUrl',
  'findAccount', // the reader's account lookup
  'handle', // the reader's request handler
  'outputHeight',
  'outputWidth',
  'readFile', // node:fs/promises
  'renderChart',
  'signedUrl',
  'store', // a rate-limit store of the reader's
  'userSuppliedName',
])

// Blocks that must not run at all: they talk to a server or to the network. Matched by file and a line of
// the example.
const DO_NOT_RUN: readonly { file: string; text: string; reason: string }[] = [
  ...['README.md', 'docs/api.md'].map((file) => ({ file, text: '.listen(', reason: 'starts a server' })),
  { file: 'README.md', text: "import ImageCharts from 'image-charts'", reason: 'asks the running demo' },
  { file: 'README.md', text: 'await fetchWithRetry(', reason: 'fetches from the network' },
  // Compiled against the real framework types by scripts/test-package.sh's consumer instead.
  { file: 'docs/frameworks.md', text: 'declare global {', reason: 'a declaration file: types only' },
  {
    file: 'src/middlewares/rate-limit/redis-store.ts',
    text: 'const client = await createClient(',
    reason: 'connects to a Redis server',
  },
  {
    file: 'src/middlewares/retry/index.ts',
    text: "const res = await fetchWithRetry('https://image-charts.com/",
    reason: 'fetches from the network',
  },
]

// Blocks that end by throwing on purpose: they show how to raise an error. The error must be the one shown.
const isIcErrorOf = (code: string, status: number) => (error: unknown) =>
  error instanceof Error &&
  (error as Error & { code?: unknown }).code === code &&
  (error as Error & { status?: unknown }).status === status
const THROWS_ON_PURPOSE: readonly { file: string; text: string; check: (error: unknown) => boolean }[] = [
  ...['src/catalogue.ts', 'README.md'].map((file) => ({
    file,
    text: "throw icError('ACME_QUOTA_EXCEEDED')",
    check: isIcErrorOf('ACME_QUOTA_EXCEEDED', 402),
  })),
  {
    file: 'docs/api.md',
    text: "throw icError('IS_VALIDATION_ERROR'",
    check: isIcErrorOf('IS_VALIDATION_ERROR', 400),
  },
]

// Claims that are false because the CODE is wrong (a real bug, reported, not fixed here). They keep failing,
// on purpose, until the code is fixed; then remove the entry (a listed claim that passes fails too).
// Matched by file and the claim line's text.
const KNOWN_WRONG: readonly { file: string; text: string; why: string }[] = []

// What the harness checks today: a drop below these means the harness, not the docs, regressed.
const MIN_BLOCKS = 250
const MIN_CHECKED_CLAIMS = 80 // 84 of the 88 claims (TSDoc and Markdown) were checked when this was written

// Packages that examples import from, mapped to the sources.
const PACKAGE_MODULES: Readonly<Record<string, string>> = {
  'image-api-errors': 'src/index.ts',
  'image-api-errors/express': 'src/express.ts',
  'image-api-errors/koa': 'src/koa.ts',
}

// Names an example may use without importing them, besides the exports of its module, of src/index.ts and
// what its module imports from other modules of src/: `createError` is http-errors'.
const EXTRA_SCOPE: Readonly<Record<string, unknown>> = { createError }

interface SourceLine {
  readonly text: string
  readonly line: number
}

interface Claim {
  readonly id: number
  readonly line: number
  /** The claim as written, e.g. `decodeComponent('a+b%2Fc') // 'a b/c'`. */
  readonly text: string
  readonly expression: string
  readonly kind: 'value' | 'throws'
  readonly expected?: unknown
  /** For a quoted result with `…`: the parts that must appear, in order, at the start and the end. */
  readonly parts?: readonly string[]
  /** For `// throws: text`: the text. */
  readonly message?: string
}

interface Block {
  readonly file: string
  readonly line: number
  readonly lines: readonly SourceLine[]
  readonly claims: readonly Claim[]
}

interface ClaimOutcome {
  status: 'passed' | 'failed' | 'unreached'
  error?: unknown
}

interface BlockOutcome {
  readonly block: Block
  readonly claims: ClaimOutcome[]
  skip?: string
  stoppedAt?: string
  error?: unknown
}

const srcName = (path: string) => relative(ROOT, path).split('\\').join('/')

/** What `file` imports (not types only) from other modules of src/: the names an example there may use. */
function importedScope(
  file: string,
  modules: ReadonlyMap<string, Record<string, unknown>>,
): Record<string, unknown> {
  const scope: Record<string, unknown> = {}
  const source = readFileSync(join(ROOT, file), 'utf8')
  for (const [, bindings, specifier] of source.matchAll(
    /^import\s+\{([^}]*)\}\s+from\s+'(\.{1,2}\/[^']+)'/gm,
  )) {
    const module = modules.get(srcName(resolve(dirname(join(ROOT, file)), specifier ?? '')))
    if (module === undefined) continue
    for (const binding of (bindings ?? '').split(',')) {
      const [imported, local = imported] = binding.trim().split(/\s+as\s+/)
      if (imported === undefined || imported === '' || imported.startsWith('type ')) continue
      if (local !== undefined && imported in module) scope[local] = module[imported]
    }
  }
  return scope
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((entry) => {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) return sourceFiles(path)
      return entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') && !entry.name.endsWith('.d.ts')
        ? [path]
        : []
    })
    .sort()
}

/** The index of the `//` that starts a trailing comment, outside strings and templates; -1 when none. */
function commentStart(line: string): number {
  let quote: string | undefined
  for (let i = 0; i < line.length; i++) {
    const c = line[i]
    if (quote !== undefined) {
      if (c === '\\') i++
      else if (c === quote) quote = undefined
    } else if (c === "'" || c === '"' || c === '`') quote = c
    else if (c === '/' && line[i + 1] === '/') return i
  }
  return -1
}

/** The JS literal at the start of `text` (a string, number, keyword, or array/object of them), if any. */
function leadingLiteral(text: string): string | undefined {
  const first = text[0]
  let end = 0
  if (first === "'" || first === '"') {
    for (let i = 1; i < text.length; i++) {
      if (text[i] === '\\') i++
      else if (text[i] === first) {
        end = i + 1
        break
      }
    }
  } else if (first === '[' || first === '{') {
    let depth = 0
    let quote: string | undefined
    for (let i = 0; i < text.length && end === 0; i++) {
      const c = text[i]
      if (quote !== undefined) {
        if (c === '\\') i++
        else if (c === quote) quote = undefined
      } else if (c === "'" || c === '"') quote = c
      else if (c === '[' || c === '{') depth++
      else if ((c === ']' || c === '}') && --depth === 0) end = i + 1
    }
  } else {
    const match =
      /^(?:-?(?:\d[\d_]*(?:\.\d+)?(?:e[+-]?\d+)?n?|0x[\da-f]+)|true|false|undefined|null|NaN)(?![\w$.])/i.exec(
        text,
      )
    end = match?.[0].length ?? 0
  }
  if (end === 0) return undefined
  const rest = text.slice(end)
  // What may follow a literal: nothing, or an explanation (`: why`, `, also when`, ` (NAT64 of ...)`, ` when`).
  if (rest !== '' && !/^[\s:,;(]/.test(rest)) return undefined
  return text.slice(0, end)
}

function evaluateLiteral(literal: string): { value: unknown } | undefined {
  try {
    return { value: new Function(`return (${literal})`)() }
  } catch {
    return undefined // not a literal after all (e.g. it names a variable)
  }
}

function isExpression(code: string): boolean {
  if (code === '' || /^(?:const|let|var|if|for|while|return|throw|import|export|function|class)\b/.test(code))
    return false
  try {
    transformSync(`(async () => (\n${code}\n))`, { loader: 'ts' })
    return true
  } catch {
    return false
  }
}

let nextClaimId = 0

/** The claim stated by `result` (a trailing comment's text) about `expression`, if it is one. */
function claimOf(expression: string, result: string, line: number, text: string): Claim | undefined {
  const throws = /^throws\b(?::\s*(.*))?$/.exec(result)
  if (throws) {
    const message = throws[1]?.trim()
    return {
      id: nextClaimId++,
      line,
      text,
      expression,
      kind: 'throws',
      ...(message ? { message } : {}),
    }
  }
  const literal = leadingLiteral(result)
  if (literal === undefined) return undefined
  const quoted = literal[0] === "'" || literal[0] === '"'
  if (literal.includes('…') && !quoted) return undefined // `{ status: 500, … }`: an outline, not a value
  const parsed = evaluateLiteral(literal)
  if (parsed === undefined) return undefined
  if (quoted && typeof parsed.value === 'string' && parsed.value.includes('…'))
    return { id: nextClaimId++, line, text, expression, kind: 'value', parts: parsed.value.split('…') }
  return { id: nextClaimId++, line, text, expression, kind: 'value', expected: parsed.value }
}

function exampleBlocks(file: string): Block[] {
  const source = readFileSync(file, 'utf8')
  const name = srcName(file)
  const blocks: Block[] = []
  for (const comment of source.matchAll(/\/\*\*[\s\S]*?\*\//g)) {
    const startLine = source.slice(0, comment.index).split('\n').length
    const lines = comment[0].split('\n').map((text, i) => ({
      line: startLine + i,
      text: text
        .replace(/^\s*\/\*\*\s?/, '')
        .replace(/\s*\*\/$/, '')
        .replace(/^\s*\*(?: |$)/, ''),
    }))
    let current: SourceLine[] | undefined
    let currentLine = 0
    const flush = () => {
      while (current !== undefined && current.length > 0 && current[current.length - 1]?.text.trim() === '')
        current.pop()
      if (current !== undefined && current.length > 0)
        blocks.push({ file: name, line: currentLine, lines: current, claims: [] })
      current = undefined
    }
    for (const line of lines) {
      const tag = /^\s*@(\w+)/.exec(line.text)
      if (tag !== null) {
        flush()
        if (tag[1] === 'example') {
          current = []
          currentLine = line.line
        }
        continue
      }
      if (current !== undefined && !/^\s*```/.test(line.text)) current.push(line)
    }
    flush()
  }
  return blocks.map((block) => ({ ...block, claims: claimsOf(block.lines) }))
}

/** The `js` and `ts` fenced code blocks of a Markdown file. */
function markdownBlocks(file: string): Block[] {
  const blocks: Block[] = []
  let current: SourceLine[] | undefined
  let currentLine = 0
  readFileSync(join(ROOT, file), 'utf8')
    .split('\n')
    .forEach((text, i) => {
      if (current === undefined) {
        if (/^```(?:js|ts|javascript|typescript)\s*$/.test(text)) {
          current = []
          currentLine = i + 1
        }
      } else if (/^```\s*$/.test(text)) {
        blocks.push({ file, line: currentLine, lines: current, claims: claimsOf(current) })
        current = undefined
      } else current.push({ text, line: i + 1 })
    })
  return blocks
}

function claimsOf(lines: readonly SourceLine[]): Claim[] {
  const claims: Claim[] = []
  lines.forEach((line, i) => {
    const start = commentStart(line.text)
    if (start < 0) return
    const code = line.text.slice(0, start).trim()
    const result = line.text.slice(start + 2).trim()
    if (code !== '') {
      if (isExpression(code)) {
        const claim = claimOf(code, result, line.line, line.text.trim())
        if (claim) claims.push(claim)
      }
      return
    }
    // A comment-only line states the result of the expression on the line before it.
    const previous = lines[i - 1]
    if (previous === undefined || commentStart(previous.text) >= 0) return
    const expression = previous.text.trim()
    if (!isExpression(expression)) return
    const claim = claimOf(expression, result, previous.line, `${expression} ${line.text.trim()}`)
    if (claim) claims.push(claim)
  })
  return claims
}

/** `import { a, b as c } from 'm'` and `import d from 'm'` as statements that run inside a function. */
function importAsCode(line: string): string | undefined {
  const match = /^\s*import\s+(type\s+)?(.+?)\s+from\s+['"]([^'"]+)['"]\s*;?\s*$/.exec(line)
  if (match === null) return undefined
  if (match[1] !== undefined) return ''
  const clause = match[2] ?? ''
  const specifier = JSON.stringify(match[3])
  const namespace = /^\*\s+as\s+([\w$]+)$/.exec(clause)
  if (namespace) return `const ${namespace[1]} = await __import(${specifier});`
  const named = /^(?:([\w$]+)\s*,?\s*)?(?:\{([^}]*)\})?$/.exec(clause)
  if (named === null) return undefined
  const bindings = [
    ...(named[1] ? [`default: ${named[1]}`] : []),
    ...(named[2] ?? '')
      .split(',')
      .map((b) => b.trim().replace(/^type\s+.*/, ''))
      .filter((b) => b !== '')
      .map((b) => b.replace(/\s+as\s+/, ': ')),
  ]
  return `const { ${bindings.join(', ')} } = await __import(${specifier});`
}

/** The lines, with an import statement written over several lines joined into one. */
function joinImports(lines: readonly SourceLine[]): SourceLine[] {
  const out: SourceLine[] = []
  let open: SourceLine | undefined
  for (const line of lines) {
    if (open !== undefined) {
      open = { line: open.line, text: `${open.text} ${line.text.trim()}` }
      if (/\bfrom\s+['"][^'"]+['"]\s*;?\s*$/.test(line.text)) {
        out.push(open)
        open = undefined
      }
    } else if (/^\s*import\b[^'"]*\{[^}]*$/.test(line.text)) open = line
    else out.push(line)
  }
  if (open !== undefined) out.push(open)
  return out
}

type Check = (id: number, evaluate: () => unknown) => unknown

function compile(block: Block, names: readonly string[]): (...args: unknown[]) => Promise<void> {
  const claimByLine = new Map(block.claims.map((claim) => [claim.line, claim]))
  const body = joinImports(block.lines).map(({ text, line }) => {
    const imported = importAsCode(text)
    if (imported !== undefined) return imported
    const claim = claimByLine.get(line)
    if (claim === undefined) return text
    const asynchronous = /\bawait\b/.test(claim.expression) ? 'async ' : ''
    const wait = asynchronous ? 'await ' : ''
    return claim.kind === 'throws'
      ? `${wait}__throws(${claim.id}, ${asynchronous}() => {\n${claim.expression}\n});`
      : `${wait}__claim(${claim.id}, ${asynchronous}() => (\n${claim.expression}\n));`
  })
  const code = [
    '(async (__scope, __import, __claim, __throws) => {',
    `const { ${names.join(', ')} } = __scope;`,
    '{',
    ...body,
    '}',
    '})',
  ].join('\n')
  const { code: js } = transformSync(code, { loader: 'ts', target: 'es2023' })
  return new Function(`return ${js}`)() as (...args: unknown[]) => Promise<void>
}

function contextName(error: unknown): string | undefined {
  if (!(error instanceof ReferenceError)) return undefined
  const name = /^(\S+) is not defined$/.exec(error.message)?.[1]
  return name !== undefined && CONTEXT_NAMES.has(name) ? name : undefined
}

class Stop extends Error {}

function keyWords(text: string): string[] {
  return text
    .split(/\s+/)
    .map((word) => word.replace(/^[`'"(]+|[`'".,;:)]+$/g, '').toLowerCase())
    .filter((word) => word.length > 1)
}

async function runBlock(
  block: Block,
  modules: ReadonlyMap<string, Record<string, unknown>>,
): Promise<BlockOutcome> {
  const outcome: BlockOutcome = { block, claims: block.claims.map(() => ({ status: 'unreached' })) }
  const doNotRun = DO_NOT_RUN.find(
    (s) => s.file === block.file && block.lines.some((l) => l.text.includes(s.text)),
  )
  if (doNotRun) {
    outcome.skip = doNotRun.reason
    return outcome
  }
  const markdown = block.file.endsWith('.md')
  const scope: Record<string, unknown> = {
    ...modules.get(markdown ? 'src/express.ts' : 'src/index.ts'),
    ...(markdown ? {} : importedScope(block.file, modules)),
    ...modules.get(block.file),
    ...EXTRA_SCOPE,
  }
  const names = Object.keys(scope).filter((name) => /^[A-Za-z_$][\w$]*$/.test(name) && name !== 'default')
  const byId = new Map(block.claims.map((claim, i) => [claim.id, outcome.claims[i] as ClaimOutcome]))
  const claimById = (id: number) => block.claims.find((claim) => claim.id === id) as Claim
  const record = (id: number, error?: unknown) => {
    const result = byId.get(id) as ClaimOutcome
    result.status = error === undefined ? 'passed' : 'failed'
    if (error !== undefined) result.error = error
  }
  const stopAt = (name: string, id: number): never => {
    outcome.stoppedAt = `\`${name}\` at line ${claimById(id).line}`
    throw new Stop()
  }
  const check: Check = (id, evaluate) => {
    const claim = claimById(id)
    const compare = (value: unknown) => {
      try {
        if (claim.parts !== undefined) {
          const parts = claim.parts
          assert.equal(typeof value, 'string', `${claim.text}: a string`)
          const text = value as string
          assert.ok(text.startsWith(parts[0] ?? ''), `${claim.text}: ${JSON.stringify(text)} starts so`)
          assert.ok(
            text.endsWith(parts[parts.length - 1] ?? ''),
            `${claim.text}: ${JSON.stringify(text)} ends so`,
          )
          let at = (parts[0] ?? '').length
          for (const part of parts.slice(1, -1)) {
            const found = text.indexOf(part, at)
            assert.ok(found >= 0, `${claim.text}: ${JSON.stringify(text)} holds ${JSON.stringify(part)}`)
            at = found + part.length
          }
          assert.ok(
            at <= text.length - (parts[parts.length - 1] ?? '').length,
            `${claim.text}: parts in order`,
          )
        } else assert.deepStrictEqual(value, claim.expected, claim.text)
        record(id)
      } catch (error) {
        record(id, error)
      }
      return value
    }
    let value: unknown
    try {
      value = evaluate()
    } catch (error) {
      const name = contextName(error)
      if (name !== undefined) stopAt(name, id)
      record(id, error)
      return undefined
    }
    if (value instanceof Promise && /\bawait\b/.test(claim.expression)) {
      return value.then(compare, (error: unknown) => {
        const name = contextName(error)
        if (name !== undefined) stopAt(name, id)
        record(id, error)
      })
    }
    return compare(value)
  }
  const throws: Check = (id, evaluate) => {
    const claim = claimById(id)
    const judge = (error: unknown) => {
      const name = contextName(error)
      if (name !== undefined) stopAt(name, id)
      if (error instanceof ReferenceError) return record(id, error)
      const message = error instanceof Error ? error.message : String(error)
      const missing = keyWords(claim.message ?? '').filter((word) => !message.toLowerCase().includes(word))
      record(
        id,
        missing.length === 0
          ? undefined
          : new assert.AssertionError({
              message: `${claim.text}: the message ${JSON.stringify(message)} lacks ${missing}`,
            }),
      )
    }
    const notThrown = () => record(id, new assert.AssertionError({ message: `${claim.text}: did not throw` }))
    try {
      const value = evaluate()
      if (value instanceof Promise) return value.then(notThrown, judge)
      notThrown()
    } catch (error) {
      judge(error)
    }
    return undefined
  }
  const importModule = async (specifier: string): Promise<unknown> => {
    const local = PACKAGE_MODULES[specifier]
    return local !== undefined ? modules.get(local) : import(specifier)
  }
  let run: (...args: unknown[]) => Promise<void>
  try {
    run = compile(block, names)
  } catch (error) {
    outcome.error = error
    return outcome
  }
  const onPurpose = THROWS_ON_PURPOSE.find(
    (t) => t.file === block.file && block.lines.some((l) => l.text.includes(t.text)),
  )
  try {
    await run(scope, importModule, check, throws)
  } catch (error) {
    if (error instanceof Stop) return outcome
    const name = contextName(error)
    if (name !== undefined) {
      outcome.stoppedAt = `\`${name}\``
      return outcome
    }
    if (onPurpose?.check(error) !== true) outcome.error = error
    return outcome
  }
  if (onPurpose !== undefined)
    outcome.error = new assert.AssertionError({ message: `expected the example to end by ${onPurpose.text}` })
  return outcome
}

const files = sourceFiles(SRC)
const modules = new Map<string, Record<string, unknown>>()
for (const file of files)
  modules.set(srcName(file), (await import(pathToFileURL(file).href)) as Record<string, unknown>)
const blocks = [...files.flatMap(exampleBlocks), ...MARKDOWN_DOCS.flatMap(markdownBlocks)]
// Secrets that examples read from the environment (`process.env.ACME_SECRET`) get a value, as in production.
for (const block of blocks)
  for (const { text } of block.lines)
    for (const [, name = ''] of text.matchAll(/\bprocess\.env\.([A-Z_][A-Z0-9_]*)/g))
      process.env[name] ??= `example-${name.toLowerCase()}`
const outcomes: BlockOutcome[] = []
for (const block of blocks) outcomes.push(await runBlock(block, modules))

const knownWrong = (block: Block, claim: Claim) =>
  KNOWN_WRONG.find((k) => k.file === block.file && claim.text.includes(k.text))

const short = (text: string) => (text.length > 90 ? `${text.slice(0, 89)}…` : text)

for (const outcome of outcomes) {
  const { block } = outcome
  const checked = outcome.claims.filter((c) => c.status !== 'unreached').length
  const first = block.claims[0]?.text ?? block.lines.find((l) => l.text.trim() !== '')?.text.trim() ?? ''
  const name = `${block.file}:${block.line} ${block.claims.length > 0 ? '' : 'runs: '}${short(first)}`
  if (
    outcome.skip !== undefined ||
    (outcome.error === undefined && outcome.stoppedAt !== undefined && checked === 0)
  ) {
    // Counted in the summary below rather than listed as skipped tests: they are not failures waiting.
    continue
  }
  test(name, async (t) => {
    t.diagnostic(`${checked} of ${block.claims.length} claim(s) checked`)
    if (outcome.stoppedAt !== undefined) t.diagnostic(`stopped: needs ${outcome.stoppedAt}`)
    if (outcome.error !== undefined) throw outcome.error
    for (const [i, claim] of block.claims.entries()) {
      const result = outcome.claims[i] as ClaimOutcome
      if (result.status === 'unreached') continue
      const wrong = knownWrong(block, claim)
      await t.test(short(claim.text), () => {
        if (wrong !== undefined) {
          assert.equal(result.status, 'failed', `KNOWN_WRONG claim now holds: remove it from KNOWN_WRONG`)
          assert.fail(`KNOWN_WRONG (a code bug, not fixed yet): ${wrong.why}\n${String(result.error)}`)
        }
        if (result.error !== undefined) throw result.error
      })
    }
  })
}

test('the harness checks a sizeable number of claims', (t) => {
  const claims = outcomes.flatMap((o) => o.claims)
  const checked = claims.filter((c) => c.status !== 'unreached').length
  const checkedBlocks = outcomes.filter((o) => o.claims.some((c) => c.status !== 'unreached')).length
  const skipped = outcomes.filter(
    (o) =>
      o.skip !== undefined || (o.stoppedAt !== undefined && o.claims.every((c) => c.status === 'unreached')),
  ).length
  t.diagnostic(
    `${blocks.length} example blocks in ${files.length} files; ${claims.length} claims, ${checked} checked ` +
      `in ${checkedBlocks} blocks; ${skipped} blocks skipped`,
  )
  assert.ok(
    blocks.length >= MIN_BLOCKS,
    `${blocks.length} example blocks found, expected at least ${MIN_BLOCKS}`,
  )
  assert.ok(
    checked >= MIN_CHECKED_CLAIMS,
    `${checked} claims checked, expected at least ${MIN_CHECKED_CLAIMS}`,
  )
})

test('every skip-list entry still matches an example', () => {
  for (const entry of [...DO_NOT_RUN, ...THROWS_ON_PURPOSE])
    assert.ok(
      blocks.some((b) => b.file === entry.file && b.lines.some((l) => l.text.includes(entry.text))),
      `no example in ${entry.file} has ${JSON.stringify(entry.text)}`,
    )
  for (const entry of KNOWN_WRONG)
    assert.ok(
      blocks.some((b) => b.file === entry.file && b.claims.some((c) => c.text.includes(entry.text))),
      `no claim in ${entry.file} has ${JSON.stringify(entry.text)}`,
    )
})
