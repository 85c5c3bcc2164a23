#!/usr/bin/env node
// Checks every relative link of every Markdown file under a directory (the unpacked npm
// package, in scripts/test-package.sh): the file it names must exist inside that directory,
// and a heading it names (`#anchor`) must exist in the Markdown file it points at. Links with a
// scheme (https:, mailto:) are left alone. Usage: node scripts/check-md-links.mjs <dir>
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

/** Markdown without what is not prose: fenced blocks, HTML comments and code spans. */
function prose(markdown) {
  return (
    markdown
      .replace(/^ {0,3}(`{3,}|~{3,})[^\n]*\n[\s\S]*?^ {0,3}\1[^\n]*$/gm, '')
      .replace(/<!--[\s\S]*?-->/g, '')
      // A code span closes on a run of as many backticks, within its paragraph; a lone backtick is text.
      .replace(/(?<!`)(`+)(?!`)(?:(?!\n[ \t]*\n)[\s\S])*?(?<!`)\1(?!`)/g, '')
  )
}

/**
 * The anchors GitHub gives a Markdown file's headings (github-slugger's rules).
 * @param {string} markdown
 * @returns {Set<string>}
 */
export function anchorsOf(markdown) {
  const anchors = new Set()
  const seen = new Map()
  const text = markdown.replace(/^ {0,3}(`{3,}|~{3,})[^\n]*\n[\s\S]*?^ {0,3}\1[^\n]*$/gm, '')
  // ATX headings (`## Title`) and setext ones (a line underlined with === or ---), in order.
  for (const [, atx, setext] of text.matchAll(/^(?:#{1,6} (.+)|([^\n]+)\n {0,3}(?:=+|-+)[ \t]*)$/gm)) {
    const base = (atx ?? setext)
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
      .replace(/ /g, '-')
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    anchors.add(n === 0 ? base : `${base}-${n}`)
  }
  return anchors
}

/** Every link target of a Markdown text: inline links and images, reference definitions, HTML href and src. */
function targetsOf(markdown) {
  const text = prose(markdown)
  const targets = []
  for (const [, target] of text.matchAll(/\]\(\s*<?([^)\s>]*)>?(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)/g))
    targets.push(target)
  for (const [, target] of text.matchAll(/^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?/gm)) targets.push(target)
  for (const [, target] of text.matchAll(/\s(?:href|src)\s*=\s*["']([^"']*)["']/gi)) targets.push(target)
  return targets
}

function markdownFiles(dir) {
  const out = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory() && entry.name !== 'node_modules') out.push(...markdownFiles(path))
    else if (entry.isFile() && entry.name.toLowerCase().endsWith('.md')) out.push(path)
  }
  return out
}

/** The broken links of every Markdown file under `root`, as `file: target (why)`. */
export function brokenLinks(root) {
  const top = resolve(root)
  const broken = []
  for (const file of markdownFiles(top).sort()) {
    const markdown = readFileSync(file, 'utf8')
    const name = relative(top, file)
    for (const target of targetsOf(markdown)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//')) continue
      const hash = target.indexOf('#')
      const path = hash === -1 ? target : target.slice(0, hash)
      const anchor = hash === -1 ? undefined : target.slice(hash + 1)
      let decoded
      try {
        decoded = decodeURIComponent(path)
      } catch {
        broken.push(`${name}: ${target} (malformed percent-encoding)`)
        continue
      }
      const linked = decoded === '' ? file : resolve(dirname(file), decoded)
      const inside = relative(top, linked)
      if (inside === '..' || inside.startsWith(`..${sep}`)) {
        broken.push(`${name}: ${target} (outside the package)`)
        continue
      }
      if (!existsSync(linked)) {
        broken.push(`${name}: ${target} (not in the package)`)
        continue
      }
      if (
        anchor !== undefined &&
        anchor !== '' &&
        statSync(linked).isFile() &&
        linked.toLowerCase().endsWith('.md') &&
        !anchorsOf(readFileSync(linked, 'utf8')).has(decodeURIComponent(anchor))
      )
        broken.push(`${name}: ${target} (no such heading)`)
    }
  }
  return broken
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = process.argv[2]
  if (root === undefined) {
    console.error('usage: node scripts/check-md-links.mjs <dir>')
    process.exit(2)
  }
  const broken = brokenLinks(root)
  for (const line of broken) console.error(`broken link: ${line}`)
  if (broken.length > 0) process.exit(1)
  console.log(`every relative link of the Markdown files under ${root} resolves`)
}
