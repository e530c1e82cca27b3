import { createHash } from 'node:crypto'
import { graphError, type FakeAnswer, type GraphContext } from './graph-http.ts'
import type { FakeFolder, FakeStoredAttachment, FakeStoredMessage } from './mail-store.ts'
import { mimeHeaders, type MimeAddress, type MimeSource } from './mime.ts'

/** How Graph shows stored mail: messages (with $select), attachments and folders as JSON, and a message's MIME source. */

/** Graph's page size for delta (and message lists) when the client asks for none. */
export const DEFAULT_PAGE_SIZE = 10

/** The message properties `$select` accepts (Graph's; the fake leaves out a few it does not model). */
const MESSAGE_PROPERTIES = [
  'id',
  'createdDateTime',
  'lastModifiedDateTime',
  'changeKey',
  'categories',
  'receivedDateTime',
  'sentDateTime',
  'hasAttachments',
  'internetMessageId',
  'subject',
  'bodyPreview',
  'importance',
  'parentFolderId',
  'conversationId',
  'conversationIndex',
  'isDeliveryReceiptRequested',
  'isReadReceiptRequested',
  'isRead',
  'isDraft',
  'webLink',
  'inferenceClassification',
  'body',
  'uniqueBody',
  'sender',
  'from',
  'toRecipients',
  'ccRecipients',
  'bccRecipients',
  'replyTo',
  'flag',
  'internetMessageHeaders',
  'attachments',
  'extensions',
  'singleValueExtendedProperties',
  'multiValueExtendedProperties',
]
const PROPERTY_BY_LOWERCASE = new Map(MESSAGE_PROPERTIES.map((name) => [name.toLowerCase(), name]))

/** $select of a message request, as canonical property names; a 400 for names Graph does not know. */
export function readSelect(url: URL): string[] | { refusal: FakeAnswer } | undefined {
  const raw = url.searchParams.get('$select')
  if (raw === null || !raw.trim()) return undefined
  const names: string[] = []
  for (const part of raw.split(',')) {
    const name = PROPERTY_BY_LOWERCASE.get(part.trim().toLowerCase())
    if (!name) {
      return { refusal: graphError(400, 'RequestBroker--ParseUri', `Could not find a property named '${part.trim()}' on type 'microsoft.graph.message'.`) }
    }
    if (!names.includes(name)) names.push(name)
  }
  return names
}

export function mimeSource(message: FakeStoredMessage): MimeSource {
  const named = (address: string): MimeAddress => {
    const name = message.displayNames?.[address.toLowerCase()]
    return name ? { address, name } : { address }
  }
  return {
    ...(message.from ? { from: named(message.from) } : {}),
    ...(message.sender ? { sender: named(message.sender) } : {}),
    to: message.to.map(named),
    cc: message.cc.map(named),
    bcc: message.bcc.map(named),
    replyTo: message.replyTo.map(named),
    subject: message.subject,
    date: new Date(message.sentDateTime ?? message.createdDateTime),
    internetMessageId: message.internetMessageId,
    importance: message.importance,
    headers: message.internetMessageHeaders,
    body: message.body,
    attachments: message.attachments,
    seed: message.immutableId,
  }
}

/**
 * The message as Graph shows it; with `select`, only those properties (and id). Like Graph,
 * internetMessageHeaders come only when selected: a draft's are the x- headers set on it, a
 * MIME-delivered message's are those of its MIME, others' those of the MIME $value writes.
 * `changeKey` is the message's current one (MailStore.changeKey).
 */
export function messageJson(
  message: FakeStoredMessage,
  changeKey: string,
  { host, preferImmutable }: Pick<GraphContext, 'host' | 'preferImmutable'>,
  select?: string[],
  entity = true,
) {
  const recipient = (address: string) => ({ emailAddress: { name: message.displayNames?.[address.toLowerCase()] ?? address, address } })
  const from = message.from ? recipient(message.from) : null
  const sender = message.sender ? recipient(message.sender) : from
  const text = message.body.contentType === 'html' ? message.body.content.replace(/<[^>]*>/g, ' ') : message.body.content
  const conversationTopic = message.subject.replace(/^((re|fw|fwd|aw|wg)\s*:\s*)+/i, '').trim().toLowerCase()
  const full: Record<string, unknown> = {
    id: preferImmutable ? message.immutableId : message.restId,
    createdDateTime: message.createdDateTime,
    lastModifiedDateTime: message.lastModifiedDateTime,
    changeKey,
    categories: [],
    receivedDateTime: message.receivedDateTime,
    sentDateTime: message.sentDateTime ?? null,
    hasAttachments: message.attachments.some((attachment) => !attachment.isInline),
    internetMessageId: message.internetMessageId,
    subject: message.subject,
    bodyPreview: text.replace(/\s+/g, ' ').trim().slice(0, 255),
    importance: message.importance,
    parentFolderId: message.parentFolderId,
    conversationId: `AAQkAG${createHash('sha256').update(`${message.mailbox}/${conversationTopic}`).digest('base64url').slice(0, 32)}=`,
    isDeliveryReceiptRequested: false,
    isReadReceiptRequested: false,
    isRead: message.isRead,
    isDraft: message.isDraft,
    webLink: `https://outlook.office365.com/owa/?ItemID=${encodeURIComponent(message.restId)}&exvsurl=1&viewmodel=ReadMessageItem`,
    inferenceClassification: 'focused',
    body: message.body,
    sender,
    from,
    toRecipients: message.to.map(recipient),
    ccRecipients: message.cc.map(recipient),
    bccRecipients: message.bcc.map(recipient),
    replyTo: message.replyTo.map(recipient),
    flag: { flagStatus: 'notFlagged' },
  }
  if (select?.includes('internetMessageHeaders')) {
    full.internetMessageHeaders = message.isDraft || message.mime ? message.internetMessageHeaders : mimeHeaders(mimeSource(message))
  }
  const shown = select ? Object.fromEntries(Object.entries(full).filter(([name]) => name === 'id' || select.includes(name))) : full
  const head = entity
    ? {
        '@odata.context': `https://${host}/v1.0/$metadata#users('${encodeURIComponent(message.mailbox)}')/messages${select ? `(${select.join(',')})` : ''}/$entity`,
      }
    : { '@odata.type': '#microsoft.graph.message' }
  return { ...head, '@odata.etag': `W/"${changeKey}"`, ...shown }
}

export function attachmentJson(attachment: FakeStoredAttachment) {
  return {
    '@odata.type': '#microsoft.graph.fileAttachment',
    '@odata.mediaContentType': attachment.contentType,
    id: attachment.id,
    name: attachment.name,
    contentType: attachment.contentType,
    size: attachment.size,
    isInline: attachment.isInline,
    contentId: attachment.contentId ?? null,
  }
}

export function folderJson(folder: FakeFolder) {
  return { id: folder.id, displayName: folder.displayName, childFolderCount: folder.children.length, parentFolderId: null }
}
