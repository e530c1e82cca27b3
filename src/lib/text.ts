import { Type, type StringOptions } from '@sinclair/typebox'

/**
 * Characters no one-line text field takes: C0 and C1 controls, DEL, the line and paragraph
 * separators, the bidirectional embedding, override and isolate controls (they make a name
 * read other than it is) and unpaired UTF-16 surrogates. PostgreSQL refuses NUL in text and
 * unpaired surrogates in JSON; CR/LF in a name or a header value is an injection. Patterns are
 * compiled with the `u` flag (ajv's default), so a surrogate pair (an emoji) is one character.
 */
export const NOT_TEXT = '\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069\\uD800-\\uDFFF'
/**
 * Text that may span lines: TAB, LF and CR are allowed, and so are the bidirectional
 * controls right-to-left prose uses; other C0 and C1 controls and unpaired surrogates not.
 */
const NOT_MULTILINE_TEXT = '\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F\\uD800-\\uDFFF'

export const SINGLE_LINE_PATTERN = `^[^${NOT_TEXT}]*$`
export const MULTI_LINE_PATTERN = `^[^${NOT_MULTILINE_TEXT}]*$`

export const patternMessages = new Map<string, string>([
  [SINGLE_LINE_PATTERN, 'must be one line of text: remove control characters (NUL, CR, LF, TAB, bidirectional overrides and the like) and unpaired surrogates'],
  [MULTI_LINE_PATTERN, 'must be text: remove NUL and other control characters (CR, LF and TAB are fine) and unpaired surrogates'],
])

/** A one-line text field: names, ids, subjects, header values, filters. */
export function Text(options: StringOptions = {}) {
  return Type.String({ ...options, pattern: SINGLE_LINE_PATTERN })
}

/** Text that may span lines (CR, LF, TAB allowed). */
export function MultilineText(options: StringOptions = {}) {
  return Type.String({ ...options, pattern: MULTI_LINE_PATTERN })
}

/** The instants both JavaScript and PostgreSQL hold, whatever the offset. */
export const EARLIEST_INSTANT = Date.parse('0001-01-01T00:00:00Z')
export const LATEST_INSTANT = Date.parse('9999-12-31T23:59:59.999Z')
export const DATE_TIME_MESSAGE =
  'must be an RFC 3339 date-time such as 2026-01-31T09:00:00Z, between 0001-01-01 and 9999-12-31 UTC, without a leap second'

/** How deep any JSON value (a body, GraphQL variables, a JSON argument) may nest. */
export const MAX_JSON_DEPTH = 32
