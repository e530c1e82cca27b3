/**
 * Normalising the fields of a received mail, shared by the MIME parser (mime.ts) and the Graph
 * message reader (graph-message.ts) so that both sources give the pipeline the same shapes.
 */
import { isUtf8 } from 'node:buffer'
import { createHash } from 'node:crypto'
import type { InboundHeader } from '../../../db/schema.ts'
import { EARLIEST_INSTANT, LATEST_INSTANT } from '../../lib/text.ts'
import type { ParsedMail } from './parsed-mail.ts'

export const DEFAULT_MAX_HEADERS = 500
export const MAX_HEADER_VALUE_CHARS = 8 * 1024
export const MAX_REFERENCES = 100
// Indexed: a btree entry must stay under 2,704 bytes, whatever the characters.
const MAX_MESSAGE_ID_CHARS = 500
const MAX_ATTACHMENT_NAME_CHARS = 255
const MAX_PROBLEMS = 50

/** SHA-256 of no bytes, hex. */
export const EMPTY_SHA256 = createHash('sha256').digest('hex')

export type Importance = ParsedMail['importance']

/** Short descriptions of what could not be read as given; each said once, at most MAX_PROBLEMS. */
export class ProblemList {
  readonly #seen = new Set<string>()
  #dropped = 0

  add(problem: string): void {
    if (this.#seen.has(problem)) return
    if (this.#seen.size >= MAX_PROBLEMS) {
      this.#dropped++
      return
    }
    this.#seen.add(problem)
  }

  toArray(): string[] {
    const problems = [...this.#seen]
    if (this.#dropped > 0) problems.push(`${this.#dropped} more problems not listed`)
    return problems
  }
}

export function emptyParsedMail(): ParsedMail {
  return {
    messageId: null,
    inReplyTo: null,
    references: [],
    subject: '',
    from: null,
    sender: null,
    replyTo: [],
    to: [],
    cc: [],
    bcc: [],
    returnPath: null,
    date: null,
    importance: 'normal',
    headers: [],
    text: '',
    html: null,
    attachments: [],
    report: null,
    contentType: 'text/plain',
    problems: [],
  }
}

/** `value` cut to `max` characters; the cut is recorded as a problem naming `what`. */
export function cutText(value: string, max: number, what: string, problems: ProblemList): string {
  if (value.length <= max) return value
  problems.add(`${what} cut to ${max} characters`)
  return value.slice(0, max)
}

// ---------------------------------------------------------------------------------------------
// Message-IDs

/** The first `<id>` of a Message-ID style value, without the brackets; a bare value as is. */
export function bareMessageId(value: string | null | undefined): string | null {
  if (typeof value !== 'string') return null
  const bracketed = /<([^<>]*)>/.exec(value)
  const id = (bracketed ? bracketed[1]! : value).trim()
  if (id === '' || id.length > MAX_MESSAGE_ID_CHARS) return null
  return id
}

/**
 * The Message-IDs of References (one string, or the header's values), without brackets, oldest
 * first. Past MAX_REFERENCES the root and the most recent ones are kept: those are what threading
 * matches on.
 */
export function referenceList(values: string | readonly string[] | null | undefined, problems: ProblemList): string[] {
  if (values === null || values === undefined) return []
  const text = typeof values === 'string' ? values : values.join(' ')
  const bracketed = [...text.matchAll(/<([^<>]*)>/g)].map((match) => match[1]!.trim())
  const ids = (bracketed.length > 0 ? bracketed : text.split(/[\s,]+/)).filter((id) => id !== '' && id.length <= MAX_MESSAGE_ID_CHARS)
  if (ids.length <= MAX_REFERENCES) return ids
  problems.add(`References cut to ${MAX_REFERENCES} of ${ids.length} Message-IDs`)
  return [ids[0]!, ...ids.slice(ids.length - (MAX_REFERENCES - 1))]
}

// ---------------------------------------------------------------------------------------------
// Addresses

export function normaliseAddress(address: string | null | undefined): string {
  return typeof address === 'string' ? address.trim().toLowerCase() : ''
}

/** Lower case, without empty entries and duplicates, in first-seen order. */
export function uniqueAddresses(addresses: Iterable<string | null | undefined>): string[] {
  const unique = new Set<string>()
  for (const address of addresses) {
    const normalised = normaliseAddress(address)
    if (normalised !== '') unique.add(normalised)
  }
  return [...unique]
}

// ---------------------------------------------------------------------------------------------
// Headers

/** Header lines joined (RFC 5322 unfolding), stray CR/LF dropped, trimmed. */
export function unfold(value: string): string {
  return value
    .replace(/\r?\n(?=[ \t])/g, '')
    .replace(/[\r\n]+/g, ' ')
    .trim()
}

/**
 * A raw header line as mailsplit keeps it (bytes as latin1 characters, folding included):
 * name lower case, value after the first colon, unfolded, read as UTF-8.
 */
export function headerFromRawLine(name: string, rawLine: string, problems: ProblemList): InboundHeader {
  const headerName = name.trim().toLowerCase()
  // Enough bytes for MAX_HEADER_VALUE_CHARS characters, whatever their UTF-8 length.
  const rawLimit = rawLine.indexOf(':') + 1 + 4 * MAX_HEADER_VALUE_CHARS + 64
  const rawWasCut = rawLine.length > rawLimit
  const bytes = Buffer.from(rawWasCut ? rawLine.slice(0, rawLimit) : rawLine, 'latin1')
  if (!rawWasCut && !isUtf8(bytes)) problems.add(`header ${headerName} has bytes that are not UTF-8`)
  const line = bytes.toString('utf8')
  const colon = line.indexOf(':')
  const value = unfold(colon < 0 ? '' : line.slice(colon + 1))
  if (rawWasCut && value.length <= MAX_HEADER_VALUE_CHARS) problems.add(`header ${headerName} cut to ${MAX_HEADER_VALUE_CHARS} characters`)
  return { name: headerName, value: cutText(value, MAX_HEADER_VALUE_CHARS, `header ${headerName}`, problems) }
}

/**
 * The header section of a returned message (text/rfc822-headers, or the start of a
 * message/rfc822 part): every header up to the first empty line, names lower case.
 */
export function parseHeaderSection(text: string, maxHeaders: number, problems: ProblemList): InboundHeader[] {
  const headers: InboundHeader[] = []
  let current: { name: string; value: string } | null = null
  const finishCurrent = () => {
    if (current === null) return
    const value = unfold(current.value)
    headers.push({ name: current.name, value: cutText(value, MAX_HEADER_VALUE_CHARS, `original header ${current.name}`, problems) })
    current = null
  }
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === '') break
    if (/^[ \t]/.test(line)) {
      if (current !== null) current.value += ' ' + line
      continue
    }
    finishCurrent()
    const colon = line.indexOf(':')
    const name = colon > 0 ? line.slice(0, colon).trim().toLowerCase() : ''
    if (/^[!-9;-~]+$/.test(name)) current = { name, value: line.slice(colon + 1) }
  }
  finishCurrent()
  return capHeaders(headers, maxHeaders, 'original headers', problems)
}

export function capHeaders(headers: InboundHeader[], max: number, what: string, problems: ProblemList): InboundHeader[] {
  if (headers.length <= max) return headers
  problems.add(`${what}: only the first ${max} of ${headers.length} kept`)
  return headers.slice(0, max)
}

export function firstHeader(headers: readonly InboundHeader[], name: string): string | null {
  return headers.find((header) => header.name === name)?.value ?? null
}

/** Return-Path: the address lower case, `''` for the null path `<>`, null when absent or empty. */
export function returnPathOf(headers: readonly InboundHeader[]): string | null {
  const value = firstHeader(headers, 'return-path')
  if (value === null) return null
  const bracketed = /<([^<>]*)>/.exec(value)
  if (bracketed) return normaliseAddress(bracketed[1])
  const bare = normaliseAddress(value.split(/\s/)[0])
  return bare === '' ? null : bare
}

/** A Date header as a Date; null when it is not a date JavaScript and PostgreSQL both hold. */
export function parseMailDate(value: string | null | undefined): Date | null {
  if (typeof value !== 'string' || value.trim() === '') return null
  const date = new Date(value.trim())
  const time = date.getTime()
  if (Number.isNaN(time) || time < EARLIEST_INSTANT || time > LATEST_INSTANT) return null
  return date
}

const IMPORTANCE_READERS: ReadonlyArray<[header: string, read: (value: string) => Importance | null]> = [
  ['importance', (value) => wordImportance(value)],
  ['x-priority', (value) => numericImportance(value)],
  ['x-msmail-priority', (value) => wordImportance(value)],
  ['priority', (value) => urgencyImportance(value)],
]

function wordImportance(value: string): Importance | null {
  const word = value.trim().toLowerCase()
  return word === 'high' || word === 'low' || word === 'normal' ? word : null
}

/** Priority (RFC 2156): urgent, normal, non-urgent. */
function urgencyImportance(value: string): Importance | null {
  switch (value.trim().toLowerCase()) {
    case 'urgent':
      return 'high'
    case 'non-urgent':
      return 'low'
    case 'normal':
      return 'normal'
    default:
      return null
  }
}

/** X-Priority: 1 (Highest) ... 5 (Lowest). */
function numericImportance(value: string): Importance | null {
  const level = Number.parseInt(value.trim(), 10)
  if (level === 1 || level === 2) return 'high'
  if (level === 3) return 'normal'
  if (level === 4 || level === 5) return 'low'
  return null
}

/** From Importance, X-Priority, X-MSMail-Priority or Priority, the first that says something. */
export function importanceOf(headers: readonly InboundHeader[]): Importance | null {
  for (const [name, read] of IMPORTANCE_READERS) {
    const value = firstHeader(headers, name)
    const importance = value === null ? null : read(value)
    if (importance !== null) return importance
  }
  return null
}

// ---------------------------------------------------------------------------------------------
// Attachments

const EXTENSIONS: Record<string, string> = {
  'text/plain': '.txt',
  'text/html': '.html',
  'text/csv': '.csv',
  'text/calendar': '.ics',
  'text/rfc822-headers': '.txt',
  'message/rfc822': '.eml',
  'message/global': '.eml',
  'message/delivery-status': '.txt',
  'message/global-delivery-status': '.txt',
  'message/disposition-notification': '.txt',
  'application/pdf': '.pdf',
  'application/zip': '.zip',
  'application/json': '.json',
  'application/xml': '.xml',
  'application/ms-tnef': '.dat',
  'image/png': '.png',
  'image/jpeg': '.jpg',
  'image/gif': '.gif',
  'image/webp': '.webp',
  'image/svg+xml': '.svg',
}

// C0/C1 controls, DEL, line/paragraph separators and bidirectional controls: a name must read as it is.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const NOT_IN_NAMES = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g

/**
 * A file name safe to show and store: no directories (`../../etc/passwd` → `passwd`), no control
 * characters, at most 255 characters (the extension kept). Unnamed parts get `attachment-<n>`
 * with an extension from the content type.
 */
export function attachmentName(filename: string | null | undefined, position: number, contentType: string): string {
  const base = (typeof filename === 'string' ? filename : '').replace(NOT_IN_NAMES, '').split(/[/\\]/).pop()!.trim()
  if (base === '' || base === '.' || base === '..') return `attachment-${position}${EXTENSIONS[contentType] ?? ''}`
  return shortenName(base)
}

function shortenName(name: string): string {
  const chars = Array.from(name)
  if (chars.length <= MAX_ATTACHMENT_NAME_CHARS) return name
  const dot = name.lastIndexOf('.')
  const extension = dot > 0 && name.length - dot <= 16 ? Array.from(name.slice(dot)) : []
  return chars.slice(0, MAX_ATTACHMENT_NAME_CHARS - extension.length).join('') + extension.join('')
}

/** A Content-ID without brackets; null when empty. */
export function bareContentId(value: string | null | undefined): string | null {
  if (typeof value !== 'string') return null
  const id = value.trim().replace(/^<+/, '').replace(/>+$/, '').trim()
  return id === '' ? null : id.slice(0, MAX_MESSAGE_ID_CHARS)
}
