import type { MessageDelta } from './delta.ts'
import { canRead, denied, graphError, jsonBody, notFound, reply, unreadableJson, type FakeAnswer, type GraphContext } from './graph-http.ts'
import type { FakeFolder, FakeStoredMessage, MailStore } from './mail-store.ts'
import { attachmentJson, DEFAULT_PAGE_SIZE, folderJson, messageJson, mimeSource, readSelect } from './message-json.ts'
import { buildMime } from './mime.ts'
import type { MailSending } from './sending.ts'
import type { UploadSessions } from './uploads.ts'

/**
 * The Graph mail routes under /users/{mailbox}/ (mailFolders, messages, sendMail), once the
 * request is authenticated and its mailbox found: reading lives here, the rest is handed to
 * delta, sending and upload sessions.
 */
export class GraphMail {
  private readonly store: MailStore
  private readonly delta: MessageDelta
  private readonly sending: MailSending
  private readonly uploads: UploadSessions

  constructor(parts: { store: MailStore; delta: MessageDelta; sending: MailSending; uploads: UploadSessions }) {
    this.store = parts.store
    this.delta = parts.delta
    this.sending = parts.sending
    this.uploads = parts.uploads
  }

  /** `resource` and `rest` are the path segments after /users/{mailbox}/; undefined for routes the fake does not serve. */
  route(context: GraphContext, method: string, resource: string | undefined, rest: string[]): FakeAnswer | undefined {
    if (resource === 'mailFolders') return this.mailFolders(context, method, rest)
    if (method === 'POST' && resource === 'sendMail' && !rest.length) return this.sending.sendMail(context)
    if (resource === 'messages') return this.messageRoute(context, method, rest)
    return undefined
  }

  private mailFolders(context: GraphContext, method: string, [folderId, navigation, ...more]: string[]): FakeAnswer | undefined {
    const { url, mailbox, roles } = context
    if (navigation === 'messages' && folderId) {
      // Reading a folder's messages, or a message addressed through its folder.
      const delta = more.length === 1 && /^(microsoft\.graph\.)?delta$/i.test(more[0]!)
      if (method === 'GET' && (delta || !more.length)) {
        if (!canRead(roles)) return denied()
        const folder = this.store.findFolder(mailbox.folders, folderId)
        if (!folder) return notFound()
        return delta ? this.delta.serve(context, folder) : this.listMessages(context, folder)
      }
      return more.length ? this.messageRoute(context, method, more) : undefined
    }
    if (method !== 'GET' || more.length) return undefined
    if (!canRead(roles)) return denied()
    const page = (items: FakeFolder[]) => {
      const top = Number(url.searchParams.get('$top') ?? 10)
      const skip = Number(url.searchParams.get('$skip') ?? 0)
      const body: Record<string, unknown> = { value: items.slice(skip, skip + top).map((f) => folderJson(f)) }
      if (skip + top < items.length) body['@odata.nextLink'] = `https://${url.host}${url.pathname}?$top=${top}&$skip=${skip + top}`
      return reply(200, body)
    }
    if (!folderId) return page(mailbox.folders)
    const target = this.store.findFolder(mailbox.folders, folderId)
    if (!target) return notFound()
    if (navigation === 'childFolders') return page(target.children)
    if (!navigation) return reply(200, folderJson(target))
    return undefined
  }

  /** /users/{mb}/messages[/{id}[/...]]; undefined for routes the fake does not serve. */
  private messageRoute(context: GraphContext, method: string, [id, navigation, action, ...beyond]: string[]): FakeAnswer | undefined {
    const { roles, mailbox } = context
    if (!id) return method === 'POST' ? this.sending.createDraft(context) : undefined
    if (beyond.length) return undefined
    const stored = this.store.findMessage(id)
    const message = stored?.mailbox === mailbox.address ? stored : undefined
    // Like Graph, permissions are checked before the message is looked up.
    if (!navigation && method === 'GET') {
      if (!canRead(roles)) return denied()
      const select = readSelect(context.url)
      if (select && 'refusal' in select) return select.refusal
      return message ? reply(200, messageJson(message, this.store.changeKey(message), context, select)) : notFound()
    }
    if (navigation === '$value' && !action && method === 'GET') {
      if (!canRead(roles)) return denied()
      if (!message) return notFound()
      // Like Graph: the MIME comes as text/plain.
      return { status: 200, body: message.mime ?? buildMime(mimeSource(message)), headers: { 'content-type': 'text/plain' } }
    }
    if (!navigation && method === 'PATCH') return this.updateFromRequest(context, message)
    if (/^(microsoft\.graph\.)?move$/i.test(navigation ?? '') && !action && method === 'POST') return this.moveFromRequest(context, message)
    if (!navigation && method === 'DELETE') {
      if (!roles.has('Mail.ReadWrite')) return denied()
      if (!message) return notFound()
      // Graph's DELETE takes the message out of the folder (into the dumpster, which the API does not show).
      this.store.forget(message)
      return reply(204)
    }
    if (navigation === 'attachments' && !action && method === 'GET') {
      if (!canRead(roles)) return denied()
      return message ? reply(200, { value: message.attachments.map((a) => attachmentJson(a)) }) : notFound()
    }
    if (navigation === 'attachments' && method === 'POST' && (!action || /^(microsoft\.graph\.)?createUploadSession$/i.test(action))) {
      if (!roles.has('Mail.ReadWrite')) return denied()
      if (!message) return notFound()
      if (!message.isDraft) return graphError(400, 'ErrorInvalidOperation', 'Attachments can only be added to a draft message.')
      return action ? this.uploads.create(context, message, id) : this.sending.addAttachment(context, message)
    }
    if (/^(microsoft\.graph\.)?send$/i.test(navigation ?? '') && !action && method === 'POST') return this.sending.sendDraft(context, message)
    return undefined
  }

  /** PATCH of a message: the fake supports isRead, the property a mail consumer changes. */
  private updateFromRequest(context: GraphContext, message: FakeStoredMessage | undefined): FakeAnswer {
    if (!context.roles.has('Mail.ReadWrite')) return denied()
    if (!message) return notFound()
    const patch = jsonBody(context.body)
    if (!patch) return unreadableJson()
    const unsupported = Object.keys(patch).filter((name) => name !== 'isRead' && !name.startsWith('@odata.'))
    if (unsupported.length) return graphError(400, 'BadRequest', `The fake supports PATCH of isRead only, not ${unsupported.join(', ')}.`)
    if ('isRead' in patch) {
      if (typeof patch.isRead !== 'boolean') {
        return graphError(400, 'RequestBodyRead', `Cannot convert the literal '${String(patch.isRead)}' to the expected type 'Edm.Boolean'.`)
      }
      message.isRead = patch.isRead
    }
    this.store.touch(message)
    return reply(200, messageJson(message, this.store.changeKey(message), context))
  }

  /** POST .../move: 201 with the message in its new folder, under a new REST id (same immutable id). */
  private moveFromRequest(context: GraphContext, message: FakeStoredMessage | undefined): FakeAnswer {
    if (!context.roles.has('Mail.ReadWrite')) return denied()
    if (!message) return notFound()
    const request = jsonBody(context.body)
    if (!request) return unreadableJson()
    const destinationId = request.destinationId ?? request.DestinationId
    if (typeof destinationId !== 'string' || !destinationId) {
      return graphError(400, 'ErrorInvalidParameter', "The parameter 'destinationId' is missing or not a string.")
    }
    const destination = this.store.findFolder(context.mailbox.folders, destinationId)
    if (!destination) return notFound()
    this.store.move(message, destination)
    return reply(201, messageJson(message, this.store.changeKey(message), context))
  }

  /** GET mailFolders/{id}/messages: newest first, $top (default 10) and $skip paging, $select. */
  private listMessages(context: GraphContext, folder: FakeFolder): FakeAnswer {
    const { url, mailbox, host } = context
    const select = readSelect(url)
    if (select && 'refusal' in select) return select.refusal
    const top = Math.max(1, Number(url.searchParams.get('$top') ?? DEFAULT_PAGE_SIZE) || DEFAULT_PAGE_SIZE)
    const skip = Math.max(0, Number(url.searchParams.get('$skip') ?? 0) || 0)
    const all = this.store.messagesIn(mailbox.address, folder.id).sort((a, b) => b.receivedDateTime.localeCompare(a.receivedDateTime))
    const body: Record<string, unknown> = {
      '@odata.context': `https://${host}/v1.0/$metadata#users('${encodeURIComponent(mailbox.address)}')/mailFolders('${folder.id}')/messages`,
      value: all.slice(skip, skip + top).map((message) => messageJson(message, this.store.changeKey(message), context, select, false)),
    }
    if (skip + top < all.length) {
      const next = new URL(url.href)
      next.searchParams.set('$top', String(top))
      next.searchParams.set('$skip', String(skip + top))
      body['@odata.nextLink'] = `https://${host}${next.pathname}?${decodeURIComponent(next.searchParams.toString())}`
    }
    return reply(200, body)
  }
}
