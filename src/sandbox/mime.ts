import { createHash } from 'node:crypto'
import { simpleParser, type AddressObject } from 'mailparser'

/**
 * MIME for the fake Graph: reading mail delivered as raw RFC 5322 into message fields (the
 * way Exchange does on delivery), and writing a message kept as fields back out as RFC 5322
 * for `GET .../messages/{id}/$value`.
 */

export interface MimeAddress {
  address: string
  name?: string
}

export interface MimeAttachment {
  name: string
  contentType: string
  /** The bytes; when unknown (an upload-session attachment, whose bytes the fake does not keep) the part is written empty and says so. */
  content?: Buffer
  size: number
  sha256: string
  isInline: boolean
  contentId?: string
}

export interface MimeHeader {
  name: string
  value: string
}

/** Who a message is from and to. */
interface MimeParties {
  from?: MimeAddress
  sender?: MimeAddress
  to: MimeAddress[]
  cc: MimeAddress[]
  /** `buildMime` writes Bcc only when given: Exchange keeps it in the sender's copy, recipients never see it. */
  bcc: MimeAddress[]
  replyTo: MimeAddress[]
}

/** What `parseMime` reads out of raw mail. */
export interface ParsedMime extends MimeParties {
  subject: string
  /** With angle brackets, as Graph's internetMessageId. */
  internetMessageId?: string
  sentDateTime?: string
  /** Every top-level header in order, unfolded, values as they stand in the mail. */
  headers: MimeHeader[]
  /** HTML when the mail has an HTML part (Exchange prefers it), otherwise the plain text. */
  body: { contentType: 'text' | 'html'; content: string }
  importance: 'low' | 'normal' | 'high'
  attachments: (MimeAttachment & { content: Buffer })[]
}

function addresses(field: AddressObject | AddressObject[] | undefined): MimeAddress[] {
  const out: MimeAddress[] = []
  const visit = (entries: AddressObject['value']) => {
    for (const entry of entries) {
      if (entry.group) visit(entry.group)
      else if (entry.address) out.push(entry.name ? { address: entry.address, name: entry.name } : { address: entry.address })
    }
  }
  for (const object of Array.isArray(field) ? field : field ? [field] : []) visit(object.value)
  return out
}

/** mailparser folds Importance, Priority, X-Priority and X-MSMail-Priority into a 'priority' header. */
const importanceOf = (priority: unknown): 'low' | 'normal' | 'high' => (priority === 'high' || priority === 'low' ? priority : 'normal')

export async function parseMime(raw: Buffer): Promise<ParsedMime> {
  // keepCidLinks: Graph's body keeps cid: references to inline parts rather than data: URIs.
  const parsed = await simpleParser(raw, { keepCidLinks: true })
  const headers = parsed.headerLines.map(({ line }) => {
    const unfolded = line.replace(/\r?\n(?=[ \t])/g, '')
    const colon = unfolded.indexOf(':')
    return { name: unfolded.slice(0, colon).trim(), value: unfolded.slice(colon + 1).trim() }
  })
  const senderHeader = parsed.headers.get('sender') as AddressObject | undefined
  const sender = addresses(senderHeader)[0]
  const from = addresses(parsed.from)[0]
  return {
    subject: parsed.subject ?? '',
    ...(from ? { from } : {}),
    ...(sender ? { sender } : {}),
    to: addresses(parsed.to),
    cc: addresses(parsed.cc),
    bcc: addresses(parsed.bcc),
    replyTo: addresses(parsed.replyTo),
    ...(parsed.messageId ? { internetMessageId: parsed.messageId } : {}),
    ...(parsed.date && !Number.isNaN(parsed.date.getTime()) ? { sentDateTime: parsed.date.toISOString() } : {}),
    headers,
    body: typeof parsed.html === 'string' ? { contentType: 'html', content: parsed.html } : { contentType: 'text', content: parsed.text ?? '' },
    importance: importanceOf(parsed.headers.get('priority')),
    attachments: parsed.attachments.map((attachment) => ({
      name: attachment.filename ?? '',
      contentType: attachment.contentType,
      content: attachment.content,
      size: attachment.content.length,
      sha256: createHash('sha256').update(attachment.content).digest('hex'),
      isInline: attachment.contentDisposition === 'inline' || attachment.related === true,
      ...(attachment.cid ? { contentId: attachment.cid } : {}),
    })),
  }
}

/** A message kept as fields, as `buildMime` writes it. */
export interface MimeSource extends MimeParties {
  subject: string
  date: Date
  internetMessageId: string
  importance: 'low' | 'normal' | 'high'
  /** Further headers (e.g. the x- headers a sender set); ones the writer produces itself are skipped. */
  headers: MimeHeader[]
  body: { contentType: 'text' | 'html'; content: string }
  attachments: MimeAttachment[]
  /** Makes the boundaries, hence the whole output, stable for the same message. */
  seed: string
}

const GENERATED = new Set([
  'from',
  'sender',
  'to',
  'cc',
  'bcc',
  'reply-to',
  'subject',
  'date',
  'message-id',
  'importance',
  'mime-version',
  'content-type',
  'content-transfer-encoding',
])

const isPrintableAscii = (text: string) => /^[\x20-\x7e]*$/.test(text)

/** RFC 2047 encoded words (UTF-8, base64) in chunks that keep characters whole and lines short. */
function encodeWords(text: string): string {
  const words: string[] = []
  let chunk = ''
  for (const char of text) {
    if (Buffer.byteLength(chunk + char) > 45) {
      words.push(chunk)
      chunk = ''
    }
    chunk += char
  }
  if (chunk) words.push(chunk)
  return words.map((word) => `=?UTF-8?B?${Buffer.from(word).toString('base64')}?=`).join('\r\n ')
}

/** Unstructured header text: as is when printable ASCII (folded at spaces), otherwise encoded words. */
function headerText(text: string): string {
  if (!isPrintableAscii(text)) return encodeWords(text)
  const lines: string[] = []
  let line = ''
  for (const word of text.split(/(?= )/)) {
    if (line && line.length + word.length > 76) {
      lines.push(line)
      line = ''
    }
    line += word
  }
  lines.push(line)
  return lines.join('\r\n')
}

function mailbox({ address, name }: MimeAddress): string {
  if (!name || name === address) return address
  if (!isPrintableAscii(name)) return `${encodeWords(name)} <${address}>`
  return /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+$/.test(name) ? `${name} <${address}>` : `"${name.replace(/(["\\])/g, '\\$1')}" <${address}>`
}

const addressList = (list: MimeAddress[]) => list.map(mailbox).join(',\r\n ')

/** RFC 5322 date-time in UTC, e.g. `Mon, 30 Nov 2026 09:00:00 +0000`. */
export function rfc5322Date(date: Date): string {
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat']
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
  const two = (n: number) => String(n).padStart(2, '0')
  return `${days[date.getUTCDay()]}, ${date.getUTCDate()} ${months[date.getUTCMonth()]} ${date.getUTCFullYear()} ${two(date.getUTCHours())}:${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())} +0000`
}

/** Quoted-printable (RFC 2045) of UTF-8 text, with CRLF line ends and soft breaks within 76 characters. */
function quotedPrintable(text: string): string {
  return text
    .split(/\r?\n/)
    .map((line) => {
      const bytes = Buffer.from(line)
      const tokens: string[] = []
      bytes.forEach((byte, index) => {
        const last = index === bytes.length - 1
        const literal = (byte >= 33 && byte <= 126 && byte !== 61) || ((byte === 32 || byte === 9) && !last)
        tokens.push(literal ? String.fromCharCode(byte) : `=${byte.toString(16).toUpperCase().padStart(2, '0')}`)
      })
      const out: string[] = []
      let current = ''
      for (const token of tokens) {
        if (current.length + token.length > 75) {
          out.push(`${current}=`)
          current = ''
        }
        current += token
      }
      out.push(current)
      return out.join('\r\n')
    })
    .join('\r\n')
}

const base64Lines = (bytes: Buffer) => (bytes.toString('base64').match(/.{1,76}/g) ?? []).join('\r\n')

function fileParameter(name: string, parameter: 'name' | 'filename'): string {
  if (isPrintableAscii(name)) return `${parameter}="${name.replace(/(["\\])/g, '\\$1')}"`
  return `${parameter}*=UTF-8''${encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)}`
}

interface Part {
  headers: MimeHeader[]
  body: string
}

function bodyPart(body: MimeSource['body']): Part {
  return {
    headers: [
      { name: 'Content-Type', value: `text/${body.contentType === 'html' ? 'html' : 'plain'}; charset="utf-8"` },
      { name: 'Content-Transfer-Encoding', value: 'quoted-printable' },
    ],
    body: quotedPrintable(body.content),
  }
}

function attachmentPart(attachment: MimeAttachment, disposition: 'attachment' | 'inline'): Part {
  const headers: MimeHeader[] = [
    { name: 'Content-Type', value: `${attachment.contentType}; ${fileParameter(attachment.name, 'name')}` },
    { name: 'Content-Description', value: headerText(attachment.name) },
    { name: 'Content-Disposition', value: `${disposition}; ${fileParameter(attachment.name, 'filename')}; size=${attachment.size}` },
  ]
  if (attachment.contentId) headers.push({ name: 'Content-ID', value: `<${attachment.contentId}>` })
  if (!attachment.content) headers.push({ name: 'X-Fake-Content-Unavailable', value: `the fake keeps only the SHA-256 of this upload-session attachment: ${attachment.sha256}` })
  headers.push({ name: 'Content-Transfer-Encoding', value: 'base64' })
  return { headers, body: attachment.content ? base64Lines(attachment.content) : '' }
}

function multipart(subtype: 'mixed' | 'related', boundary: string, parts: Part[], related?: string): Part {
  const type = subtype === 'related' ? `multipart/related;\r\n\tboundary="${boundary}";\r\n\ttype="${related}"` : `multipart/mixed;\r\n\tboundary="${boundary}"`
  const body = parts.map((part) => `--${boundary}\r\n${serialize(part.headers)}\r\n${part.body}\r\n`).join('') + `--${boundary}--`
  return { headers: [{ name: 'Content-Type', value: type }], body }
}

const serialize = (headers: MimeHeader[]) => headers.map((h) => `${h.name}: ${h.value}\r\n`).join('')

function structure(source: MimeSource): Part {
  const boundary = (kind: string) => `_00${kind}_${createHash('sha256').update(`${source.seed}/${kind}`).digest('hex').slice(0, 32)}_`
  const inline = source.attachments.filter((a) => a.isInline)
  const regular = source.attachments.filter((a) => !a.isInline)
  let main = bodyPart(source.body)
  if (inline.length && source.body.contentType === 'html') {
    main = multipart('related', boundary('related'), [main, ...inline.map((a) => attachmentPart(a, 'inline'))], 'text/html')
  } else if (inline.length) {
    regular.unshift(...inline)
  }
  if (!regular.length) return main
  return multipart('mixed', boundary('mixed'), [main, ...regular.map((a) => attachmentPart(a, a.isInline ? 'inline' : 'attachment'))])
}

/** The top-level headers of the message `buildMime` writes, in order, values unfolded. */
export function mimeHeaders(source: MimeSource): MimeHeader[] {
  return topHeaders(source, structure(source)).map((h) => ({ name: h.name, value: h.value.replace(/\r\n(?=[ \t])/g, '') }))
}

function topHeaders(source: MimeSource, root: Part): MimeHeader[] {
  const headers: MimeHeader[] = []
  if (source.from) headers.push({ name: 'From', value: mailbox(source.from) })
  if (source.sender && source.sender.address.toLowerCase() !== source.from?.address.toLowerCase()) headers.push({ name: 'Sender', value: mailbox(source.sender) })
  if (source.to.length) headers.push({ name: 'To', value: addressList(source.to) })
  if (source.cc.length) headers.push({ name: 'CC', value: addressList(source.cc) })
  if (source.bcc.length) headers.push({ name: 'BCC', value: addressList(source.bcc) })
  if (source.replyTo.length) headers.push({ name: 'Reply-To', value: addressList(source.replyTo) })
  headers.push({ name: 'Subject', value: headerText(source.subject) })
  headers.push({ name: 'Date', value: rfc5322Date(source.date) })
  headers.push({ name: 'Message-ID', value: source.internetMessageId })
  if (source.importance !== 'normal') headers.push({ name: 'Importance', value: source.importance })
  for (const extra of source.headers) {
    if (!GENERATED.has(extra.name.toLowerCase())) headers.push({ name: extra.name, value: headerText(extra.value) })
  }
  headers.push({ name: 'MIME-Version', value: '1.0' })
  headers.push(...root.headers)
  return headers
}

/** A well-formed RFC 5322 message (CRLF line ends) for a message the fake keeps as fields. */
export function buildMime(source: MimeSource): Buffer {
  const root = structure(source)
  return Buffer.from(`${serialize(topHeaders(source, root))}\r\n${root.body}\r\n`)
}
