// Writes docs/error-codes.md from the catalogue (npm run docs:codes); `--check` exits 1 when the file is stale.
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { type ErrorCodeEntry, errorCatalogue } from '../src/catalogue.ts'

const target = fileURLToPath(new URL('../docs/error-codes.md', import.meta.url))

const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\n/g, ' ')

/** The Markdown of docs/error-codes.md. */
export function renderErrorCodes(): string {
  const entries = Object.entries(errorCatalogue) as [string, ErrorCodeEntry][]
  const byStatus = [...entries].sort(([a, x], [b, y]) => x.status - y.status || a.localeCompare(b))
  const lines = [
    '# Error codes',
    '',
    '<!-- Generated from src/catalogue.ts by `npm run docs:codes`. Do not edit by hand. -->',
    '',
    'Every error response carries its code in the `x-ic-error-code` header (and as `code` in the',
    '`application/problem+json` body). Validation failures also carry `x-ic-error-validation`, a',
    'JSON array of `{ "message", "path", "type" }` objects. Codes marked *Image-Charts* are',
    'Image-Charts’ own codes, used where the failure is the same. *Retryable* says whether the',
    'same request may succeed later: a client may retry it with truncated exponential backoff',
    'and jitter (at least 1 s), honouring `Retry-After`. The package’s own client,',
    '`fetchWithRetry()`, follows Image-Charts’ rule: it retries network errors, 429 and 502 (the',
    'default of its `statuses` option), and never a response whose `x-ic-error-code` is marked *no* here',
    '(the 502 `IC_TOO_MANY_REDIRECTS`); a retryable code of another status, such as the 503',
    '`IC_OVERLOADED`, is retried only when `statuses` names that status.',
    '',
    '| Code | Status | Title | Retryable | Retry-After |',
    '|---|---|---|---|---|',
    ...byStatus.map(
      ([code, e]) =>
        `| [\`${code}\`](#${code.toLowerCase()}) | ${e.status} | ${cell(e.title)} | ${e.retryable ? 'yes' : 'no'} | ${e.retryAfterSeconds === undefined ? '—' : `${e.retryAfterSeconds} s`} |`,
    ),
    '',
  ]
  for (const [code, e] of byStatus) {
    lines.push(
      `## ${code}`,
      '',
      `**${e.status} ${e.title}**${e.origin === 'image-charts' ? ' · *Image-Charts code*' : ''}${e.since === undefined ? '' : ` · since ${e.since}`}`,
      '',
      e.description,
      '',
      `- Retryable: ${e.retryable ? 'yes' : 'no'}${e.retryAfterSeconds === undefined ? '' : ` (default \`Retry-After: ${e.retryAfterSeconds}\`)`}`,
      `- What to do: ${e.hint}`,
      '',
    )
  }
  return lines.join('\n')
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const text = renderErrorCodes()
  if (process.argv.includes('--check')) {
    const current = readFileSync(target, 'utf8')
    if (current !== text) {
      console.error('docs/error-codes.md is stale: run npm run docs:codes')
      process.exit(1)
    }
  } else {
    writeFileSync(target, text)
    console.log(`wrote ${target}`)
  }
}
