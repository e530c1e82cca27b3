import { createHash } from 'node:crypto'
import type { FakeTenant } from './entra.ts'
import { exchangeAutomaticReply, exchangeNdr, type AnsweredMessage } from './exchange-mail.ts'
import { denied, graphError, jsonBody, notFound, reply, tooLarge, unreadableJson, type FakeAnswer, type GraphContext } from './graph-http.ts'
import {
  newAttachmentId,
  newInternetMessageId,
  type FakeImportance,
  type FakeMailbox,
  type FakeSentMessage,
  type FakeStoredAttachment,
  type FakeStoredMessage,
  type MailStore,
} from './mail-store.ts'
import { attachmentJson, messageJson } from './message-json.ts'
import { parseMime, type MimeAddress } from './mime.ts'

/**
 * Mail on the move in the Microsoft stand-in: what a mailbox sends through Graph (sendMail,
 * drafts and their inline attachments, draft send), delivery between the hosted mailboxes
 * with Exchange's NDRs and out-of-office replies, and `deliver` for mail from outside.
 */

/** A structured message for `deliver`. Addresses are `a@b.example` or `Name <a@b.example>`. */
export interface FakeDeliveryInput {
  subject?: string
  /** Default `Alice Customer <alice@fabrikam.example>`. */
  from?: string | MimeAddress
  sender?: string | MimeAddress
  /** Default: the mailbox itself. */
  to?: (string | MimeAddress)[]
  cc?: (string | MimeAddress)[]
  bcc?: (string | MimeAddress)[]
  replyTo?: (string | MimeAddress)[]
  /** A string is a plain-text body. */
  body?: string | { contentType?: 'text' | 'html'; content: string }
  importance?: FakeImportance
  internetMessageId?: string
  /** Further internet headers, e.g. `{ name: 'Auto-Submitted', value: 'auto-replied' }`. */
  headers?: { name: string; value: string }[]
  /** The Date header; default: when it is received. */
  sentAt?: Date
  /** Default false, except for mail put into sentitems or drafts. */
  isRead?: boolean
  isDraft?: boolean
  attachments?: { name: string; contentType?: string; content: Buffer | string; isInline?: boolean; contentId?: string }[]
}

export interface FakeDeliveryOptions {
  /** A folder path ('Inbox/Invoices'), well-known name ('junkemail') or folder id. Default 'inbox'. */
  folder?: string
  /** Default: now. */
  receivedAt?: Date
}

/** A file attached in the request itself (sendMail, POST messages, POST attachments) must stay under 3 MB. */
const MAX_INLINE_ATTACHMENT_BYTES = 3 * 1024 * 1024

interface GraphRecipient {
  emailAddress?: { address?: string; name?: string }
}

interface GraphAttachmentInput {
  '@odata.type'?: string
  name?: string
  contentType?: string
  contentBytes?: string
  isInline?: boolean
  contentId?: string
}

interface GraphMessageInput {
  subject?: string
  body?: { contentType?: string; content?: string }
  from?: GraphRecipient
  toRecipients?: GraphRecipient[]
  ccRecipients?: GraphRecipient[]
  bccRecipients?: GraphRecipient[]
  replyTo?: GraphRecipient[]
  importance?: string
  internetMessageHeaders?: { name: string; value: string }[]
  attachments?: GraphAttachmentInput[]
}

type MessageContent = Pick<
  FakeStoredMessage,
  'subject' | 'body' | 'from' | 'to' | 'cc' | 'bcc' | 'replyTo' | 'importance' | 'internetMessageHeaders' | 'attachments'
>

const sendAsDenied = () =>
  graphError(
    403,
    'ErrorSendAsDenied',
    'The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account.',
  )
const maySendAs = (mailbox: FakeMailbox, from: string) => from === mailbox.address || mailbox.sendAs.has(from)

/** `a@b.example`, `Name <a@b.example>` or `"Name, Jr." <a@b.example>`. */
function parseAddress(text: string): MimeAddress {
  const match = /^\s*"?([^"<]*?)"?\s*<([^>]+)>\s*$/.exec(text)
  if (!match) return { address: text.trim() }
  return match[1] ? { address: match[2]!.trim(), name: match[1].trim() } : { address: match[2]!.trim() }
}

function readFileAttachment(input: GraphAttachmentInput): FakeStoredAttachment | { refusal: FakeAnswer } {
  const type = input['@odata.type']
  if (!type) {
    return { refusal: graphError(400, 'RequestBodyRead', "An attachment needs an '@odata.type' such as '#microsoft.graph.fileAttachment'.") }
  }
  if (type.toLowerCase() !== '#microsoft.graph.fileattachment') {
    return { refusal: graphError(400, 'BadRequest', `The fake supports only #microsoft.graph.fileAttachment, not ${type}.`) }
  }
  if (typeof input.contentBytes !== 'string') return { refusal: graphError(400, 'BadRequest', 'The fileAttachment has no contentBytes.') }
  const bytes = Buffer.from(input.contentBytes, 'base64')
  if (bytes.length > MAX_INLINE_ATTACHMENT_BYTES) {
    return { refusal: tooLarge('An attachment sent in the request must be under 3 MB; use an upload session for larger files.') }
  }
  return {
    id: newAttachmentId(),
    name: input.name ?? '',
    contentType: input.contentType ?? 'application/octet-stream',
    size: bytes.length,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    isInline: input.isInline === true,
    ...(input.contentId ? { contentId: input.contentId } : {}),
    content: bytes,
  }
}

export class MailSending {
  private readonly store: MailStore
  /** The tenants, whose domains decide which unknown recipients get an NDR. */
  private readonly tenants: Map<string, FakeTenant>
  private readonly mailInFlight = new Set<Promise<undefined>>()

  constructor(store: MailStore, tenants: Map<string, FakeTenant>) {
    this.store = store
    this.tenants = tenants
  }

  sendMail({ mailbox, roles, body }: GraphContext): FakeAnswer {
    if (!roles.has('Mail.Send')) return denied()
    const request = jsonBody(body) as { message?: GraphMessageInput; saveToSentItems?: boolean } | undefined
    if (!request) return unreadableJson()
    const input = request.message ?? {}
    if (!input.toRecipients?.length && !input.ccRecipients?.length && !input.bccRecipients?.length) {
      return graphError(400, 'ErrorInvalidRecipients', 'At least one recipient is not valid.')
    }
    const content = this.readMessage(input)
    if ('refusal' in content) return content.refusal
    const from = content.from ?? mailbox.address
    if (!maySendAs(mailbox, from)) return sendAsDenied()
    const savedToSentItems = request.saveToSentItems !== false
    const sent = { ...content, from, internetMessageId: newInternetMessageId(), sentDateTime: new Date().toISOString() }
    // Graph keeps a copy in Sent Items, under an id the caller never learns.
    if (savedToSentItems) this.store.store(mailbox, this.store.wellKnown(mailbox, 'sentitems'), { ...sent, isDraft: false, isRead: true })
    this.recordSend(mailbox, sent, { via: 'sendMail', savedToSentItems })
    return reply(202)
  }

  createDraft(context: GraphContext): FakeAnswer {
    if (!context.roles.has('Mail.ReadWrite')) return denied()
    const input = jsonBody(context.body) as GraphMessageInput | undefined
    if (!input) return unreadableJson()
    const content = this.readMessage(input)
    if ('refusal' in content) return content.refusal
    const draft = this.store.store(context.mailbox, this.store.wellKnown(context.mailbox, 'drafts'), {
      ...content,
      isDraft: true,
      isRead: true,
      internetMessageId: newInternetMessageId(),
    })
    if (context.preferImmutable) draft.id = draft.immutableId
    return reply(201, messageJson(draft, this.store.changeKey(draft), context))
  }

  sendDraft({ mailbox, roles }: GraphContext, message: FakeStoredMessage | undefined): FakeAnswer {
    if (!roles.has('Mail.Send')) return denied()
    if (!message) return notFound()
    if (!message.isDraft) return graphError(400, 'ErrorInvalidOperation', 'The message has already been sent; only draft messages can be sent.')
    if (!message.to.length && !message.cc.length && !message.bcc.length) {
      return graphError(400, 'ErrorInvalidRecipients', 'At least one recipient is required, but none were found.')
    }
    const from = message.from ?? mailbox.address
    if (!maySendAs(mailbox, from)) return sendAsDenied()
    message.isDraft = false
    message.from = from
    message.sentDateTime = new Date().toISOString()
    const sentBy = message.id
    this.store.move(message, this.store.wellKnown(mailbox, 'sentitems'))
    this.recordSend(mailbox, { ...message, from, sentDateTime: message.sentDateTime }, { via: 'draft', savedToSentItems: true, messageId: sentBy })
    return reply(202)
  }

  addAttachment(context: GraphContext, message: FakeStoredMessage): FakeAnswer {
    const input = jsonBody(context.body) as GraphAttachmentInput | undefined
    if (!input) return unreadableJson()
    const attachment = readFileAttachment(input)
    if ('refusal' in attachment) return attachment.refusal
    message.attachments.push(attachment)
    this.store.touch(message)
    return reply(201, attachmentJson(attachment))
  }

  async deliver(mailbox: FakeMailbox | string, input: FakeDeliveryInput | { mime: Buffer | string }, options: FakeDeliveryOptions = {}): Promise<FakeStoredMessage> {
    const box = this.store.mailboxOf(mailbox)
    const where = this.store.folder(box, options.folder ?? 'inbox')
    if (!where) throw new Error(`The fake mailbox ${box.address} has no folder '${options.folder}'; create it with addFolder first`)
    const receivedAt = (options.receivedAt ?? new Date()).toISOString()
    const names: Record<string, string> = {}
    const address = (value: string | MimeAddress): string => {
      const parsed = typeof value === 'string' ? parseAddress(value) : value
      if (parsed.name) names[parsed.address.toLowerCase()] = parsed.name
      return parsed.address
    }
    if ('mime' in input) {
      const raw = Buffer.isBuffer(input.mime) ? input.mime : Buffer.from(input.mime, 'utf8')
      const parsed = await parseMime(raw)
      const from = parsed.from ? address(parsed.from).toLowerCase() : undefined
      const sender = parsed.sender ? address(parsed.sender).toLowerCase() : undefined
      return this.store.store(box, where, {
        isDraft: false,
        isRead: where.wellKnownName === 'sentitems' || where.wellKnownName === 'drafts',
        subject: parsed.subject,
        body: parsed.body,
        from,
        ...(sender && sender !== from ? { sender } : {}),
        to: parsed.to.map(address),
        cc: parsed.cc.map(address),
        bcc: parsed.bcc.map(address),
        replyTo: parsed.replyTo.map(address),
        importance: parsed.importance,
        internetMessageHeaders: parsed.headers,
        internetMessageId: parsed.internetMessageId ?? newInternetMessageId(),
        sentDateTime: parsed.sentDateTime ?? receivedAt,
        receivedDateTime: receivedAt,
        createdDateTime: receivedAt,
        attachments: parsed.attachments.map(({ content, ...rest }) => ({ id: newAttachmentId(), ...rest, content })),
        displayNames: names,
        mime: raw,
      })
    }
    const from = address(input.from ?? 'Alice Customer <alice@fabrikam.example>').toLowerCase()
    const sender = input.sender ? address(input.sender).toLowerCase() : undefined
    const body = typeof input.body === 'string' ? { contentType: 'text' as const, content: input.body } : { contentType: input.body?.contentType ?? 'text', content: input.body?.content ?? '' }
    return this.store.store(box, where, {
      isDraft: input.isDraft ?? false,
      isRead: input.isRead ?? (where.wellKnownName === 'sentitems' || where.wellKnownName === 'drafts'),
      subject: input.subject ?? '',
      body,
      from,
      ...(sender && sender !== from ? { sender } : {}),
      to: (input.to ?? [box.address]).map(address),
      cc: (input.cc ?? []).map(address),
      bcc: (input.bcc ?? []).map(address),
      replyTo: (input.replyTo ?? []).map(address),
      importance: input.importance ?? 'normal',
      internetMessageHeaders: input.headers ?? [],
      internetMessageId: input.internetMessageId ?? newInternetMessageId(),
      sentDateTime: (input.sentAt ?? new Date(receivedAt)).toISOString(),
      receivedDateTime: receivedAt,
      createdDateTime: receivedAt,
      attachments: (input.attachments ?? []).map((attachment) => {
        const content = Buffer.isBuffer(attachment.content) ? attachment.content : Buffer.from(attachment.content)
        return {
          id: newAttachmentId(),
          name: attachment.name,
          contentType: attachment.contentType ?? 'application/octet-stream',
          size: content.length,
          sha256: createHash('sha256').update(content).digest('hex'),
          isInline: attachment.isInline === true,
          ...(attachment.contentId ? { contentId: attachment.contentId } : {}),
          content,
        }
      }),
      displayNames: names,
    })
  }

  async mailSettled(): Promise<void> {
    while (this.mailInFlight.size > 0) await Promise.all([...this.mailInFlight])
  }

  /** Validates and normalises a message the way sendMail and POST /messages accept it. */
  private readMessage(input: GraphMessageInput): MessageContent | { refusal: FakeAnswer } {
    const badHeader = input.internetMessageHeaders?.find((h) => !/^x-/i.test(h.name))
    if (badHeader) {
      return { refusal: graphError(400, 'InvalidInternetMessageHeader', `The internet message header name '${badHeader.name}' should start with 'x-' or 'X-'.`) }
    }
    const importance = (input.importance ?? 'normal').toLowerCase()
    if (importance !== 'low' && importance !== 'normal' && importance !== 'high') {
      return { refusal: graphError(400, 'RequestBodyRead', `Cannot convert the literal '${input.importance}' to the expected type 'microsoft.graph.importance'.`) }
    }
    const contentType = (input.body?.contentType ?? 'text').toLowerCase()
    if (contentType !== 'text' && contentType !== 'html') {
      return { refusal: graphError(400, 'RequestBodyRead', `Cannot convert the literal '${input.body?.contentType}' to the expected type 'microsoft.graph.bodyType'.`) }
    }
    const attachments: FakeStoredAttachment[] = []
    for (const raw of input.attachments ?? []) {
      const attachment = readFileAttachment(raw)
      if ('refusal' in attachment) return attachment
      attachments.push(attachment)
    }
    const addresses = (recipients?: GraphRecipient[]) => (recipients ?? []).map((r) => r.emailAddress?.address ?? '')
    return {
      subject: input.subject ?? '',
      body: { contentType, content: input.body?.content ?? '' },
      from: input.from?.emailAddress?.address?.toLowerCase(),
      to: addresses(input.toRecipients),
      cc: addresses(input.ccRecipients),
      bcc: addresses(input.bccRecipients),
      replyTo: addresses(input.replyTo),
      importance,
      internetMessageHeaders: input.internetMessageHeaders ?? [],
      attachments,
    }
  }

  /** Records the send and delivers to every fake mailbox among the recipients (once each), into its inbox. */
  private recordSend(
    mailbox: FakeMailbox,
    message: MessageContent & { from: string; internetMessageId: string; sentDateTime: string },
    how: Pick<FakeSentMessage, 'via' | 'savedToSentItems' | 'messageId'>,
  ): void {
    const sent: FakeSentMessage = {
      from: message.from,
      sender: mailbox.address,
      to: message.to,
      subject: message.subject,
      headers: message.internetMessageHeaders,
      savedToSentItems: how.savedToSentItems,
      cc: message.cc,
      bcc: message.bcc,
      replyTo: message.replyTo,
      importance: message.importance,
      bodyType: message.body.contentType,
      body: message.body.content,
      attachments: message.attachments.map(({ id: _id, ...summary }) => summary),
      via: how.via,
      ...(how.messageId ? { messageId: how.messageId } : {}),
      internetMessageId: message.internetMessageId,
    }
    mailbox.sent.push(sent)
    const delivered = new Set<string>()
    const original = { from: message.from, to: message.to, subject: message.subject, internetMessageId: message.internetMessageId, sentDateTime: message.sentDateTime, headers: message.internetMessageHeaders }
    const unknown = new Set<string>()
    for (const address of [...message.to, ...message.cc, ...message.bcc]) {
      const recipient = this.store.findMailbox(address)
      if (!recipient) {
        // An address of an organisation the stand-in hosts that no mailbox has: Exchange's NDR comes back.
        const domain = address.split('@')[1]?.toLowerCase()
        if (domain && [...this.tenants.values()].some((tenant) => tenant.domains.includes(domain))) unknown.add(address.toLowerCase())
        continue
      }
      if (delivered.has(recipient.address)) continue
      delivered.add(recipient.address)
      this.answerAutomatically(recipient, original)
      recipient.received.push(sent)
      this.store.store(recipient, this.store.wellKnown(recipient, 'inbox'), {
        isDraft: false,
        isRead: false,
        subject: message.subject,
        body: message.body,
        from: message.from,
        to: message.to,
        cc: message.cc,
        bcc: [], // recipients do not see the Bcc line
        replyTo: message.replyTo,
        importance: message.importance,
        internetMessageHeaders: message.internetMessageHeaders,
        internetMessageId: message.internetMessageId,
        sentDateTime: message.sentDateTime,
        attachments: [...message.attachments],
      })
    }
    // One report for the message, a block per recipient that was not found.
    if (unknown.size > 0) this.later(this.deliver(mailbox, { mime: exchangeNdr(original, [...unknown], mailbox.address.split('@')[1]!) }))
  }

  /** An out-of-office reply to a mailbox of the stand-in, once per sender, never to automated mail. */
  private answerAutomatically(recipient: FakeMailbox, original: AnsweredMessage): void {
    // Exchange stays quiet when the sender asks it to (X-Auto-Response-Suppress: OOF or All; Graph
    // lets clients set only x- headers). Automatic replies and NDRs arrive through deliver(), which
    // never answers, so two mailboxes out of office cannot loop.
    const automated = original.headers.some((header) => {
      const name = header.name.toLowerCase()
      const value = header.value.toLowerCase()
      return (name === 'auto-submitted' && value.trim() !== 'no') || (name === 'x-auto-response-suppress' && /\b(all|oof)\b/.test(value))
    })
    const sender = this.store.findMailbox(original.from)
    if (!recipient.automaticReply || automated || !sender || recipient.automaticReply.repliedTo.has(original.from.toLowerCase())) return
    recipient.automaticReply.repliedTo.add(original.from.toLowerCase())
    this.later(this.deliver(sender, exchangeAutomaticReply(original, recipient.address, recipient.automaticReply.message)))
  }

  /** Mail the stand-in sends of its own accord (NDRs, automatic replies) arrives a moment later. */
  private later(delivery: Promise<unknown>): void {
    const settled = delivery.then(
      () => undefined,
      () => undefined,
    )
    this.mailInFlight.add(settled)
    void settled.then(() => this.mailInFlight.delete(settled))
  }
}
