/** The anchors GitHub gives a Markdown file's headings (github-slugger's rules). */
export function anchorsOf(markdown: string): Set<string>
/** Every relative link of the Markdown files under `root` that does not resolve inside it, described. */
export function brokenLinks(root: string): string[]
