/**
 * Plain text from an HTML body, for mail that has no text part. Uses html-to-text (what
 * mailparser itself uses) when the HTML is of a size and shape it converts in reasonable time,
 * else a linear tag strip.
 */
import { createRequire } from 'node:module'
import type { ProblemList } from './mail-fields.ts'

type HtmlToText = (html: string, options?: { limits?: { maxDepth?: number } }) => string

/** html-to-text's recursion overflows at about 2000 levels; mailparser converts up to 1000. */
const MAX_NESTING_DEPTH = 1000

// html-to-text ships no types and comes with mailparser (not a direct dependency), so it is
// loaded through require with the one signature used here, and missed gracefully.
const htmlToText: HtmlToText | null = (() => {
  try {
    return (createRequire(import.meta.url)('html-to-text') as { htmlToText: HtmlToText }).htmlToText
  } catch {
    return null
  }
})()

export function htmlToPlainText(html: string, maxConvertChars: number, problems: ProblemList): string {
  if (htmlToText === null) return stripTags(html)
  if (html.length > maxConvertChars) {
    problems.add(`html too long to convert to text (${html.length} characters); tags stripped instead`)
    return stripTags(html)
  }
  // htmlparser2 is quadratic in the nesting depth: 200k nested elements take many seconds.
  if (nestsDeeperThan(html, MAX_NESTING_DEPTH)) {
    problems.add(`html nested deeper than ${MAX_NESTING_DEPTH} levels; tags stripped instead`)
    return stripTags(html)
  }
  try {
    return htmlToText(html, { limits: { maxDepth: MAX_NESTING_DEPTH } })
  } catch (error) {
    problems.add(`html could not be converted to text (${errorMessage(error)}); tags stripped instead`)
    return stripTags(html)
  }
}

const VOID_ELEMENTS = new Set(['area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta', 'param', 'source', 'track', 'wbr'])
/** Closed implicitly by a sibling (li after li), so a run of them does not nest. */
const IMPLIED_END_ELEMENTS = new Set(['p', 'li', 'dt', 'dd', 'option', 'optgroup', 'tr', 'td', 'th', 'thead', 'tbody', 'tfoot', 'rt', 'rp'])

/**
 * Whether elements nest deeper than `max` the way an HTML parser builds them: an end tag closes
 * down to the nearest open element of its name and is ignored when none is open (so stray end
 * tags cannot hide depth). One linear pass.
 */
export function nestsDeeperThan(html: string, max: number): boolean {
  const stack: string[] = []
  const openCount = new Map<string, number>()
  for (const match of html.matchAll(/<(\/?)([A-Za-z][\w:-]*)[^<>]*>?/g)) {
    const name = match[2]!.toLowerCase()
    if (VOID_ELEMENTS.has(name) || IMPLIED_END_ELEMENTS.has(name)) continue
    if (match[1] === '') {
      stack.push(name)
      openCount.set(name, (openCount.get(name) ?? 0) + 1)
      if (stack.length > max) return true
    } else if ((openCount.get(name) ?? 0) > 0) {
      let closed: string | undefined
      do {
        closed = stack.pop()!
        openCount.set(closed, openCount.get(closed)! - 1)
      } while (closed !== name)
    }
  }
  return false
}

const BLOCK_ELEMENTS = /^(?:p|div|br|tr|li|h[1-6]|table|ul|ol|blockquote|pre|hr|section|article|header|footer)$/
const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' }

/** Text of HTML by dropping tags, comments, scripts and styles; linear in the input. */
export function stripTags(html: string): string {
  const lower = html.toLowerCase()
  let text = ''
  let position = 0
  while (position < html.length) {
    const open = html.indexOf('<', position)
    if (open < 0) {
      text += html.slice(position)
      break
    }
    text += html.slice(position, open)
    const skipTo = endOfMarkup(lower, open)
    if (skipTo < 0) break
    const name = /^<\/?([a-z][\w-]*)/.exec(lower.slice(open, open + 40))?.[1]
    if (name !== undefined && BLOCK_ELEMENTS.test(name)) text += '\n'
    position = skipTo
  }
  return decodeEntities(text)
    .replace(/[ \t\f\v]+/g, ' ')
    .replace(/ *\n[\s]*/g, '\n')
    .trim()
}

/** Where the markup starting at `open` ends (a comment, a script or style element, a tag); -1 when it runs to the end. */
function endOfMarkup(lower: string, open: number): number {
  if (lower.startsWith('<!--', open)) {
    const end = lower.indexOf('-->', open + 4)
    return end < 0 ? -1 : end + 3
  }
  const tagEnd = lower.indexOf('>', open)
  if (tagEnd < 0) return -1
  const rawText = /^<(script|style)\b/.exec(lower.slice(open, open + 8))?.[1]
  if (rawText === undefined) return tagEnd + 1
  const close = lower.indexOf(`</${rawText}`, tagEnd)
  if (close < 0) return -1
  const closeEnd = lower.indexOf('>', close)
  return closeEnd < 0 ? -1 : closeEnd + 1
}

function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-f]{1,6}|#\d{1,7}|[a-z]+);/gi, (entity, body: string) => {
    if (body.startsWith('#')) {
      const code = body[1] === 'x' || body[1] === 'X' ? Number.parseInt(body.slice(2), 16) : Number.parseInt(body.slice(1), 10)
      return code > 0 && code <= 0x10ffff && (code < 0xd800 || code > 0xdfff) ? String.fromCodePoint(code) : entity
    }
    return ENTITIES[body.toLowerCase()] ?? entity
  })
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
