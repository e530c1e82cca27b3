import { MAX_JSON_DEPTH } from './text.ts'

/**
 * Whether JSON text nests deeper than `limit`, found in one pass over the text before it is
 * parsed: brackets inside strings do not count. Invalid JSON is left for the parser to refuse.
 */
export function jsonTextTooDeep(text: string, limit = MAX_JSON_DEPTH): boolean {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 92 /* \ */) i++
      else if (c === 34 /* " */) inString = false
    } else if (c === 34) {
      inString = true
    } else if (c === 123 /* { */ || c === 91 /* [ */) {
      if (++depth > limit) return true
    } else if (c === 125 /* } */ || c === 93 /* ] */) {
      depth--
    }
  }
  return false
}

/** Depth of a parsed value, without recursion (a hostile value must not exhaust the stack). */
export function jsonDepth(value: unknown, limit = MAX_JSON_DEPTH): number {
  let deepest = 0
  const stack: Array<[unknown, number]> = [[value, 0]]
  while (stack.length > 0) {
    const [current, depth] = stack.pop()!
    if (depth > deepest) deepest = depth
    if (deepest > limit) return deepest
    if (current && typeof current === 'object') {
      for (const child of Object.values(current)) stack.push([child, depth + 1])
    }
  }
  return deepest
}
