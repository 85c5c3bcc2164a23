import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { anchorsOf, brokenLinks } from '../scripts/check-md-links.mjs'
import { renderErrorCodes } from '../scripts/generate-error-codes.ts'
import { errorCatalogue } from '../src/catalogue.ts'

describe('docs/error-codes.md', () => {
  it('is generated from the current catalogue (run npm run docs:codes when this fails)', () => {
    assert.equal(readFileSync(new URL('../docs/error-codes.md', import.meta.url), 'utf8'), renderErrorCodes())
  })

  it('documents every code, and every code is in the CHANGELOG', () => {
    const docs = readFileSync(new URL('../docs/error-codes.md', import.meta.url), 'utf8')
    const changelog = readFileSync(new URL('../CHANGELOG.md', import.meta.url), 'utf8')
    for (const code of Object.keys(errorCatalogue)) {
      assert.ok(docs.includes(`## ${code}\n`), `${code} in docs/error-codes.md`)
      assert.ok(changelog.includes(code), `${code} in CHANGELOG.md`)
    }
  })
})

const MARKDOWN = [
  'README.md',
  'CHANGELOG.md',
  'BENCHMARKS.md',
  'bench/README.md',
  'docs/api.md',
  'docs/architecture.md',
  'docs/decisions.md',
  'docs/error-codes.md',
  'docs/frameworks.md',
]

describe('links between the Markdown files', () => {
  it('point at files that exist and at headings they have', () => {
    const root = new URL('../', import.meta.url)
    const broken: string[] = []
    for (const file of MARKDOWN) {
      const text = readFileSync(new URL(file, root), 'utf8')
      for (const [, target] of text.replace(/^```[\s\S]*?^```/gm, '').matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/i.test(target as string)) continue
        const [path, anchor] = (target as string).split('#') as [string, string | undefined]
        const linked = path === '' ? new URL(file, root) : new URL(path, new URL(file, root))
        if (!existsSync(linked)) {
          broken.push(`${file}: ${target} (no such file)`)
          continue
        }
        if (
          anchor !== undefined &&
          linked.pathname.endsWith('.md') &&
          !anchorsOf(readFileSync(linked, 'utf8')).has(anchor)
        )
          broken.push(`${file}: ${target} (no such heading)`)
      }
    }
    assert.deepEqual(broken, [])
  })
})

describe('scripts/check-md-links.mjs (test:package)', () => {
  it('sees links after a lone backtick, and headings underlined with === or ---', () => {
    const dir = mkdtempSync(join(tmpdir(), 'md-links-'))
    try {
      writeFileSync(
        join(dir, 'a.md'),
        'Prices in ` (a stray backtick).\n\nSee [gone](missing.md) and [b](b.md#usage-notes).\n\nCode `[x](nope.md)` is no link.\n',
      )
      writeFileSync(join(dir, 'b.md'), 'Title\n=====\n\nUsage notes\n-----------\n\ntext\n')
      assert.deepEqual(brokenLinks(dir), ['a.md: missing.md (not in the package)'])
      assert.deepEqual([...anchorsOf(readFileSync(join(dir, 'b.md'), 'utf8'))], ['title', 'usage-notes'])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
