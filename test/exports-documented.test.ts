// Every export of the package's three entry points has TSDoc with an `@example` (the project's
// style rule), found through the TypeScript checker, so that a re-export counts as its declaration.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const ENTRIES = ['src/index.ts', 'src/express.ts', 'src/koa.ts'].map((file) => `${ROOT}${file}`)

test('every export of index, express and koa has TSDoc with an @example', (t) => {
  const config = ts.getParsedCommandLineOfConfigFile(
    `${ROOT}tsconfig.json`,
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (diagnostic) => assert.fail(String(diagnostic.messageText)),
    },
  )
  assert.ok(config !== undefined)
  const program = ts.createProgram(ENTRIES, config.options)
  const checker = program.getTypeChecker()
  const missing: string[] = []
  let exports = 0
  for (const entry of ENTRIES) {
    const file = program.getSourceFile(entry)
    const module = file === undefined ? undefined : checker.getSymbolAtLocation(file)
    assert.ok(module !== undefined, entry)
    for (const exported of checker.getExportsOfModule(module)) {
      exports++
      const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported
      if (!symbol.getJsDocTags(checker).some((tag) => tag.name === 'example'))
        missing.push(`${entry.slice(ROOT.length)}: ${exported.name}`)
    }
  }
  t.diagnostic(`${exports} exports checked`)
  // The three entry points export some 350 names between them: far fewer means the walk broke.
  assert.ok(exports > 300, `only ${exports} exports found`)
  assert.deepEqual(missing, [], `exports without an @example:\n${missing.join('\n')}`)
})
