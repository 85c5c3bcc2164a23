import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
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
