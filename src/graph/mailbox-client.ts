import { Client, ResponseType } from '@microsoft/microsoft-graph-client'
import { hostsFor, throughOverride, type HostOverrides } from './clouds.ts'
import { MailboxError, toMailboxError, uploadSessionError } from './errors.ts'
import { LocalMailboxGate, type MailboxGate } from './mailbox-gate.ts'
import { BearerToken, CallState, Transport } from './sdk-middleware.ts'
import type { AppRegistration, TokenProvider } from './token-provider.ts'
import { microsoftFetch } from './transport.ts'

export interface MailFolder {
  id: string
  displayName: string
}

export interface FileAttachment {
  name: string
  contentType: string
  isInline: boolean
  contentId?: string | null
  content: Buffer
}

export interface OutgoingMail {
  from?: string
  to: string[]
  cc?: string[]
  bcc?: string[]
  replyTo?: string[]
  subject: string
  body: { contentType: 'text' | 'html'; content: string }
  importance?: 'low' | 'normal' | 'high'
  /** Custom headers; Graph accepts only names starting with x-. */
  headers?: Record<string, string>
  /** Small files that travel inside the request (under 3 MB each). */
  attachments?: FileAttachment[]
}

export interface DraftInfo {
  id: string
  isDraft: boolean
  internetMessageId?: string
}

export interface UploadItem {
  name: string
  size: number
  contentType: string
  isInline: boolean
  contentId?: string | null
}

/** Graph keeps a draft's id valid in Sent Items only when asked for immutable ids. */
const IMMUTABLE_IDS = { Prefer: 'IdType="ImmutableId"' }

function recipients(addresses: string[] | undefined) {
  return (addresses ?? []).map((address) => ({ emailAddress: { address } }))
}

function fileAttachmentJson(attachment: FileAttachment) {
  return {
    '@odata.type': '#microsoft.graph.fileAttachment',
    name: attachment.name,
    contentType: attachment.contentType,
    isInline: attachment.isInline,
    ...(attachment.contentId ? { contentId: attachment.contentId } : {}),
    contentBytes: attachment.content.toString('base64'),
  }
}

/** The Graph message resource for a mail; the same shape serves sendMail and drafts. */
export function graphMessageJson(mail: OutgoingMail) {
  return {
    subject: mail.subject,
    body: mail.body,
    toRecipients: recipients(mail.to),
    ...(mail.cc?.length ? { ccRecipients: recipients(mail.cc) } : {}),
    ...(mail.bcc?.length ? { bccRecipients: recipients(mail.bcc) } : {}),
    ...(mail.replyTo?.length ? { replyTo: recipients(mail.replyTo) } : {}),
    ...(mail.from ? { from: { emailAddress: { address: mail.from } } } : {}),
    ...(mail.importance ? { importance: mail.importance } : {}),
    ...(mail.headers && Object.keys(mail.headers).length > 0
      ? { internetMessageHeaders: Object.entries(mail.headers).map(([name, value]) => ({ name, value })) }
      : {}),
    ...(mail.attachments?.length ? { attachments: mail.attachments.map(fileAttachmentJson) } : {}),
  }
}

interface Page<T> {
  value: T[]
  '@odata.nextLink'?: string
}

/** One page of a folder's delta round, as Graph gave it (messages are checked by the caller). */
export interface DeltaPage {
  /** Messages added to the folder or changed since the last round (changes come again: replays). */
  messages: Record<string, unknown>[]
  /** Ids of messages that left the folder (moved or deleted). */
  removed: string[]
  /** The next page of this round, or (at the end of the round) the link of the next round. */
  nextLink?: string
  deltaLink?: string
}

/** Graph's default and largest page for a messages delta is 10 and about 1,000 (odata.maxpagesize). */
export const DELTA_PAGE_SIZE = 50

/** The only code that talks to a mailbox through Graph. Every failure is a MailboxError. */
export class MailboxClient {
  private readonly client: Client
  private readonly timeoutMs: number
  private readonly hostOverrides: HostOverrides
  private readonly gate: MailboxGate
  private readonly clock: () => number

  constructor(
    tokens: TokenProvider,
    registration: AppRegistration,
    options: { hostOverrides?: HostOverrides; timeoutMs?: number; gate?: MailboxGate; clock?: () => number } = {},
  ) {
    this.hostOverrides = options.hostOverrides ?? tokens.hostOverrides
    // Without a shared gate (one process, tests) the limit holds for this client alone.
    this.gate = options.gate ?? new LocalMailboxGate()
    this.clock = options.clock ?? Date.now
    const origin = `https://${hostsFor(registration.cloud, this.hostOverrides).graph}`
    // Only authentication and transport: the SDK's RetryHandler would re-send POSTs such as
    // sendMail on 429/5xx, which can duplicate mail. Retries are the callers' decision.
    const auth = new BearerToken(origin, async () => (await tokens.acquire(registration)).accessToken)
    auth.setNext(new Transport())
    this.client = Client.initWithMiddleware({ middleware: auth, baseUrl: `${origin}/`, defaultVersion: 'v1.0' })
    this.timeoutMs = options.timeoutMs ?? 30_000
  }

  async folder(mailbox: string, idOrWellKnownName: string): Promise<MailFolder> {
    return this.call(mailbox, () => this.client.api(`/users/${encodeURIComponent(mailbox)}/mailFolders/${encodeURIComponent(idOrWellKnownName)}`).select('id,displayName'))
  }

  /**
   * Resolves a path such as `Inbox/Invoices` to a folder id. The first segment `Inbox` is the
   * well-known inbox (display names are localised); the rest are matched case-insensitively
   * among child folders, following Graph's paging.
   */
  async resolveFolderPath(mailbox: string, path: string): Promise<MailFolder> {
    const [first, ...rest] = path.split('/').map((segment) => segment.trim()).filter(Boolean)
    if (!first) throw new MailboxError('FOLDER_NOT_FOUND', 'Empty folder path')
    let current: MailFolder | undefined
    if (first.toLowerCase() === 'inbox') {
      current = await this.folder(mailbox, 'inbox')
    } else {
      current = await this.findByName(mailbox, `/users/${encodeURIComponent(mailbox)}/mailFolders`, first)
      if (!current) throw new MailboxError('FOLDER_NOT_FOUND', `No top-level folder "${first}" in ${mailbox}`)
    }
    let walked = current.displayName
    for (const segment of rest) {
      const child = await this.findByName(
        mailbox,
        `/users/${encodeURIComponent(mailbox)}/mailFolders/${encodeURIComponent(current.id)}/childFolders`,
        segment,
      )
      if (!child) throw new MailboxError('FOLDER_NOT_FOUND', `No folder "${segment}" under "${walked}" in ${mailbox}`)
      current = child
      walked += `/${child.displayName}`
    }
    return current
  }

  /**
   * One sendMail request; never retried here. `beforeRequest` runs once the mailbox's slot is
   * taken, right before the request leaves (the dispatcher records the send there); if it
   * throws, nothing is sent.
   */
  async sendMail(mailbox: string, mail: OutgoingMail, options: { saveToSentItems?: boolean; beforeRequest?: () => Promise<void> } = {}): Promise<void> {
    await this.call(
      mailbox,
      () => this.client.api(`/users/${encodeURIComponent(mailbox)}/sendMail`),
      'POST',
      { message: graphMessageJson(mail), saveToSentItems: options.saveToSentItems ?? true },
      options.beforeRequest,
    )
  }

  /** Creates a draft with an immutable id, which stays valid after the draft is sent. */
  async createDraft(mailbox: string, mail: OutgoingMail): Promise<DraftInfo> {
    const draft = await this.call<DraftInfo>(
      mailbox,
      () => this.client.api(`${this.messagesPath(mailbox)}`).headers(IMMUTABLE_IDS),
      'POST',
      graphMessageJson(mail),
    )
    return { id: draft.id, isDraft: draft.isDraft, internetMessageId: draft.internetMessageId }
  }

  /** The message with this immutable id, or undefined when the mailbox has no such item. */
  async findMessage(mailbox: string, id: string): Promise<DraftInfo | undefined> {
    try {
      const found = await this.call<DraftInfo>(mailbox, () =>
        this.client.api(`${this.messagesPath(mailbox)}/${encodeURIComponent(id)}`).headers(IMMUTABLE_IDS).select('id,isDraft,internetMessageId'),
      )
      return { id: found.id, isDraft: found.isDraft, internetMessageId: found.internetMessageId }
    } catch (error) {
      if (error instanceof MailboxError && error.status === 404 && error.graphCode === 'ErrorItemNotFound') return undefined
      throw error
    }
  }

  async deleteMessage(mailbox: string, id: string): Promise<void> {
    try {
      await this.call(mailbox, () => this.client.api(`${this.messagesPath(mailbox)}/${encodeURIComponent(id)}`).headers(IMMUTABLE_IDS), 'DELETE')
    } catch (error) {
      if (error instanceof MailboxError && error.status === 404) return
      throw error
    }
  }

  /** Adds a small file (under 3 MB) to a draft. */
  async addAttachment(mailbox: string, draftId: string, attachment: FileAttachment): Promise<void> {
    await this.call(
      mailbox,
      () => this.client.api(`${this.messagesPath(mailbox)}/${encodeURIComponent(draftId)}/attachments`).headers(IMMUTABLE_IDS),
      'POST',
      fileAttachmentJson(attachment),
    )
  }

  /**
   * Uploads a large file (3-150 MB) to a draft through an upload session: pieces of at most
   * 4 MB, in order, to a pre-authorised URL that must not get our bearer token.
   */
  async uploadAttachment(mailbox: string, draftId: string, item: UploadItem, pieces: AsyncIterable<Buffer>): Promise<void> {
    const session = await this.call<{ uploadUrl: string }>(
      mailbox,
      () => this.client.api(`${this.messagesPath(mailbox)}/${encodeURIComponent(draftId)}/attachments/createUploadSession`).headers(IMMUTABLE_IDS),
      'POST',
      {
        AttachmentItem: {
          attachmentType: 'file',
          name: item.name,
          size: item.size,
          contentType: item.contentType,
          isInline: item.isInline,
          ...(item.contentId ? { contentId: item.contentId } : {}),
        },
      },
    )
    const uploadUrl = throughOverride(session.uploadUrl, this.hostOverrides)
    let offset = 0
    for await (const piece of pieces) {
      const end = offset + piece.length - 1
      const release = await this.gate.enter(mailbox)
      try {
        let response: Response
        try {
          response = await microsoftFetch(uploadUrl, {
            method: 'PUT',
            headers: { 'content-type': 'application/octet-stream', 'content-range': `bytes ${offset}-${end}/${item.size}` },
            body: piece,
            signal: AbortSignal.timeout(this.timeoutMs),
          })
        } catch (error) {
          throw toMailboxError(error)
        }
        const text = await response.text()
        if (!response.ok) throw uploadSessionError(response.status, text, response.headers.get('retry-after'))
      } catch (error) {
        await this.noteRetryAfter(mailbox, error)
        throw error
      } finally {
        await release()
      }
      offset = end + 1
    }
    if (offset !== item.size) {
      throw new MailboxError('GRAPH_REQUEST_FAILED', `Uploaded ${offset} bytes of "${item.name}", expected ${item.size}`)
    }
  }

  /** Sends a draft; never retried here. Graph answers 202 once it accepted the submission. `beforeRequest` as for sendMail. */
  async sendDraft(mailbox: string, draftId: string, options: { beforeRequest?: () => Promise<void> } = {}): Promise<void> {
    await this.call(mailbox, () => this.client.api(`${this.messagesPath(mailbox)}/${encodeURIComponent(draftId)}/send`).headers(IMMUTABLE_IDS), 'POST', undefined, options.beforeRequest)
  }

  /**
   * One page of a folder's delta: from the start (`link` undefined: `select` names the
   * fields, which Graph keeps in the links it returns) or from a next/delta link.
   * SYNC_STATE_EXPIRED when Graph no longer knows the link (410): start again.
   */
  async deltaPage(mailbox: string, folderId: string, options: { link?: string; select: string[]; pageSize?: number }): Promise<DeltaPage> {
    const prefer = { Prefer: `IdType="ImmutableId", odata.maxpagesize=${options.pageSize ?? DELTA_PAGE_SIZE}` }
    const page = await this.call<Page<Record<string, unknown>> & { '@odata.deltaLink'?: string }>(mailbox, () =>
      options.link
        ? this.client.api(throughOverride(options.link, this.hostOverrides)).headers(prefer)
        : this.client.api(`/users/${encodeURIComponent(mailbox)}/mailFolders/${encodeURIComponent(folderId)}/messages/delta`).headers(prefer).select(options.select.join(',')),
    )
    const messages: Record<string, unknown>[] = []
    const removed: string[] = []
    for (const item of page.value ?? []) {
      if (item && typeof item === 'object' && '@removed' in item) {
        if (typeof item.id === 'string') removed.push(item.id)
      } else if (item && typeof item === 'object') {
        messages.push(item)
      }
    }
    return { messages, removed, nextLink: page['@odata.nextLink'], deltaLink: page['@odata.deltaLink'] }
  }

  /** A message's MIME (`$value`), streamed as Graph sends it; the mailbox's slot is held until it is read. */
  async messageMime(mailbox: string, id: string): Promise<AsyncIterable<Buffer>> {
    const release = await this.gate.enter(mailbox)
    let body: AsyncIterable<Uint8Array> | null
    try {
      body = await this.request<AsyncIterable<Uint8Array> | null>(() =>
        this.client.api(`${this.messagesPath(mailbox)}/${encodeURIComponent(id)}/$value`).headers(IMMUTABLE_IDS).responseType(ResponseType.STREAM),
      )
    } catch (error) {
      await this.noteRetryAfter(mailbox, error).finally(release)
      throw error
    }
    return releasingStream(body, release)
  }

  /**
   * Subscribes to new mail in a folder. Graph first sends a validation request to each URL
   * and creates the subscription only if it is answered in time.
   */
  async createSubscription(input: {
    mailbox: string
    folderId: string
    notificationUrl: string
    lifecycleNotificationUrl: string
    clientState: string
    expiresAt: Date
  }): Promise<{ id: string; expiresAt: Date }> {
    const created = await this.call<{ id: string; expirationDateTime: string }>(null, () => this.client.api('/subscriptions'), 'POST', {
      changeType: 'created',
      notificationUrl: input.notificationUrl,
      lifecycleNotificationUrl: input.lifecycleNotificationUrl,
      resource: `users/${input.mailbox}/mailFolders('${input.folderId}')/messages`,
      expirationDateTime: input.expiresAt.toISOString(),
      clientState: input.clientState,
    })
    return { id: created.id, expiresAt: new Date(created.expirationDateTime) }
  }

  async renewSubscription(id: string, expiresAt: Date): Promise<Date> {
    const renewed = await this.call<{ expirationDateTime: string }>(null, () => this.client.api(`/subscriptions/${encodeURIComponent(id)}`), 'PATCH', { expirationDateTime: expiresAt.toISOString() })
    return new Date(renewed.expirationDateTime)
  }

  async deleteSubscription(id: string): Promise<void> {
    await this.call(null, () => this.client.api(`/subscriptions/${encodeURIComponent(id)}`), 'DELETE')
  }

  async markRead(mailbox: string, id: string): Promise<void> {
    await this.call(mailbox, () => this.client.api(`${this.messagesPath(mailbox)}/${encodeURIComponent(id)}`).headers(IMMUTABLE_IDS), 'PATCH', { isRead: true })
  }

  /** Moves a message to a folder (an id or well-known name); its immutable id stays. */
  async moveMessage(mailbox: string, id: string, destinationId: string): Promise<void> {
    await this.call(mailbox, () => this.client.api(`${this.messagesPath(mailbox)}/${encodeURIComponent(id)}/move`).headers(IMMUTABLE_IDS), 'POST', { destinationId })
  }

  private messagesPath(mailbox: string): string {
    return `/users/${encodeURIComponent(mailbox)}/messages`
  }

  private async findByName(mailbox: string, listPath: string, name: string): Promise<MailFolder | undefined> {
    let next: string | undefined = listPath
    while (next) {
      const url: string = next
      const page: Page<MailFolder> = await this.call(mailbox, () => this.client.api(url).select('id,displayName'))
      const match = page.value.find((folder) => folder.displayName.toLowerCase() === name.toLowerCase())
      if (match) return match
      const nextLink = page['@odata.nextLink']
      next = nextLink ? throughOverride(nextLink, this.hostOverrides) : undefined
    }
    return undefined
  }

  /** A request; one to a mailbox (`mailbox` set) passes the gate, and a Retry-After pauses the mailbox. */
  private async call<T>(
    mailbox: string | null,
    build: () => ReturnType<Client['api']>,
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE' = 'GET',
    body?: unknown,
    beforeRequest?: () => Promise<void>,
  ): Promise<T> {
    if (mailbox === null) return this.request(build, method, body)
    const release = await this.gate.enter(mailbox)
    try {
      await beforeRequest?.()
      return await this.request<T>(build, method, body)
    } catch (error) {
      await this.noteRetryAfter(mailbox, error)
      throw error
    } finally {
      await release()
    }
  }

  /** Graph's Retry-After on throttling or an outage holds off every request to the mailbox, from any instance. */
  private async noteRetryAfter(mailbox: string, error: unknown): Promise<void> {
    if (!(error instanceof MailboxError) || error.retryAfterSeconds === undefined) return
    if (error.code !== 'THROTTLED' && error.code !== 'GRAPH_UNAVAILABLE') return
    await this.gate.pause(mailbox, new Date(this.clock() + error.retryAfterSeconds * 1000))
  }

  private async request<T>(build: () => ReturnType<Client['api']>, method: 'GET' | 'POST' | 'PATCH' | 'DELETE' = 'GET', body?: unknown): Promise<T> {
    const state = new CallState()
    try {
      const request = build().middlewareOptions([state]).options({ signal: AbortSignal.timeout(this.timeoutMs) })
      if (method === 'GET') return (await request.get()) as T
      if (method === 'DELETE') return (await request.delete()) as T
      if (method === 'PATCH') return (await request.patch(body)) as T
      return (await request.post(body)) as T
    } catch (error) {
      throw toMailboxError(state.failure ?? error)
    }
  }
}

/**
 * A response body as Buffers that gives the mailbox's slot back when it ends, fails, or is
 * closed by its reader, even one that closes it before reading anything (a generator's
 * `return()` would skip its `finally` then).
 */
function releasingStream(body: AsyncIterable<Uint8Array> | null, release: () => Promise<void>): AsyncIterable<Buffer> {
  let source: AsyncIterator<Uint8Array> | undefined
  const done = async (): Promise<IteratorResult<Buffer>> => {
    await release()
    return { done: true, value: undefined }
  }
  const iterator: AsyncIterator<Buffer> = {
    async next() {
      if (!body) return done()
      source ??= body[Symbol.asyncIterator]()
      let item: IteratorResult<Uint8Array>
      try {
        item = await source.next()
      } catch (error) {
        await release()
        throw toMailboxError(error)
      }
      return item.done ? done() : { done: false, value: Buffer.from(item.value) }
    },
    async return() {
      await source?.return?.().catch(() => undefined)
      return done()
    },
  }
  return { [Symbol.asyncIterator]: () => iterator }
}
