import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { makeServerCertificate } from './certificates.ts'
import { MessageDelta } from './delta.ts'
import { CLOUD_HOSTS, FakeEntra, type FakeApp, type FakeCloud, type FakeSecret, type FakeTenant } from './entra.ts'
import { faultAnswer, FaultQueues, MailboxLimits, type GraphFault, type GraphFaultMatch, type TokenFault } from './faults.ts'
import { GraphMail } from './graph-mail.ts'
import {
  graphError,
  header,
  keySegments,
  requestBytes,
  safeDecode,
  tooLarge,
  type FakeAnswer,
  type GraphContext,
  type GraphRequestRecord,
  type RequestBody,
  type RequestHeaders,
} from './graph-http.ts'
import { MailStore, type FakeFolder, type FakeMailbox, type FakeStoredMessage } from './mail-store.ts'
import { MailSending, type FakeDeliveryInput, type FakeDeliveryOptions } from './sending.ts'
import {
  FakeSubscriptions,
  type FakeSubscription,
  type LifecycleDelivery,
  type LifecycleEvent,
  type NotificationDelivery,
  type NotificationTransport,
  type TransportAnswer,
  type ValidationRecord,
} from './subscriptions.ts'
import { UploadSessions } from './uploads.ts'

export type { FakeApp, FakeCloud, FakeSecret, FakeTenant, TokenRequestRecord } from './entra.ts'
export type { GraphFault, GraphFaultMatch, TokenFault } from './faults.ts'
export type { GraphRequestRecord, RequestBody } from './graph-http.ts'
export type {
  FakeAttachmentSummary,
  FakeFolder,
  FakeImportance,
  FakeMailbox,
  FakeMessageFolder,
  FakeSentMessage,
  FakeStoredAttachment,
  FakeStoredMessage,
} from './mail-store.ts'
export type { FakeDeliveryInput, FakeDeliveryOptions } from './sending.ts'
export type {
  FakeSubscription,
  LifecycleDelivery,
  LifecycleEvent,
  NotificationAnswer,
  NotificationDelivery,
  NotificationRequest,
  NotificationTransport,
  TransportAnswer,
  ValidationRecord,
} from './subscriptions.ts'

export const AUTHORITY_HOSTS = ['login.microsoftonline.com', 'login.microsoftonline.us', 'login.chinacloudapi.cn']
export const GRAPH_HOSTS = ['graph.microsoft.com', 'graph.microsoft.us', 'dod-graph.microsoft.us', 'microsoftgraph.chinacloudapi.cn']
/** Hosts of the pre-authenticated attachment upload URLs that createUploadSession hands out. */
export const OUTLOOK_HOSTS = ['outlook.office.com', 'outlook.office365.us', 'outlook-dod.office365.us', 'partner.outlook.cn']

/** Graph refuses request bodies over 4 MB with 413. */
const MAX_REQUEST_BYTES = 4 * 1024 * 1024

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * A stateful stand-in for Microsoft's cloud: tenants with app registrations (secrets,
 * certificates, granted application permissions) behind the Entra token endpoint of every
 * national cloud, and shared mailboxes behind the Graph mail endpoints (folders, sendMail,
 * drafts with attachments and upload sessions, draft send; receiving: mail in any folder,
 * per-folder delta with next/delta links, $value MIME, mark read, move, delete; change-notification
 * subscriptions with the webhook validation handshake, see subscriptions.ts). `listen` serves
 * it as a real local HTTPS server (npm run sandbox); the tests also reach it through nock
 * (test/support/fake-microsoft.ts), so no traffic leaves the machine.
 *
 * This class routes requests and holds the settings; the parts do the work: entra.ts (tenants,
 * apps, tokens), faults.ts (injected faults, throttling), mail-store.ts (mailboxes, folders,
 * messages), graph-mail.ts (the mail routes) with message-json.ts, delta.ts, sending.ts (sending
 * and delivery), uploads.ts (upload sessions) and subscriptions.ts; graph-http.ts has what they share.
 */
export class FakeMicrosoft {
  /** Every Graph and Outlook request (not token requests) waits this long before it is answered. */
  latencyMs = 0
  /** Graph's MailboxConcurrency limit: a request beyond it is refused with 429 and Retry-After (0: no limit). */
  concurrencyLimit = 4
  /** Graph's per app and mailbox budget: this many requests in 10 minutes, then 429 with Retry-After (0: no limit). */
  requestsPer10Minutes = 10_000
  /** How long a subscription's validation request may take (Graph: 10 s). */
  validationTimeoutMs = 10_000
  /** How long a change notification's answer may take before the delivery counts as failed (Graph: 3 s). */
  notificationTimeoutMs = 3_000
  /** The longest subscription Graph grants on Outlook messages, in minutes from the request. */
  maxSubscriptionMinutes = 4230
  /** Whether a PATCH (renewal) validates the subscription's URLs again, as Graph does. */
  validateOnRenewal = true
  /** Hosts that stand in for the Microsoft hosts of a cloud (a proxy, a sandbox): host[:port] -> cloud. */
  protected readonly standIns = new Map<string, FakeCloud>()

  private readonly faults = new FaultQueues()
  private readonly entra = new FakeEntra({
    takeFault: () => this.faults.takeTokenFault(),
    authority: (host) => this.canonical(host, 'authority'),
  })
  private readonly limits = new MailboxLimits(
    () => ({ concurrencyLimit: this.concurrencyLimit, requestsPer10Minutes: this.requestsPer10Minutes }),
    (token) => this.entra.verifyToken(token)?.appid,
  )
  private readonly changeNotifications: FakeSubscriptions = new FakeSubscriptions({
    lookupMailbox: (addressOrId) => this.store.lookupMailbox(addressOrId),
    findFolder: (mailbox, idOrWellKnown) => this.store.findFolder(mailbox.folders, idOrWellKnown),
    etag: (message) => `W/"${this.store.changeKey(message)}"`,
    settings: () => ({
      validationTimeoutMs: this.validationTimeoutMs,
      notificationTimeoutMs: this.notificationTimeoutMs,
      maxExpirationMinutes: this.maxSubscriptionMinutes,
      validateOnRenewal: this.validateOnRenewal,
    }),
  })
  private readonly store: MailStore = new MailStore(this.changeNotifications)
  private readonly delta = new MessageDelta(this.store)
  private readonly sending = new MailSending(this.store, this.entra.tenants)
  private readonly uploads = new UploadSessions(this.store, this.entra)
  private readonly mail = new GraphMail({ store: this.store, delta: this.delta, sending: this.sending, uploads: this.uploads })
  private readonly servers: Server[] = []

  readonly tenants = this.entra.tenants
  readonly tokenRequests = this.entra.tokenRequests
  readonly mailboxes = this.store.mailboxes
  readonly graphRequests: GraphRequestRecord[] = []
  /** Every message in every mailbox, keyed by immutable id (so by `id` too for messages created with immutable ids). */
  readonly messages = this.store.messages
  /** Per mailbox (lowercase address), the most Graph/Outlook requests ever in flight at once. */
  readonly maxConcurrentPerMailbox = this.limits.maxConcurrentPerMailbox
  /** Requests refused for being over concurrencyLimit, per mailbox. */
  readonly concurrencyRefusals = this.limits.concurrencyRefusals

  /**
   * A real HTTPS server on 127.0.0.1 standing in for `cloud`, with a certificate from a private
   * CA (`caPem`) that only a client told to trust it accepts: a new one, or the one given.
   */
  async listen(
    cloud: FakeCloud = 'global',
    options: { port?: number; certificate?: { caPem: string; certPem: string; keyPem: string } } = {},
  ): Promise<{ host: string; caPem: string; close(): Promise<void> }> {
    const certificate = options.certificate ?? makeServerCertificate(['127.0.0.1', 'localhost'])
    const server = createServer({ key: certificate.keyPem, cert: certificate.certPem }, (request, response) => {
      const chunks: Buffer[] = []
      request.on('data', (chunk: Buffer) => chunks.push(chunk))
      request.on('end', () => {
        const raw = Buffer.concat(chunks)
        const method = request.method ?? 'GET'
        this.handle(host, method, request.url ?? '/', method === 'PUT' ? raw : raw.toString('utf8'), request.headers).then(
          (answer) => {
            if (answer === 'network') return void request.socket.destroy()
            const body =
              answer.body === undefined || answer.body === ''
                ? ''
                : typeof answer.body === 'string' || Buffer.isBuffer(answer.body)
                  ? answer.body
                  : JSON.stringify(answer.body)
            response.writeHead(answer.status, answer.headers ?? {})
            response.end(body)
          },
          () => request.socket.destroy(),
        )
      })
    })
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(options.port ?? 0, '127.0.0.1', resolve))
    const host = `127.0.0.1:${(server.address() as AddressInfo).port}`
    this.standIns.set(host, cloud)
    this.servers.push(server)
    return {
      host,
      caPem: certificate.caPem,
      close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    }
  }

  /** Closes the servers `listen` opened. */
  stop(): void {
    for (const server of this.servers.splice(0)) server.close()
  }

  /** A stand-in host's request, routed by path as the cloud's hosts would serve it. */
  protected async handle(host: string, method: string, uri: string, body: RequestBody, headers: RequestHeaders): Promise<'network' | FakeAnswer> {
    const path = uri.split('?')[0]!
    const tokenPath = /^\/([^/]+)\/oauth2\/v2\.0\/token$/.exec(path)
    if (method === 'POST' && tokenPath) {
      const result = await this.token(host, tokenPath[1]!, typeof body === 'string' ? body : new URLSearchParams(body as Record<string, string>).toString())
      if (result === 'network') return 'network'
      const contentType = 'contentType' in result && result.contentType ? result.contentType : 'application/json; charset=utf-8'
      return { status: result.status, body: result.body, headers: { 'content-type': contentType } }
    }
    if (path.startsWith('/v1.0/')) return this.serve('graph', host, method, uri, body, headers)
    if (path.startsWith('/api/')) return this.serve('outlook', host, method, uri, body, headers)
    return graphError(404, 'NotFound', `The fake serves nothing at ${method} ${path}.`)
  }

  /** The Microsoft host a request to `host` is for: itself, or the cloud's host a stand-in replaces. */
  private canonical(host: string, service: 'authority' | 'graph' | 'outlook'): string {
    const cloud = this.standIns.get(host)
    return cloud ? CLOUD_HOSTS[cloud][service] : host
  }

  addTenant(options: { id?: string; domains?: string[]; cloud?: FakeCloud } = {}): FakeTenant {
    return this.entra.addTenant(options)
  }

  registerApp(
    tenant: FakeTenant,
    options: { clientId?: string; roles?: string[]; secrets?: FakeSecret[]; certificates?: string[] } = {},
  ): FakeApp {
    return this.entra.registerApp(tenant, options)
  }

  /**
   * A shared mailbox with the usual well-known folders and, to exercise paging, more
   * top-level folders than Graph returns in one page.
   */
  addMailbox(tenant: FakeTenant, address: string, options: { aliases?: string[]; extraTopLevel?: number; stableIds?: boolean } = {}): FakeMailbox {
    return this.store.addMailbox(tenant, address, options)
  }

  /** Creates the folders of a path such as `Inbox/Invoices/2026` (existing ones are reused). */
  addFolder(mailbox: FakeMailbox, path: string): FakeFolder {
    return this.store.addFolder(mailbox, path)
  }

  /** A message by the id a client would use: its immutable id or its current REST id. */
  findMessage(id: string): FakeStoredMessage | undefined {
    return this.store.findMessage(id)
  }

  /** A mailbox by its address or by one of its aliases. */
  findMailbox(address: string): FakeMailbox | undefined {
    return this.store.findMailbox(address)
  }

  /**
   * A folder by id, well-known name ('inbox', 'junkemail', ...) or path from the top
   * ('Inbox/Invoices/2026', display names case-insensitive; the first segment may be a
   * well-known name too).
   */
  folder(mailbox: FakeMailbox | string, pathOrId: string): FakeFolder | undefined {
    return this.store.folder(mailbox, pathOrId)
  }

  /**
   * Puts mail into a folder of `mailbox` (default its inbox), as if it had arrived there:
   * structured fields, or `{ mime }` raw RFC 5322 read the way Exchange reads it (subject,
   * addresses, Message-ID, Date, headers, HTML or text body, attachments), whose bytes $value
   * then answers verbatim. Appears in the folder's delta like any new mail. Not recorded in
   * `mailbox.received`, which lists what fake mailboxes sent each other.
   */
  deliver(mailbox: FakeMailbox | string, input: FakeDeliveryInput | { mime: Buffer | string }, options: FakeDeliveryOptions = {}): Promise<FakeStoredMessage> {
    return this.sending.deliver(mailbox, input, options)
  }

  /** Waits for NDRs and automatic replies under way to arrive. */
  mailSettled(): Promise<void> {
    return this.sending.mailSettled()
  }

  /** The messages in a folder (path, well-known name or id), oldest received first. */
  folderMessages(mailbox: FakeMailbox | string, folder: string): FakeStoredMessage[] {
    const box = this.store.mailboxOf(mailbox)
    const where = this.store.folder(box, folder)
    if (!where) throw new Error(`The fake mailbox ${box.address} has no folder '${folder}'`)
    return this.store.messagesIn(box.address, where.id).sort((a, b) => a.receivedDateTime.localeCompare(b.receivedDateTime))
  }

  /** A change made in the mailbox itself (say, read in Outlook): shows up in delta as an updated item. */
  updateMessage(message: FakeStoredMessage, changes: Partial<Pick<FakeStoredMessage, 'isRead' | 'subject' | 'importance' | 'body'>>): FakeStoredMessage {
    Object.assign(message, changes)
    this.store.touch(message)
    return message
  }

  /** A move made in the mailbox itself: new REST id, same immutable id, @removed from the old folder's delta. */
  moveMessage(message: FakeStoredMessage, folder: string): FakeStoredMessage {
    const destination = this.store.folder(message.mailbox, folder)
    if (!destination) throw new Error(`The fake mailbox ${message.mailbox} has no folder '${folder}'`)
    this.store.move(message, destination)
    return message
  }

  /** A deletion made in the mailbox itself: @removed in the folder's next delta round. */
  deleteMessage(message: FakeStoredMessage): void {
    this.store.forget(message)
  }

  /**
   * Every delta link (next and delta) handed out for `mailbox` so far answers 410 Gone with
   * SyncStateNotFound from now on, as Graph does when it dropped the sync state: the client
   * must start again without a token.
   */
  expireDeltaTokens(mailbox: FakeMailbox | string): void {
    this.delta.expireTokens(this.store.mailboxOf(mailbox).address)
  }

  /**
   * The next delta request for `mailbox` (to a folder that already served a page) answers
   * the items of the page served before it again, ahead of its own: Graph replays, and a
   * consumer has to be idempotent.
   */
  replayNextDeltaPage(mailbox: FakeMailbox | string): void {
    this.delta.replayNextPage(this.store.mailboxOf(mailbox).address)
  }

  /**
   * How the fake reaches the subscriber's notification URLs (validation requests, change and
   * lifecycle notifications): tests wire it to the app's `inject`. Without one, creating a
   * subscription fails its validation.
   */
  setNotificationTransport(send: NotificationTransport | undefined): void {
    this.changeNotifications.setTransport(send)
  }

  /** Every POST of change notifications, in the order sent, with its answer (status, ms, ok). */
  get notificationDeliveries(): NotificationDelivery[] {
    return this.changeNotifications.notificationDeliveries
  }

  /** Every validation request (`?validationToken=`) sent while creating or renewing subscriptions. */
  get validationRequests(): ValidationRecord[] {
    return this.changeNotifications.validationRequests
  }

  /** Every lifecycle notification sent by sendLifecycleEvent, with its answer. */
  get lifecycleDeliveries(): LifecycleDelivery[] {
    return this.changeNotifications.lifecycleDeliveries
  }

  /** Waits until every queued change notification has been sent and answered (or timed out). */
  flushNotifications(): Promise<void> {
    return this.changeNotifications.flush()
  }

  /** The live subscriptions (all, or of one mailbox by address or id), as stored. */
  subscriptions(mailbox?: FakeMailbox | string): FakeSubscription[] {
    return this.changeNotifications.list(typeof mailbox === 'object' ? mailbox.address : mailbox)
  }

  /**
   * Sends a lifecycle notification to the subscription's lifecycleNotificationUrl and returns
   * the answer; `subscriptionRemoved` removes the subscription first, as Graph has by then.
   */
  sendLifecycleEvent(subscriptionId: string, event: LifecycleEvent): Promise<TransportAnswer> {
    return this.changeNotifications.lifecycle(subscriptionId, event)
  }

  /** Sends any payload (JSON unless a string), e.g. a forged notification, to `url` through the transport. */
  postNotification(url: string, body: unknown): Promise<TransportAnswer> {
    return this.changeNotifications.post(url, body)
  }

  /** The subscription expires now: the API answers 404 for it and it sends nothing more. */
  expireSubscription(subscriptionId: string): void {
    this.changeNotifications.expire(subscriptionId)
  }

  /**
   * The next Graph and Outlook requests fail this way, in order; one fault per request.
   * Requests that take a fault from failGraphRequests leave this queue alone.
   */
  failNextGraphRequests(...faults: GraphFault[]): void {
    this.faults.failNextGraphRequests(faults)
  }

  /**
   * Each later Graph or Outlook request matching `match` (method and URL pathname) takes the
   * next of these faults, in order; other requests pass untouched.
   */
  failGraphRequests(match: GraphFaultMatch, ...faults: GraphFault[]): void {
    this.faults.failGraphRequests(match, faults)
  }

  /** The next token requests fail this way, in order; one fault per request. */
  failNextTokenRequests(...faults: TokenFault[]): void {
    this.faults.failNextTokenRequests(faults)
  }

  /** Faults still waiting to be taken: Graph (queued and targeted) and token. */
  pendingFaults(): { graph: number; token: number } {
    return this.faults.pending()
  }

  /** Forgets every fault not yet taken. */
  clearFaults(): void {
    this.faults.clear()
  }

  protected token(host: string, tenantKey: string, rawBody: string) {
    return this.entra.token(host, tenantKey, rawBody)
  }

  /**
   * What every Graph and Outlook request goes through: its record, the per-mailbox count of
   * requests in flight, latency, and faults around the actual handling.
   */
  protected async serve(
    service: 'graph' | 'outlook',
    host: string,
    method: string,
    uri: string,
    body: RequestBody,
    headers: RequestHeaders,
  ): Promise<'network' | FakeAnswer> {
    const record: GraphRequestRecord = { host, method, path: new URL(uri, `https://${host}`).pathname, at: Date.now(), appId: undefined, status: 0 }
    host = this.canonical(host, service)
    const url = new URL(uri, `https://${host}`)
    const prefer = header(headers, 'prefer')
    if (prefer !== undefined) record.prefer = prefer
    if (url.search) record.query = url.search
    if (service === 'outlook') record.hadAuthorization = header(headers, 'authorization') !== undefined
    this.graphRequests.push(record)

    const mailboxKey = service === 'graph' ? this.graphMailboxKey(url) : this.uploads.mailboxKey(url)
    const inFlight = this.limits.enter(mailboxKey)
    try {
      if (this.latencyMs > 0) await sleep(this.latencyMs)
      const refusal = this.limits.overConcurrency(mailboxKey, inFlight) ?? (mailboxKey ? this.limits.overRequestBudget(mailboxKey, headers) : undefined)
      if (refusal) {
        record.status = refusal.status
        return refusal
      }
      const fault = this.faults.takeGraphFault(method, url.pathname)
      if (fault) record.fault = fault.kind
      if (fault?.kind === 'delay') await sleep(fault.ms)
      if (fault?.kind === 'network') {
        record.status = -1
        return 'network'
      }
      if (fault?.kind === 'status') {
        const answer = faultAnswer(fault)
        record.status = answer.status
        return answer
      }

      const answer = service === 'graph' ? await this.graph(host, method, url, body, headers, record) : this.uploads.serve(host, method, url, body, headers, record)
      record.status = answer.status
      if (fault?.kind !== 'lost-response') return answer
      record.processedStatus = answer.status
      if (fault.status === undefined) {
        record.status = -1
        return 'network'
      }
      const lost = faultAnswer({ ...fault, status: fault.status })
      record.status = lost.status
      return lost
    } finally {
      this.limits.leave(mailboxKey)
    }
  }

  private graphMailboxKey(url: URL): string {
    const [, collection, key] = keySegments(url.pathname.split('/').slice(1).map(safeDecode))
    if (collection !== 'users' || !key) return ''
    return this.store.lookupMailbox(key)?.address ?? key.toLowerCase()
  }

  private async graph(host: string, method: string, url: URL, body: RequestBody, headers: RequestHeaders, record: GraphRequestRecord): Promise<FakeAnswer> {
    const claims = this.entra.verifyToken((header(headers, 'authorization') ?? '').replace(/^Bearer /, ''))
    if (!claims) return graphError(401, 'InvalidAuthenticationToken', 'Access token validation failure.')
    if (claims.aud !== `https://${host}`) {
      return graphError(401, 'InvalidAuthenticationToken', 'Access token validation failure. Invalid audience.')
    }
    record.appId = claims.appid

    const segments = keySegments(url.pathname.replace(/^\/v1\.0\//, '').split('/').map(safeDecode))
    if (segments[0] === 'subscriptions') {
      if ((method === 'POST' || method === 'PATCH') && requestBytes(body) > MAX_REQUEST_BYTES) return tooLarge()
      const caller = {
        host,
        appId: claims.appid,
        tenantId: claims.tid,
        roles: new Set(claims.roles),
        preferImmutable: /IdType\s*=\s*"?ImmutableId"?/i.test(record.prefer ?? ''),
      }
      const answer = await this.changeNotifications.handle(caller, method, segments.slice(1), body)
      return answer ?? graphError(400, 'BadRequest', `The fake does not serve ${method} ${url.pathname}.`)
    }
    if (segments[0] !== 'users' || !segments[1]) return graphError(400, 'BadRequest', 'Resource not found for the segment.')
    const mailbox = this.store.lookupMailbox(segments[1])
    if (!mailbox || mailbox.tenantId !== claims.tid) {
      return graphError(404, 'ErrorInvalidUser', `The requested user '${segments[1]}' is invalid.`)
    }
    if (mailbox.allowedApps && !mailbox.allowedApps.has(claims.appid)) {
      return graphError(403, 'ErrorAccessDenied', 'Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.')
    }
    if ((method === 'POST' || method === 'PATCH') && requestBytes(body) > MAX_REQUEST_BYTES) return tooLarge()

    const context: GraphContext = {
      host,
      url,
      mailbox,
      appId: claims.appid,
      roles: new Set(claims.roles),
      preferImmutable: /IdType\s*=\s*"?ImmutableId"?/i.test(record.prefer ?? ''),
      prefer: record.prefer,
      body,
    }
    const [, , resource, ...rest] = segments
    return this.mail.route(context, method, resource, rest) ?? graphError(400, 'BadRequest', `The fake does not serve ${method} ${url.pathname}.`)
  }
}
