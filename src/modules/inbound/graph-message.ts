/**
 * Microsoft Graph's message resource (JSON, with `$expand=attachments`) to ParsedMail. Graph
 * has already decoded the MIME: headers that have no property of their own (In-Reply-To,
 * References, Return-Path, Auto-Submitted, ...) come from `internetMessageHeaders`.
 */
import { createHash } from 'node:crypto'
import { Type, type Static } from '@sinclair/typebox'
import type { InboundAttachment, InboundHeader } from '../../../db/schema.ts'
import { DateTime } from '../../lib/schemas.ts'
import { htmlToPlainText } from './html-text.ts'
import {
  DEFAULT_MAX_HEADERS,
  EMPTY_SHA256,
  MAX_HEADER_VALUE_CHARS,
  ProblemList,
  attachmentName,
  bareContentId,
  bareMessageId,
  capHeaders,
  cutText,
  emptyParsedMail,
  firstHeader,
  importanceOf,
  normaliseAddress,
  parseMailDate,
  referenceList,
  returnPathOf,
  unfold,
  uniqueAddresses,
} from './mail-fields.ts'
import type { MailAddress, ParsedMail } from './parsed-mail.ts'

const MAX_TEXT_CHARS = 1_000_000
const MAX_HTML_CHARS = 2_000_000
const MAX_BODY_CHARS = 32 * 1024 * 1024
const MAX_CONTENT_BYTES_CHARS = 48 * 1024 * 1024
const MAX_RECIPIENTS = 1000

const NullableString = (maxLength: number) => Type.Union([Type.String({ maxLength }), Type.Null()])

const Recipient = Type.Object(
  {
    emailAddress: Type.Object(
      {
        address: Type.Optional(NullableString(1024)),
        name: Type.Optional(NullableString(1024)),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
)

const Recipients = Type.Array(Recipient, { maxItems: MAX_RECIPIENTS })

const GraphAttachment = Type.Object(
  {
    '@odata.type': Type.Optional(Type.String({ maxLength: 200 })),
    '@odata.mediaContentType': Type.Optional(NullableString(255)),
    id: Type.Optional(Type.String({ maxLength: 1024, description: 'Ignored' })),
    lastModifiedDateTime: Type.Optional(NullableString(64)),
    name: Type.Optional(NullableString(1024)),
    contentType: Type.Optional(NullableString(255)),
    contentBytes: Type.Optional(Type.String({ maxLength: MAX_CONTENT_BYTES_CHARS, description: 'The file, base64' })),
    contentId: Type.Optional(NullableString(1024)),
    contentLocation: Type.Optional(NullableString(2048)),
    isInline: Type.Optional(Type.Boolean()),
    size: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
)

/** The fields of Graph's message resource that Mailgate reads (and `id`, `conversationId`, ignored). */
export const GraphMessageBody = Type.Object(
  {
    id: Type.Optional(Type.String({ maxLength: 1024 })),
    conversationId: Type.Optional(Type.String({ maxLength: 1024 })),
    internetMessageId: Type.Optional(Type.String({ maxLength: 2048 })),
    subject: Type.Optional(NullableString(MAX_HEADER_VALUE_CHARS)),
    from: Type.Optional(Recipient),
    sender: Type.Optional(Recipient),
    toRecipients: Type.Optional(Recipients),
    ccRecipients: Type.Optional(Recipients),
    bccRecipients: Type.Optional(Recipients),
    replyTo: Type.Optional(Recipients),
    internetMessageHeaders: Type.Optional(
      Type.Array(
        Type.Object(
          { name: Type.String({ maxLength: 256 }), value: Type.String({ maxLength: 64 * 1024 }) },
          { additionalProperties: false },
        ),
        { maxItems: 2000 },
      ),
    ),
    body: Type.Optional(
      Type.Object(
        {
          contentType: Type.Union([Type.Literal('text'), Type.Literal('html')]),
          content: Type.String({ maxLength: MAX_BODY_CHARS }),
        },
        { additionalProperties: false },
      ),
    ),
    importance: Type.Optional(Type.Union([Type.Literal('low'), Type.Literal('normal'), Type.Literal('high')])),
    hasAttachments: Type.Optional(Type.Boolean()),
    attachments: Type.Optional(Type.Array(GraphAttachment, { maxItems: 500 })),
    receivedDateTime: Type.Optional({ ...DateTime, maxLength: 64 }),
    sentDateTime: Type.Optional({ ...DateTime, maxLength: 64 }),
  },
  { additionalProperties: false },
)
export type GraphMessageInput = Static<typeof GraphMessageBody>
type GraphRecipient = Static<typeof Recipient>
type GraphAttachmentInput = Static<typeof GraphAttachment>

export function fromGraphMessage(message: GraphMessageInput): ParsedMail {
  const problems = new ProblemList()
  const headers = (message.internetMessageHeaders ?? []).map((header) => graphHeader(header, problems))
  const bodies = graphBodies(message.body, problems)
  return {
    ...emptyParsedMail(),
    messageId: bareMessageId(message.internetMessageId),
    inReplyTo: bareMessageId(firstHeader(headers, 'in-reply-to')),
    references: referenceList(headers.filter((header) => header.name === 'references').map((header) => header.value), problems),
    subject: cutText(message.subject ?? '', MAX_HEADER_VALUE_CHARS, 'subject', problems),
    from: mailboxOf(message.from),
    sender: mailboxOf(message.sender),
    replyTo: addressesOf(message.replyTo),
    to: addressesOf(message.toRecipients),
    cc: addressesOf(message.ccRecipients),
    bcc: addressesOf(message.bccRecipients),
    returnPath: returnPathOf(headers),
    date: parseMailDate(message.sentDateTime) ?? parseMailDate(firstHeader(headers, 'date')),
    importance: message.importance ?? importanceOf(headers) ?? 'normal',
    headers: capHeaders(headers, DEFAULT_MAX_HEADERS, 'headers', problems),
    text: bodies.text,
    html: bodies.html,
    attachments: (message.attachments ?? []).map((attachment, index) => graphAttachment(attachment, index + 1, problems)),
    // Graph JSON carries no MIME parts: a returned message is only an attachment here.
    report: null,
    contentType: graphContentType(message, headers),
    problems: problems.toArray(),
  }
}

function graphHeader(header: { name: string; value: string }, problems: ProblemList): InboundHeader {
  const name = header.name.trim().toLowerCase()
  return { name, value: cutText(unfold(header.value), MAX_HEADER_VALUE_CHARS, `header ${name}`, problems) }
}

function graphBodies(body: GraphMessageInput['body'], problems: ProblemList): { text: string; html: string | null } {
  if (body === undefined) return { text: '', html: null }
  if (body.contentType === 'text') return { text: cutText(body.content, MAX_TEXT_CHARS, 'text body', problems), html: null }
  const text = htmlToPlainText(body.content, MAX_HTML_CHARS, problems)
  return {
    text: cutText(text, MAX_TEXT_CHARS, 'text body', problems),
    html: cutText(body.content, MAX_HTML_CHARS, 'html body', problems),
  }
}

function mailboxOf(recipient: GraphRecipient | undefined): MailAddress | null {
  const address = normaliseAddress(recipient?.emailAddress.address)
  if (address === '') return null
  return { address, name: recipient?.emailAddress.name?.trim() || null }
}

function addressesOf(recipients: GraphRecipient[] | undefined): string[] {
  return uniqueAddresses((recipients ?? []).map((recipient) => recipient.emailAddress.address))
}

function graphAttachment(attachment: GraphAttachmentInput, position: number, problems: ProblemList): InboundAttachment {
  const contentType = (attachment.contentType?.trim() || 'application/octet-stream').toLowerCase()
  const name = attachmentName(attachment.name, position, contentType)
  const content = decodeContentBytes(attachment.contentBytes)
  if (content === null) problems.add(`attachment ${name}: ${attachment.contentBytes === undefined ? 'no contentBytes' : 'contentBytes is not base64'}`)
  return {
    name,
    contentType,
    size: content?.length ?? 0,
    sha256: content === null ? EMPTY_SHA256 : createHash('sha256').update(content).digest('hex'),
    contentId: bareContentId(attachment.contentId),
    inline: attachment.isInline === true,
  }
}

/** Base64 (line breaks allowed) to bytes; null when absent or not base64. */
function decodeContentBytes(contentBytes: string | undefined): Buffer | null {
  if (contentBytes === undefined) return null
  const base64 = contentBytes.replace(/[\r\n \t]+/g, '')
  if (base64.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(base64)) return null
  return Buffer.from(base64, 'base64')
}

/** The Content-Type header when Graph passed it on, else what the message's shape implies. */
function graphContentType(message: GraphMessageInput, headers: readonly InboundHeader[]): string {
  const header = firstHeader(headers, 'content-type')?.split(';')[0]?.trim().toLowerCase()
  if (header) return header.slice(0, 255)
  if ((message.attachments?.length ?? 0) > 0 || message.hasAttachments === true) return 'multipart/mixed'
  return message.body?.contentType === 'html' ? 'text/html' : 'text/plain'
}
