/**
 * Raw MIME (RFC 5322) to ParsedMail, streaming through mailparser's MailParser: attachments are
 * hashed and counted as they flow by, never held whole. Hostile input never makes it throw; what
 * could not be read is listed in `problems`. Only an error of the source itself rejects.
 */
import { createHash } from 'node:crypto'
import { PassThrough, type Readable } from 'node:stream'
import { MailParser } from 'mailparser'
import type { AddressObject, AttachmentStream, EmailAddress, HeaderLines, Headers, HeaderValue, MailParserOptions, MessageText, StructuredHeader } from 'mailparser'
import type { InboundAttachment, InboundHeader } from '../../../db/schema.ts'
import { MAX_REPORT_PART_BYTES, readStatusReport, reportPartKind } from './delivery-report.ts'
import { errorMessage, htmlToPlainText } from './html-text.ts'
import {
  DEFAULT_MAX_HEADERS,
  MAX_HEADER_VALUE_CHARS,
  ProblemList,
  attachmentName,
  bareContentId,
  bareMessageId,
  capHeaders,
  cutText,
  emptyParsedMail,
  firstHeader,
  headerFromRawLine,
  importanceOf,
  parseHeaderSection,
  parseMailDate,
  referenceList,
  returnPathOf,
  uniqueAddresses,
} from './mail-fields.ts'
import type { MailAddress, MailReport, ParsedMail } from './parsed-mail.ts'

export interface ParseMimeOptions {
  /** Top-level headers kept (500). */
  maxHeaders?: number
  /** Characters of text body kept (1,000,000). */
  maxTextChars?: number
  /** Characters of html body kept (2,000,000); longer html is not converted to text with html-to-text. */
  maxHtmlChars?: number
  /** Attachment parts listed (2000); the rest are still read through, not listed. */
  maxParts?: number
}

type Limits = Required<ParseMimeOptions>

const DEFAULT_LIMITS: Limits = { maxHeaders: DEFAULT_MAX_HEADERS, maxTextChars: 1_000_000, maxHtmlChars: 2_000_000, maxParts: 2000 }
/** mailsplit's limit on the header block of one part (1 MB by default, which one 1 MB header line exceeds). */
const MAX_HEAD_BYTES = 2 * 1024 * 1024
/**
 * mailsplit stops parsing altogether past this many MIME parts (1000 by default), losing the
 * text; 10,000 parts parse in under a second, so the limit is set well above maxParts.
 */
const MIN_MIME_NODES = 20_000

export async function parseMime(source: AsyncIterable<Buffer>, options: ParseMimeOptions = {}): Promise<ParsedMail> {
  const limits = resolveLimits(options)
  const parser = new MailParser(mailParserOptions(limits))
  const reading = new MimeReading(limits)
  const parsed = watchParser(parser, reading)
  let byteCount: number
  try {
    byteCount = await feedParser(source, parser, 'read-to-end')
  } catch (error) {
    reading.abort()
    parser.destroy()
    throw error
  }
  await parsed
  if (byteCount === 0) reading.problems.add('empty message')
  return buildParsedMail(reading, parser)
}

/**
 * The decoded content of one attachment of a stored message, streamed: `index` is its position
 * in `ParsedMail.attachments` as parseMime gave it (same parser options, same part order). The
 * source is read only up to the end of that attachment. The stream fails when the message has
 * no such attachment or cannot be read up to it.
 */
export function attachmentContent(source: AsyncIterable<Buffer>, index: number): Readable {
  const output = new PassThrough()
  if (!Number.isSafeInteger(index) || index < 0) {
    output.destroy(new RangeError(`no attachment ${index}`))
    return output
  }
  const parser = new MailParser(mailParserOptions(DEFAULT_LIMITS))
  let position = 0
  let found = false
  parser.on('data', (data: AttachmentStream | MessageText) => {
    if (data.type !== 'attachment') return
    if (position++ !== index) return skipAttachment(data)
    found = true
    data.content.on('error', (error: unknown) => output.destroy(asError(error)))
    data.content.once('end', () => {
      output.end()
      parser.destroy()
    })
    data.content.pipe(output, { end: false })
  })
  parser.on('error', (error: unknown) => {
    parser.destroy()
    if (!output.writableEnded) output.destroy(new Error(`attachment ${index} could not be read: ${errorMessage(error)}`))
  })
  parser.once('end', () => {
    if (!found) output.destroy(new RangeError(`no attachment ${index}`))
  })
  output.once('close', () => parser.destroy())
  feedParser(source, parser, 'stop').then(
    () => undefined,
    (error: unknown) => {
      parser.destroy()
      output.destroy(asError(error))
    },
  )
  return output
}

function skipAttachment(attachment: AttachmentStream): void {
  attachment.content.on('data', () => undefined)
  attachment.content.on('error', () => undefined)
  attachment.content.once('end', () => attachment.release?.())
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error))
}

function resolveLimits(options: ParseMimeOptions): Limits {
  const limit = (value: number | undefined, fallback: number) => (Number.isSafeInteger(value) && value! > 0 ? value! : fallback)
  return {
    maxHeaders: limit(options.maxHeaders, DEFAULT_LIMITS.maxHeaders),
    maxTextChars: limit(options.maxTextChars, DEFAULT_LIMITS.maxTextChars),
    maxHtmlChars: limit(options.maxHtmlChars, DEFAULT_LIMITS.maxHtmlChars),
    maxParts: limit(options.maxParts, DEFAULT_LIMITS.maxParts),
  }
}

function mailParserOptions(limits: Limits): MailParserOptions {
  return {
    checksumAlgo: 'sha256',
    keepDeliveryStatus: true,
    skipTextToHtml: true,
    skipImageLinks: true,
    skipTextLinks: true,
    // Every message/rfc822 part stays an attachment; by default an inline one is parsed and its
    // text and attachments merged into the outer message's.
    ignoreEmbedded: true,
    maxHtmlLengthToParse: limits.maxHtmlChars,
    maxHeadSize: MAX_HEAD_BYTES,
    maxChildNodes: Math.max(MIN_MIME_NODES, 4 * limits.maxParts),
  }
}

// ---------------------------------------------------------------------------------------------
// Driving the parser

/**
 * Writes the source into the parser, waiting for drain when it asks to. Once the parser is
 * destroyed the rest of the source is read and dropped (`read-to-end`: the caller's side of it,
 * a size limit or a copy being stored, runs to its end) or left unread (`stop`). Answers the
 * number of bytes read.
 */
async function feedParser(source: AsyncIterable<Buffer>, parser: MailParser, afterFailure: 'read-to-end' | 'stop'): Promise<number> {
  let byteCount = 0
  for await (const chunk of source) {
    byteCount += chunk.length
    if (parser.destroyed && afterFailure === 'stop') break
    if (parser.destroyed || chunk.length === 0) continue
    if (!parser.write(chunk)) await drainOrClose(parser)
  }
  if (!parser.destroyed) parser.end()
  return byteCount
}

function drainOrClose(parser: MailParser): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      parser.off('drain', done)
      parser.off('close', done)
      resolve()
    }
    parser.on('drain', done)
    parser.on('close', done)
  })
}

/** Resolves once the parser has ended (or failed) and every attachment has been read through. */
function watchParser(parser: MailParser, reading: MimeReading): Promise<void> {
  return new Promise((resolve) => {
    const finish = () => void reading.settled().then(resolve)
    parser.on('headers', (headers: Headers) => reading.takeHeaders(headers))
    parser.on('headerLines', (lines: HeaderLines) => reading.takeHeaderLines(lines))
    parser.on('data', (data: AttachmentStream | MessageText) => reading.take(data))
    parser.on('error', (error: unknown) => {
      // mailparser can emit more than one error; this listener stays so none goes uncaught.
      reading.fail(error)
      parser.destroy()
      finish()
    })
    parser.once('end', finish)
    parser.once('close', finish)
  })
}

/** What the parser has handed over so far. */
class MimeReading {
  readonly problems = new ProblemList()
  readonly attachments: InboundAttachment[] = []
  headers: Headers = new Map()
  headerLines: HeaderLines = []
  text: MessageText | null = null
  /** Kept start of the first delivery-status / disposition-notification part (report mail only). */
  statusPart: Buffer | null = null
  /** Kept start of the first returned message or returned headers part (report mail only). */
  originalPart: Buffer | null = null
  readonly #pendingReads = new Set<Promise<void>>()
  readonly #openContents = new Set<Readable>()
  #attachmentCount = 0
  readonly limits: Limits

  constructor(limits: Limits) {
    this.limits = limits
  }

  get isReport(): boolean {
    return topContentType(this.headers)?.value.toLowerCase() === 'multipart/report'
  }

  takeHeaders(headers: Headers): void {
    this.headers = headers
  }

  takeHeaderLines(lines: HeaderLines): void {
    this.headerLines = lines
  }

  take(data: AttachmentStream | MessageText): void {
    if (data.type === 'text') {
      this.text = data
      return
    }
    const position = ++this.#attachmentCount
    const read = this.#readAttachment(data, position).catch((error: unknown) => {
      this.problems.add(`attachment ${position} could not be read: ${errorMessage(error)}`)
    })
    this.#pendingReads.add(read)
    void read.finally(() => this.#pendingReads.delete(read))
  }

  fail(error: unknown): void {
    this.problems.add(`message could not be read to its end: ${errorMessage(error)}`)
    this.abort()
  }

  /** Stops reading the attachment in flight: its stream would never end now. */
  abort(): void {
    for (const content of this.#openContents) content.destroy()
  }

  async settled(): Promise<void> {
    while (this.#pendingReads.size > 0) await Promise.all([...this.#pendingReads])
  }

  async #readAttachment(attachment: AttachmentStream, position: number): Promise<void> {
    const contentType = (attachment.contentType || 'application/octet-stream').toLowerCase()
    const keepBytes = this.#reportPartSlot(contentType) ? MAX_REPORT_PART_BYTES : 0
    this.#openContents.add(attachment.content)
    const content = await drain(attachment.content, keepBytes)
    this.#openContents.delete(attachment.content)
    attachment.release?.()
    const name = attachmentName(attachment.filename, position, contentType)
    if (content.error !== null) this.problems.add(`attachment ${name} could not be read to its end: ${errorMessage(content.error)}`)
    if (keepBytes > 0) this.#keepReportPart(contentType, content.kept)
    if (position > this.limits.maxParts) {
      this.problems.add(`more than ${this.limits.maxParts} attachment parts; the rest are not listed`)
      return
    }
    this.attachments.push({
      name,
      contentType,
      size: content.size,
      sha256: content.sha256,
      contentId: bareContentId(attachment.contentId),
      inline: attachment.contentDisposition === 'inline' || (attachment.related === true && attachment.contentId !== undefined),
    })
  }

  /** Whether this part is the first of its kind in a report, to be read for `report`. */
  #reportPartSlot(contentType: string): boolean {
    if (!this.isReport) return false
    const kind = reportPartKind(contentType)
    return (kind === 'status' && this.statusPart === null) || (kind === 'original' && this.originalPart === null)
  }

  #keepReportPart(contentType: string, kept: Buffer): void {
    if (reportPartKind(contentType) === 'status') this.statusPart ??= kept
    else this.originalPart ??= kept
  }
}

interface DrainedContent {
  size: number
  sha256: string
  /** The first bytes asked for. */
  kept: Buffer
  error: unknown
}

/** Reads an attachment stream to its end, counting and hashing it, keeping only its first `keepBytes`. */
function drain(content: Readable, keepBytes: number): Promise<DrainedContent> {
  return new Promise((resolve) => {
    const hash = createHash('sha256')
    const kept: Buffer[] = []
    let keptBytes = 0
    let size = 0
    let finished = false
    const finish = (error: unknown) => {
      if (finished) return
      finished = true
      resolve({ size, sha256: hash.digest('hex'), kept: Buffer.concat(kept), error })
    }
    content.on('data', (chunk: Buffer) => {
      size += chunk.length
      hash.update(chunk)
      if (keptBytes < keepBytes) {
        const piece = chunk.subarray(0, keepBytes - keptBytes)
        kept.push(piece)
        keptBytes += piece.length
      }
    })
    content.on('error', (error: unknown) => finish(error))
    content.once('end', () => finish(null))
    content.once('close', () => finish(new Error('stream closed early')))
  })
}

// ---------------------------------------------------------------------------------------------
// Building the result

function buildParsedMail(reading: MimeReading, parser: MailParser): ParsedMail {
  const { headers, problems, limits } = reading
  const allHeaders = readHeaderLines(reading.headerLines, problems)
  const contentType = topContentType(headers)
  const bodies = readBodies(reading.text, limits, problems)
  for (const charset of unknownBodyCharsets(parser)) problems.add(`unknown charset ${charset}; text read as UTF-8`)
  return {
    ...emptyParsedMail(),
    messageId: bareMessageId(stringOf(headers.get('message-id'))),
    inReplyTo: bareMessageId(stringOf(headers.get('in-reply-to'))),
    references: referenceList(referencesOf(headers.get('references')), problems),
    subject: cutText(stringOf(headers.get('subject')) ?? '', MAX_HEADER_VALUE_CHARS, 'subject', problems),
    from: firstMailbox(headers.get('from')),
    sender: firstMailbox(headers.get('sender')),
    replyTo: addressList(headers.get('reply-to')),
    to: addressList(headers.get('to')),
    cc: addressList(headers.get('cc')),
    bcc: addressList(headers.get('bcc')),
    returnPath: returnPathOf(allHeaders),
    // Not mailparser's date: it gives the current time for an unreadable Date header.
    date: parseMailDate(firstHeader(allHeaders, 'date')),
    importance: importanceOf(allHeaders) ?? 'normal',
    headers: capHeaders(allHeaders, limits.maxHeaders, 'headers', problems),
    text: bodies.text,
    html: bodies.html,
    attachments: reading.attachments,
    report: reading.isReport ? readReport(reading, contentType?.params['report-type']) : null,
    contentType: contentType?.value.trim().toLowerCase().slice(0, 255) || 'text/plain',
    problems: problems.toArray(),
  }
}

function readHeaderLines(lines: HeaderLines, problems: ProblemList): InboundHeader[] {
  const named = lines.filter((line) => line.key.trim() !== '')
  const unnamed = lines.filter((line) => line.key.trim() === '' && line.line.trim() !== '').length
  if (unnamed > 0) problems.add(`${unnamed} header lines without a name skipped`)
  return named.map((line) => headerFromRawLine(line.key, line.line, problems))
}

function readBodies(text: MessageText | null, limits: Limits, problems: ProblemList): { text: string; html: string | null } {
  if (text?.textConversionError) problems.add(`html not converted to text by mailparser: ${text.textConversionError.message}`)
  const html = text?.html ? text.html : null
  let plain = text?.text ?? ''
  // mailparser derives text only from a top-level html body, not from html inside multipart/mixed or related.
  if (plain.trim() === '' && html !== null) plain = htmlToPlainText(html, limits.maxHtmlChars, problems)
  return {
    text: cutText(plain, limits.maxTextChars, 'text body', problems),
    html: html === null ? null : cutText(html, limits.maxHtmlChars, 'html body', problems),
  }
}

function readReport(reading: MimeReading, reportType: string | undefined): MailReport {
  const status = reading.statusPart === null ? null : readStatusReport(reading.statusPart.toString('utf8'))
  const originalHeaders =
    reading.originalPart === null ? [] : parseHeaderSection(reading.originalPart.toString('utf8'), reading.limits.maxHeaders, reading.problems)
  return {
    type: (reportType ?? '').trim().toLowerCase(),
    recipients: status?.recipients ?? [],
    originalMessageId: bareMessageId(firstHeader(originalHeaders, 'message-id')) ?? status?.originalMessageId ?? null,
    originalHeaders,
  }
}

// ---------------------------------------------------------------------------------------------
// mailparser's header values

function stringOf(value: HeaderValue | undefined): string | null {
  if (typeof value === 'string') return value
  if (Array.isArray(value) && typeof value[0] === 'string') return value[0]
  return null
}

function referencesOf(value: HeaderValue | undefined): string | string[] | null {
  if (typeof value === 'string') return value
  if (Array.isArray(value)) return value.filter((entry): entry is string => typeof entry === 'string')
  return null
}

function topContentType(headers: Headers): StructuredHeader | null {
  const value = headers.get('content-type')
  const isStructured = typeof value === 'object' && value !== null && 'params' in value && typeof value.value === 'string'
  return isStructured ? (value as StructuredHeader) : null
}

function isAddressObject(value: unknown): value is AddressObject {
  return typeof value === 'object' && value !== null && Array.isArray((value as AddressObject).value)
}

/** Every mailbox of an address header (or of its repetitions), groups flattened. */
function mailboxesOf(value: HeaderValue | undefined): EmailAddress[] {
  const objects = (Array.isArray(value) ? (value as unknown[]) : [value]).filter(isAddressObject)
  const mailboxes: EmailAddress[] = []
  const collect = (entries: EmailAddress[]) => {
    for (const entry of entries) {
      if (Array.isArray(entry.group)) collect(entry.group)
      else if (typeof entry.address === 'string' && entry.address.trim() !== '') mailboxes.push(entry)
    }
  }
  for (const object of objects) collect(object.value)
  return mailboxes
}

function addressList(value: HeaderValue | undefined): string[] {
  return uniqueAddresses(mailboxesOf(value).map((mailbox) => mailbox.address))
}

function firstMailbox(value: HeaderValue | undefined): MailAddress | null {
  const mailbox = mailboxesOf(value)[0]
  if (mailbox === undefined) return null
  return { address: mailbox.address!.trim().toLowerCase(), name: mailbox.name.trim() || null }
}

// ---------------------------------------------------------------------------------------------
// Charsets

/**
 * Charsets of text bodies that could not be decoded (libmime reads them as UTF-8). They are
 * read from mailparser's internal part tree, which is not public API: should its shape change,
 * nothing is found and nothing breaks.
 */
function unknownBodyCharsets(parser: MailParser): string[] {
  const unknown = new Set<string>()
  const pending: unknown[] = [(parser as unknown as { tree?: unknown }).tree]
  for (let visited = 0; pending.length > 0 && visited < 100_000; visited++) {
    const node = pending.pop()
    if (typeof node !== 'object' || node === null) continue
    const { charset, isAttachment, children } = node as { charset?: unknown; isAttachment?: unknown; children?: unknown }
    if (isAttachment === false && typeof charset === 'string' && !isKnownCharset(charset)) unknown.add(charset.toLowerCase().slice(0, 64))
    if (Array.isArray(children)) for (const child of children as unknown[]) pending.push(child)
  }
  return [...unknown]
}

/** Known to the WHATWG decoder, or an IBM/DOS code page, which iconv-lite knows too. */
function isKnownCharset(charset: string): boolean {
  if (/^(?:cp|ibm)-?\d{3,5}$/i.test(charset.trim())) return true
  try {
    new TextDecoder(charset.trim())
    return true
  } catch {
    return false
  }
}
