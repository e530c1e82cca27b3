import { AuthenticationHandler, Client, GraphError, HTTPMessageHandler } from '@microsoft/microsoft-graph-client'
import { hostsFor, type HostOverrides } from './clouds.ts'
import { TokenError, type AppRegistration, type TokenProvider } from './token-provider.ts'

export type GraphErrorCode =
  | 'MAILBOX_NOT_FOUND'
  | 'ACCESS_POLICY_BLOCKED'
  | 'PERMISSION_MISSING'
  | 'SEND_AS_DENIED'
  | 'FOLDER_NOT_FOUND'
  | 'THROTTLED'
  | 'GRAPH_UNAVAILABLE'
  | 'NETWORK_ERROR'
  | 'GRAPH_TIMEOUT'
  | 'AUTHENTICATION_FAILED'
  | 'GRAPH_REQUEST_FAILED'

const HINTS: Record<GraphErrorCode, string> = {
  MAILBOX_NOT_FOUND:
    'Exchange Online has no mailbox with this address in the tenant. Check the address, and that the shared mailbox exists and is licensed for Exchange Online.',
  ACCESS_POLICY_BLOCKED:
    'An application access policy or RBAC for Applications scope keeps this app away from the mailbox. Add the mailbox to the group the policy allows (New-ApplicationAccessPolicy / management scope), then test again; changes can take up to an hour.',
  PERMISSION_MISSING:
    'The app lacks the Graph application permission for this. Grant Mail.ReadWrite (incoming) or Mail.Send (outgoing) with admin consent.',
  SEND_AS_DENIED:
    'The mailbox may not send as this address. Give the mailbox Send As rights on the alias in Exchange, or use an address of the mailbox itself.',
  FOLDER_NOT_FOUND: 'No folder with this path exists in the mailbox. Folder names are matched case-insensitively, level by level.',
  THROTTLED: 'Microsoft Graph is throttling this app for the mailbox. Wait for the Retry-After period and try again.',
  GRAPH_UNAVAILABLE: 'Microsoft Graph answered with a server error. This is usually temporary: try again shortly.',
  NETWORK_ERROR: 'Could not reach Microsoft Graph. Check outbound HTTPS from this server to the Graph host.',
  GRAPH_TIMEOUT: 'Microsoft Graph did not answer in time. Try again.',
  AUTHENTICATION_FAILED: 'No token could be acquired for the integration. Test the integration for details.',
  GRAPH_REQUEST_FAILED: 'Microsoft Graph refused the request. The message has its reason.',
}

export class MailboxError extends Error {
  readonly code: GraphErrorCode
  readonly hint: string
  readonly status: number | undefined
  readonly graphCode: string | undefined
  readonly retryAfterSeconds: number | undefined
  /** For AUTHENTICATION_FAILED from Entra: the token error's code. */
  readonly tokenCode: string | undefined

  constructor(
    code: GraphErrorCode,
    message: string,
    details: { status?: number; graphCode?: string; retryAfterSeconds?: number; hint?: string; tokenCode?: string } = {},
  ) {
    super(message)
    this.name = 'MailboxError'
    this.code = code
    this.hint = details.hint ?? HINTS[code]
    this.status = details.status
    this.graphCode = details.graphCode
    this.retryAfterSeconds = details.retryAfterSeconds
    this.tokenCode = details.tokenCode
  }

  /** Authentication and unreachable-mailbox failures count toward automatic disable. */
  get countsTowardDisable(): boolean {
    return ['AUTHENTICATION_FAILED', 'MAILBOX_NOT_FOUND', 'ACCESS_POLICY_BLOCKED', 'PERMISSION_MISSING'].includes(this.code)
  }
}

export function toMailboxError(error: unknown): MailboxError {
  if (error instanceof MailboxError) return error
  if (error instanceof TokenError) {
    return new MailboxError('AUTHENTICATION_FAILED', `${error.code}: ${error.message}`, { hint: error.hint, tokenCode: error.code })
  }
  if (error instanceof GraphError && error.statusCode > 0) {
    const status = error.statusCode
    const graphCode = error.code ?? undefined
    const message = error.message || `Graph answered ${status}`
    const retryAfter = Number(error.headers?.get?.('retry-after'))
    const details = { status, graphCode, retryAfterSeconds: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : undefined }
    if (status === 404 && /ErrorInvalidUser|MailboxNotEnabledForRESTAPI|ResourceNotFound|ErrorNonExistentMailbox/i.test(graphCode ?? '')) {
      return new MailboxError('MAILBOX_NOT_FOUND', message, details)
    }
    if (status === 404) return new MailboxError('FOLDER_NOT_FOUND', message, details)
    if (status === 403 && /RAOP|AccessPolicy|Access to OData is disabled|management scope/i.test(message)) {
      return new MailboxError('ACCESS_POLICY_BLOCKED', message, details)
    }
    if (status === 403 && graphCode === 'ErrorSendAsDenied') return new MailboxError('SEND_AS_DENIED', message, details)
    if (status === 401) return new MailboxError('AUTHENTICATION_FAILED', message, details)
    if (status === 403) return new MailboxError('PERMISSION_MISSING', message, details)
    if (status === 429) return new MailboxError('THROTTLED', message, details)
    if (status >= 500) return new MailboxError('GRAPH_UNAVAILABLE', message, details)
    return new MailboxError('GRAPH_REQUEST_FAILED', message, details)
  }
  // The SDK wraps transport failures in a GraphError with statusCode -1 and the cause's name as code.
  const err = error as { name?: string; message?: string; code?: string | null }
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError' || err?.code === 'TimeoutError' || err?.code === 'AbortError') {
    return new MailboxError('GRAPH_TIMEOUT', 'No answer from Microsoft Graph in time')
  }
  return new MailboxError('NETWORK_ERROR', 'Could not reach Microsoft Graph')
}

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

/** An upload-session PUT that failed, in the same vocabulary as Graph calls. */
function uploadError(status: number, text: string, retryAfter: string | null): MailboxError {
  let graphCode: string | undefined
  let message = `The attachment upload answered ${status}`
  try {
    const parsed = JSON.parse(text) as { error?: { code?: string; message?: string } }
    graphCode = parsed.error?.code
    if (parsed.error?.message) message = parsed.error.message
  } catch {
    // Not JSON: keep the status line.
  }
  const seconds = Number(retryAfter)
  const details = { status, graphCode, retryAfterSeconds: Number.isFinite(seconds) && seconds > 0 ? seconds : undefined }
  if (status === 429) return new MailboxError('THROTTLED', message, details)
  if (status >= 500) return new MailboxError('GRAPH_UNAVAILABLE', message, details)
  return new MailboxError('GRAPH_REQUEST_FAILED', message, details)
}

interface Page<T> {
  value: T[]
  '@odata.nextLink'?: string
}

/** The only code that talks to a mailbox through Graph. Every failure is a MailboxError. */
export class MailboxClient {
  private readonly client: Client
  private readonly timeoutMs: number
  /** The SDK wraps a failed token request in a status -1 GraphError; this keeps the original. */
  private tokenFailure: TokenError | undefined

  constructor(tokens: TokenProvider, registration: AppRegistration, options: { hostOverrides?: HostOverrides; timeoutMs?: number } = {}) {
    const hosts = hostsFor(registration.cloud, options.hostOverrides ?? tokens.hostOverrides)
    // Only authentication and transport: the SDK's RetryHandler would re-send POSTs such as
    // sendMail on 429/5xx, which can duplicate mail. Retries are the callers' decision.
    const auth = new AuthenticationHandler({
      getAccessToken: async () => {
        try {
          return (await tokens.acquire(registration)).accessToken
        } catch (error) {
          if (error instanceof TokenError) this.tokenFailure = error
          throw error
        }
      },
    })
    auth.setNext(new HTTPMessageHandler())
    this.client = Client.initWithMiddleware({ middleware: auth, baseUrl: `https://${hosts.graph}/`, defaultVersion: 'v1.0' })
    this.timeoutMs = options.timeoutMs ?? 30_000
  }

  async folder(mailbox: string, idOrWellKnownName: string): Promise<MailFolder> {
    return this.call(() => this.client.api(`/users/${encodeURIComponent(mailbox)}/mailFolders/${encodeURIComponent(idOrWellKnownName)}`).select('id,displayName'))
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
      current = await this.findByName(`/users/${encodeURIComponent(mailbox)}/mailFolders`, first)
      if (!current) throw new MailboxError('FOLDER_NOT_FOUND', `No top-level folder "${first}" in ${mailbox}`)
    }
    let walked = current.displayName
    for (const segment of rest) {
      const child = await this.findByName(
        `/users/${encodeURIComponent(mailbox)}/mailFolders/${encodeURIComponent(current.id)}/childFolders`,
        segment,
      )
      if (!child) throw new MailboxError('FOLDER_NOT_FOUND', `No folder "${segment}" under "${walked}" in ${mailbox}`)
      current = child
      walked += `/${child.displayName}`
    }
    return current
  }

  /** One sendMail request; never retried here. */
  async sendMail(mailbox: string, mail: OutgoingMail, saveToSentItems = true): Promise<void> {
    await this.call(() => this.client.api(`/users/${encodeURIComponent(mailbox)}/sendMail`), 'POST', {
      message: graphMessageJson(mail),
      saveToSentItems,
    })
  }

  /** Creates a draft with an immutable id, which stays valid after the draft is sent. */
  async createDraft(mailbox: string, mail: OutgoingMail): Promise<DraftInfo> {
    const draft = await this.call<DraftInfo>(
      () => this.client.api(`${this.messagesPath(mailbox)}`).headers(IMMUTABLE_IDS),
      'POST',
      graphMessageJson(mail),
    )
    return { id: draft.id, isDraft: draft.isDraft, internetMessageId: draft.internetMessageId }
  }

  /** The message with this immutable id, or undefined when the mailbox has no such item. */
  async findMessage(mailbox: string, id: string): Promise<DraftInfo | undefined> {
    try {
      const found = await this.call<DraftInfo>(() =>
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
      await this.call(() => this.client.api(`${this.messagesPath(mailbox)}/${encodeURIComponent(id)}`).headers(IMMUTABLE_IDS), 'DELETE')
    } catch (error) {
      if (error instanceof MailboxError && error.status === 404) return
      throw error
    }
  }

  /** Adds a small file (under 3 MB) to a draft. */
  async addAttachment(mailbox: string, draftId: string, attachment: FileAttachment): Promise<void> {
    await this.call(
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
    let offset = 0
    for await (const piece of pieces) {
      const end = offset + piece.length - 1
      let response: Response
      try {
        response = await fetch(session.uploadUrl, {
          method: 'PUT',
          headers: { 'content-type': 'application/octet-stream', 'content-range': `bytes ${offset}-${end}/${item.size}` },
          body: piece,
          signal: AbortSignal.timeout(this.timeoutMs),
        })
      } catch (error) {
        throw toMailboxError(error)
      }
      const text = await response.text()
      if (!response.ok) throw uploadError(response.status, text, response.headers.get('retry-after'))
      offset = end + 1
    }
    if (offset !== item.size) {
      throw new MailboxError('GRAPH_REQUEST_FAILED', `Uploaded ${offset} bytes of "${item.name}", expected ${item.size}`)
    }
  }

  /** Sends a draft; never retried here. Graph answers 202 once it accepted the submission. */
  async sendDraft(mailbox: string, draftId: string): Promise<void> {
    await this.call(() => this.client.api(`${this.messagesPath(mailbox)}/${encodeURIComponent(draftId)}/send`).headers(IMMUTABLE_IDS), 'POST')
  }

  private messagesPath(mailbox: string): string {
    return `/users/${encodeURIComponent(mailbox)}/messages`
  }

  private async findByName(listPath: string, name: string): Promise<MailFolder | undefined> {
    let next: string | undefined = listPath
    while (next) {
      const url: string = next
      const page: Page<MailFolder> = await this.call(() => this.client.api(url).select('id,displayName'))
      const match = page.value.find((folder) => folder.displayName.toLowerCase() === name.toLowerCase())
      if (match) return match
      next = page['@odata.nextLink']
    }
    return undefined
  }

  private async call<T>(
    build: () => ReturnType<Client['api']>,
    method: 'GET' | 'POST' | 'DELETE' = 'GET',
    body?: unknown,
  ): Promise<T> {
    this.tokenFailure = undefined
    try {
      const request = build().options({ signal: AbortSignal.timeout(this.timeoutMs) })
      if (method === 'GET') return (await request.get()) as T
      if (method === 'DELETE') return (await request.delete()) as T
      return (await request.post(body)) as T
    } catch (error) {
      throw toMailboxError(this.tokenFailure ?? error)
    }
  }
}
