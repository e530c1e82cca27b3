import { randomUUID } from 'node:crypto'
import { canRead, graphError, keySegments, reply, safeDecode, type FakeAnswer } from './graph-http.ts'
import type { FakeFolder, FakeMailbox, FakeStoredMessage } from './mail-store.ts'

/**
 * Microsoft Graph change notifications (webhooks) for the fake's mail folders: the
 * /subscriptions API (create with the validation handshake, get, list, renew, reauthorize,
 * delete, expiry), change notifications for messages that arrive in, change in or leave a
 * subscribed folder, and lifecycle notifications. FakeMicrosoft owns an instance and routes
 * /v1.0/subscriptions requests and message changes to it; tests use it through FakeMicrosoft.
 *
 * Graph reaches the subscriber over HTTPS; the fake reaches it through a transport the test
 * sets (typically wired to the app's `inject`), so no request leaves the process.
 */

export interface NotificationRequest {
  url: string
  method: 'POST'
  headers: Record<string, string>
  body: string
}

export interface NotificationAnswer {
  status: number
  contentType?: string
  body: string
}

export type NotificationTransport = (request: NotificationRequest) => Promise<NotificationAnswer>

export type ChangeType = 'created' | 'updated' | 'deleted'
export type LifecycleEvent = 'reauthorizationRequired' | 'subscriptionRemoved' | 'missed'

export interface FakeSubscription {
  id: string
  /** The app (client id) that created it; only that app sees it through the API. */
  applicationId: string
  creatorId: string
  tenantId: string
  /** Lowercase address and id of the mailbox the resource names. */
  mailbox: string
  userId: string
  /** The subscribed folder's id; undefined for a whole-mailbox subscription (`users/{id}/messages`). */
  folderId?: string
  /** The resource as the creator wrote it (Graph echoes it unchanged). */
  resource: string
  /** As sent, e.g. 'created' or 'created,updated'. */
  changeType: string
  changeTypes: ChangeType[]
  notificationUrl: string
  lifecycleNotificationUrl?: string
  /** As sent; undefined when none was. */
  clientState?: string
  /** ISO 8601, as Graph answers it. */
  expirationDateTime: string
  /** Created with Prefer: IdType="ImmutableId": notifications then carry immutable message ids. */
  immutableIds: boolean
  createdAt: number
}

/** One POST of notifications for a subscription, and how it was answered. */
interface SubscriberPost {
  subscriptionId: string
  url: string
  /** The JSON body sent: `{ value: [...] }`. */
  body: { value: Record<string, unknown>[] }
  /** When it was sent (epoch ms). */
  at: number
  /** The answer's status; -1 when the transport threw. Change notifications: 0 when no answer came within the timeout. */
  status: number
  /** How long the answer took. Change notifications: up to the timeout when none came. */
  ms: number
  /** 2xx. Change notifications: within the timeout (Graph would retry a failed delivery for up to 4 hours; the fake does not). */
  ok: boolean
  error?: string
}

/** One POST of change notifications to a notificationUrl, and how it was answered. */
export interface NotificationDelivery extends SubscriberPost {
  timedOut: boolean
  /** For timed-out deliveries: the status that arrived later, if one did. */
  lateStatus?: number
}

/** A validation request (`?validationToken=`) sent while creating or renewing a subscription. */
export interface ValidationRecord {
  url: string
  token: string
  at: number
  status: number
  ms: number
  ok: boolean
  /** Why it failed, when it did. */
  reason?: string
}

/** A lifecycle notification sent to a lifecycleNotificationUrl, and how it was answered. */
export interface LifecycleDelivery extends SubscriberPost {
  event: LifecycleEvent
}

export interface TransportAnswer extends NotificationAnswer {
  ms: number
}

/** What the subscriptions need from the rest of the fake. */
export interface SubscriptionHost {
  lookupMailbox(addressOrId: string): FakeMailbox | undefined
  findFolder(mailbox: FakeMailbox, idOrWellKnown: string): FakeFolder | undefined
  /** The message's current @odata.etag, e.g. `W/"CQAAAB..."`. */
  etag(message: FakeStoredMessage): string
  settings(): SubscriptionSettings
}

export interface SubscriptionSettings {
  validationTimeoutMs: number
  notificationTimeoutMs: number
  maxExpirationMinutes: number
  validateOnRenewal: boolean
}

export interface SubscriptionCaller {
  host: string
  appId: string
  tenantId: string
  roles: Set<string>
  preferImmutable: boolean
}

const CHANGE_TYPES: ChangeType[] = ['created', 'updated', 'deleted']
/** Graph batches notifications; the fake sends at most this many in one POST. */
const MAX_BATCH = 50
const VALIDATION_FAILED = 'Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.'

/** Outlook errors come wrapped this way from the subscription service. */
const extensionError = (status: number, operation: string, reason: string) =>
  graphError(status, 'ExtensionError', `Operation: ${operation}; Exception: [Status Code: ${statusName(status)}; Reason: ${reason}]`)

function statusName(status: number): string {
  return status === 404 ? 'NotFound' : status === 403 ? 'Forbidden' : status === 400 ? 'BadRequest' : String(status)
}

const notFound = () => graphError(404, 'ResourceNotFound', 'The object was not found.')
const invalid = (message: string) => graphError(400, 'InvalidRequest', message)

function parseJson(body: unknown): Record<string, unknown> | undefined {
  if (typeof body !== 'string') return (body ?? {}) as Record<string, unknown>
  if (body === '') return {}
  try {
    const parsed = JSON.parse(body) as unknown
    return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

export class FakeSubscriptions {
  readonly notificationDeliveries: NotificationDelivery[] = []
  readonly validationRequests: ValidationRecord[] = []
  readonly lifecycleDeliveries: LifecycleDelivery[] = []
  private readonly byId = new Map<string, FakeSubscription>()
  private transport: NotificationTransport | undefined
  /** Per subscription: notifications waiting to be sent, and the worker sending them. */
  private readonly queues = new Map<string, Record<string, unknown>[]>()
  private readonly workers = new Map<string, Promise<void>>()
  private readonly creators = new Map<string, string>()
  private readonly host: SubscriptionHost

  constructor(host: SubscriptionHost) {
    this.host = host
  }

  setTransport(send: NotificationTransport | undefined): void {
    this.transport = send
  }

  /** Live subscriptions (those past their expiration are dropped first), optionally of one mailbox. */
  list(mailbox?: string): FakeSubscription[] {
    this.purgeExpired()
    const key = mailbox === undefined ? undefined : (this.host.lookupMailbox(mailbox)?.address ?? mailbox.toLowerCase())
    return [...this.byId.values()].filter((subscription) => key === undefined || subscription.mailbox === key).map((subscription) => ({ ...subscription }))
  }

  expire(id: string): void {
    const subscription = this.byId.get(id)
    if (!subscription) throw new Error(`The fake has no subscription ${id}`)
    subscription.expirationDateTime = new Date().toISOString()
    this.purgeExpired()
  }

  /** Waits until every queued change notification has been sent and answered (or timed out). */
  async flush(): Promise<void> {
    while (this.workers.size) await Promise.all([...this.workers.values()])
  }

  /** Sends `body` (JSON unless a string) to `url` through the transport: a forged or replayed notification. */
  async post(url: string, body: unknown): Promise<TransportAnswer> {
    return this.send(url, typeof body === 'string' ? body : JSON.stringify(body), 'application/json; charset=utf-8')
  }

  async lifecycle(id: string, event: LifecycleEvent): Promise<TransportAnswer> {
    this.purgeExpired()
    const subscription = this.byId.get(id)
    if (!subscription) throw new Error(`The fake has no live subscription ${id}`)
    if (!subscription.lifecycleNotificationUrl) {
      throw new Error(`Subscription ${id} has no lifecycleNotificationUrl; Graph sends it no lifecycle notifications`)
    }
    if (event === 'subscriptionRemoved') this.remove(id)
    const body = {
      value: [
        {
          subscriptionId: subscription.id,
          subscriptionExpirationDateTime: subscription.expirationDateTime,
          tenantId: subscription.tenantId,
          clientState: subscription.clientState ?? null,
          lifecycleEvent: event,
          resource: subscription.resource,
        },
      ],
    }
    const at = Date.now()
    const record: LifecycleDelivery = { subscriptionId: id, event, url: subscription.lifecycleNotificationUrl, body, at, status: 0, ms: 0, ok: false }
    this.lifecycleDeliveries.push(record)
    try {
      const answer = await this.send(subscription.lifecycleNotificationUrl, JSON.stringify(body), 'application/json; charset=utf-8')
      Object.assign(record, { status: answer.status, ms: answer.ms, ok: answer.status >= 200 && answer.status < 300 })
      return answer
    } catch (error) {
      Object.assign(record, { status: -1, ms: Date.now() - at, error: (error as Error).message })
      throw error
    }
  }

  // ---- Graph API ----------------------------------------------------------------------------

  /** /v1.0/subscriptions[/{id}[/reauthorize]]; `rest` are the path segments after `subscriptions`. */
  async handle(caller: SubscriptionCaller, method: string, rest: string[], body: unknown): Promise<FakeAnswer | undefined> {
    this.purgeExpired()
    const [id, action, ...beyond] = rest
    if (beyond.length) return undefined
    if (!id) {
      if (method === 'POST') return this.create(caller, body)
      if (method === 'GET') {
        const mine = [...this.byId.values()].filter((subscription) => this.visible(subscription, caller))
        return reply(200, { '@odata.context': `https://${caller.host}/v1.0/$metadata#subscriptions`, value: mine.map((subscription) => this.json(subscription)) })
      }
      return undefined
    }
    const subscription = this.byId.get(id)
    const found = subscription && this.visible(subscription, caller) ? subscription : undefined
    if (action) {
      if (method !== 'POST' || !/^(microsoft\.graph\.)?reauthorize$/i.test(action)) return undefined
      return found ? reply(204) : notFound()
    }
    if (method === 'GET') return found ? reply(200, { '@odata.context': `https://${caller.host}/v1.0/$metadata#subscriptions/$entity`, ...this.json(found) }) : notFound()
    if (method === 'DELETE') {
      if (!found) return notFound()
      this.remove(found.id)
      return reply(204)
    }
    if (method === 'PATCH') return found ? this.update(caller, found, body) : notFound()
    return undefined
  }

  private visible(subscription: FakeSubscription, caller: SubscriptionCaller): boolean {
    return subscription.applicationId === caller.appId && subscription.tenantId === caller.tenantId
  }

  private async create(caller: SubscriptionCaller, raw: unknown): Promise<FakeAnswer> {
    const body = parseJson(raw)
    if (!body) return graphError(400, 'BadRequest', 'Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.')
    for (const name of ['changeType', 'notificationUrl', 'resource', 'expirationDateTime']) {
      if (typeof body[name] !== 'string' || !body[name]) return invalid(`${name} is a required property for subscription creation.`)
    }
    const changeType = body.changeType as string
    const changeTypes = changeType.split(',').map((part) => part.trim())
    const unknownType = changeTypes.find((part) => !CHANGE_TYPES.includes(part as ChangeType))
    if (unknownType !== undefined) return invalid(`Invalid 'changeType' attribute: '${changeType}'.`)
    const notificationUrl = body.notificationUrl as string
    const urlProblem = this.checkUrl(notificationUrl, 'NotificationUrl')
    if (urlProblem) return urlProblem
    const lifecycleNotificationUrl = body.lifecycleNotificationUrl
    if (lifecycleNotificationUrl !== undefined && lifecycleNotificationUrl !== null) {
      if (typeof lifecycleNotificationUrl !== 'string') return invalid('lifecycleNotificationUrl must be a string.')
      const problem = this.checkUrl(lifecycleNotificationUrl, 'LifecycleNotificationUrl')
      if (problem) return problem
    }
    const expiration = this.checkExpiration(body.expirationDateTime, 'Create')
    if ('status' in expiration) return expiration
    const clientState = body.clientState
    if (clientState !== undefined && clientState !== null) {
      if (typeof clientState !== 'string') return invalid('clientState must be a string.')
      if (clientState.length > 128) return invalid('The clientState property value exceeds the maximum length of 128 characters.')
    }
    const resource = body.resource as string
    const target = this.resolveResource(caller, resource)
    if ('status' in target) return target

    // The handshake: Graph creates the subscription only when every URL answers it.
    const failure =
      (await this.validate(notificationUrl)) ??
      (typeof lifecycleNotificationUrl === 'string' ? await this.validate(lifecycleNotificationUrl) : undefined)
    if (failure) return failure

    const subscription: FakeSubscription = {
      id: randomUUID(),
      applicationId: caller.appId,
      creatorId: this.creatorOf(caller.appId),
      tenantId: target.mailbox.tenantId,
      mailbox: target.mailbox.address,
      userId: target.mailbox.id,
      ...(target.folder ? { folderId: target.folder.id } : {}),
      resource,
      changeType,
      changeTypes: changeTypes as ChangeType[],
      notificationUrl,
      ...(typeof lifecycleNotificationUrl === 'string' ? { lifecycleNotificationUrl } : {}),
      ...(typeof clientState === 'string' ? { clientState } : {}),
      expirationDateTime: expiration.iso,
      immutableIds: caller.preferImmutable,
      createdAt: Date.now(),
    }
    this.byId.set(subscription.id, subscription)
    return reply(201, { '@odata.context': `https://${caller.host}/v1.0/$metadata#subscriptions/$entity`, ...this.json(subscription) })
  }

  /** PATCH: a new expirationDateTime (renewal, which also reauthorizes) and/or notificationUrl. */
  private async update(caller: SubscriptionCaller, subscription: FakeSubscription, raw: unknown): Promise<FakeAnswer> {
    const body = parseJson(raw)
    if (!body) return graphError(400, 'BadRequest', 'Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.')
    const hasExpiration = body.expirationDateTime !== undefined && body.expirationDateTime !== null
    const hasUrl = body.notificationUrl !== undefined && body.notificationUrl !== null
    if (!hasExpiration && !hasUrl) return invalid("Subscription must contain either the 'expirationDateTime' or 'notificationUrl' property and its value.")
    const unsupported = Object.keys(body).filter((name) => name !== 'expirationDateTime' && name !== 'notificationUrl' && !name.startsWith('@odata.'))
    if (unsupported.length) return invalid(`The fake can update only expirationDateTime and notificationUrl, not ${unsupported.join(', ')}.`)
    let iso: string | undefined
    if (hasExpiration) {
      const expiration = this.checkExpiration(body.expirationDateTime, 'Update')
      if ('status' in expiration) return expiration
      iso = expiration.iso
    }
    let notificationUrl: string | undefined
    if (hasUrl) {
      if (typeof body.notificationUrl !== 'string') return invalid('notificationUrl must be a string.')
      const problem = this.checkUrl(body.notificationUrl, 'NotificationUrl')
      if (problem) return problem
      notificationUrl = body.notificationUrl
    }
    if (hasUrl || this.host.settings().validateOnRenewal) {
      const failure =
        (await this.validate(notificationUrl ?? subscription.notificationUrl)) ??
        (subscription.lifecycleNotificationUrl ? await this.validate(subscription.lifecycleNotificationUrl) : undefined)
      if (failure) return failure
    }
    // It may have been deleted (or expired) while the validation was under way.
    if (this.byId.get(subscription.id) !== subscription) return notFound()
    if (iso) subscription.expirationDateTime = iso
    if (notificationUrl) subscription.notificationUrl = notificationUrl
    return reply(200, { '@odata.context': `https://${caller.host}/v1.0/$metadata#subscriptions/$entity`, ...this.json(subscription) })
  }

  private checkUrl(value: string, name: 'NotificationUrl' | 'LifecycleNotificationUrl'): FakeAnswer | undefined {
    let url: URL
    try {
      url = new URL(value)
    } catch {
      return invalid(`Invalid ${name === 'NotificationUrl' ? 'notification' : 'lifecycle notification'} url='${value}'.`)
    }
    if (url.protocol !== 'https:') return invalid(`${name} scheme='${url.protocol.replace(/:$/, '')}' is not supported.`)
    return undefined
  }

  private checkExpiration(value: unknown, operation: 'Create' | 'Update'): { iso: string } | FakeAnswer {
    if (typeof value !== 'string' || Number.isNaN(Date.parse(value))) {
      return graphError(400, 'BadRequest', `Cannot convert the literal '${String(value)}' to the expected type 'Edm.DateTimeOffset'.`)
    }
    const at = Date.parse(value)
    const now = Date.now()
    if (at <= now) return extensionError(400, operation, 'Subscription expiration date time must be in the future.')
    const max = this.host.settings().maxExpirationMinutes
    if (at > now + max * 60_000) return graphError(400, 'ExtensionError', `Subscription expiration can only be ${max} minutes in the future.`)
    return { iso: new Date(at).toISOString() }
  }

  /**
   * `users/{address or id}/mailFolders('{id or well-known name}')/messages` (key syntax or a
   * plain segment, any case, with or without a leading slash) or `users/{...}/messages`.
   */
  private resolveResource(caller: SubscriptionCaller, resource: string): { mailbox: FakeMailbox; folder?: FakeFolder } | FakeAnswer {
    if (resource.includes('?')) return invalid(`The fake supports no query options in resource '${resource}'.`)
    const segments = keySegments(resource.replace(/^\/+/, '').split('/').filter(Boolean).map(safeDecode))
    const [root, user, collection, folderId, navigation, ...beyond] = segments
    if (root?.toLowerCase() === 'me') return graphError(400, 'BadRequest', '/me request is only valid with delegated authentication flow.')
    const folderForm = collection?.toLowerCase() === 'mailfolders' && folderId && navigation?.toLowerCase() === 'messages' && !beyond.length
    const mailboxForm = collection?.toLowerCase() === 'messages' && folderId === undefined
    if (root?.toLowerCase() !== 'users' || !user || !(folderForm || mailboxForm)) {
      return invalid(`The fake supports message subscriptions only: users/{id}/mailFolders('{id}')/messages or users/{id}/messages, not '${resource}'.`)
    }
    const mailbox = this.host.lookupMailbox(user)
    if (!mailbox || mailbox.tenantId !== caller.tenantId) return extensionError(404, 'Create', `The requested user '${user}' is invalid.`)
    if (mailbox.allowedApps && !mailbox.allowedApps.has(caller.appId)) {
      return extensionError(403, 'Create', 'Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.')
    }
    if (!canRead(caller.roles)) return extensionError(403, 'Create', 'Access is denied. Check credentials and try again.')
    if (!folderForm) return { mailbox }
    const folder = this.host.findFolder(mailbox, folderId)
    if (!folder) return extensionError(404, 'Create', 'The specified object was not found in the store.')
    return { mailbox, folder }
  }

  /** POSTs `?validationToken=` to `url` and checks the answer; a 400 answer for the API when it fails. */
  private async validate(url: string): Promise<FakeAnswer | undefined> {
    // Graph's tokens read like this (spaces and colons included), so they must be URL-decoded.
    const token = `Validation: Testing client application reachability for subscription Request-Id: ${randomUUID()}`
    const target = `${url}${url.includes('?') ? '&' : '?'}validationToken=${encodeURIComponent(token)}`
    const record: ValidationRecord = { url, token, at: Date.now(), status: 0, ms: 0, ok: false }
    this.validationRequests.push(record)
    const timeoutMs = this.host.settings().validationTimeoutMs
    if (!this.transport) {
      record.reason = 'no notification transport is set (FakeMicrosoft.setNotificationTransport)'
      return graphError(400, 'ValidationError', VALIDATION_FAILED)
    }
    const outcome = await this.timed(this.transport({ url: target, method: 'POST', headers: { 'content-type': 'text/plain; charset=utf-8' }, body: '' }), timeoutMs)
    record.ms = outcome.ms
    if (outcome.kind === 'timeout') {
      record.reason = `no answer within ${timeoutMs} ms`
      return graphError(400, 'ValidationError', 'Subscription validation request timed out.')
    }
    if (outcome.kind === 'error') {
      record.status = -1
      record.reason = `transport failed: ${outcome.error.message}`
      return graphError(400, 'ValidationError', VALIDATION_FAILED)
    }
    const answer = outcome.answer
    record.status = answer.status
    if (answer.status !== 200) record.reason = `status ${answer.status}`
    else if (!/^text\/plain\b/i.test(answer.contentType ?? '')) record.reason = `content type ${answer.contentType ?? '(none)'}, not text/plain`
    else if (answer.body !== token) record.reason = 'the body is not the decoded validation token'
    if (record.reason) return graphError(400, 'ValidationError', VALIDATION_FAILED)
    record.ok = true
    return undefined
  }

  private creatorOf(appId: string): string {
    // The app's service principal: one id per app, like Graph's creatorId for app-only subscriptions.
    let id = this.creators.get(appId)
    if (!id) {
      id = randomUUID()
      this.creators.set(appId, id)
    }
    return id
  }

  private json(subscription: FakeSubscription) {
    return {
      id: subscription.id,
      resource: subscription.resource,
      applicationId: subscription.applicationId,
      changeType: subscription.changeType,
      clientState: subscription.clientState ?? null,
      notificationUrl: subscription.notificationUrl,
      notificationQueryOptions: null,
      lifecycleNotificationUrl: subscription.lifecycleNotificationUrl ?? null,
      expirationDateTime: subscription.expirationDateTime,
      creatorId: subscription.creatorId,
      includeResourceData: false,
      latestSupportedTlsVersion: 'v1_2',
      encryptionCertificate: null,
      encryptionCertificateId: null,
      notificationUrlAppId: null,
    }
  }

  private remove(id: string): void {
    this.byId.delete(id)
    this.queues.delete(id)
  }

  private purgeExpired(): void {
    const now = Date.now()
    for (const subscription of this.byId.values()) {
      if (Date.parse(subscription.expirationDateTime) <= now) this.remove(subscription.id)
    }
  }

  // ---- change notifications -----------------------------------------------------------------

  /** A message was stored in (delivered to, sent into, drafted in) its folder. */
  created(message: FakeStoredMessage): void {
    this.notify(message, message.parentFolderId, 'created', message.restId)
  }

  /** A message moved: `deleted` where it was (under its old REST id), `created` where it is now. */
  moved(message: FakeStoredMessage, fromFolderId: string, fromRestId: string): void {
    this.notify(message, fromFolderId, 'deleted', fromRestId)
    this.notify(message, message.parentFolderId, 'created', message.restId)
  }

  updated(message: FakeStoredMessage): void {
    this.notify(message, message.parentFolderId, 'updated', message.restId)
  }

  deleted(message: FakeStoredMessage): void {
    this.notify(message, message.parentFolderId, 'deleted', message.restId)
  }

  private notify(message: FakeStoredMessage, folderId: string, changeType: ChangeType, restId: string): void {
    if (!this.byId.size) return
    this.purgeExpired()
    for (const subscription of this.byId.values()) {
      if (subscription.mailbox !== message.mailbox || !subscription.changeTypes.includes(changeType)) continue
      // A whole-mailbox subscription (no folder) sees changes in every folder.
      if (subscription.folderId !== undefined && subscription.folderId !== folderId) continue
      const id = subscription.immutableIds ? message.immutableId : restId
      const odataId = `Users/${subscription.userId}/Messages/${id}`
      const resourceData: Record<string, unknown> = { '@odata.type': '#Microsoft.Graph.Message', '@odata.id': odataId }
      if (changeType !== 'deleted') resourceData['@odata.etag'] = this.host.etag(message)
      resourceData.id = id
      this.enqueue(subscription, {
        subscriptionId: subscription.id,
        subscriptionExpirationDateTime: subscription.expirationDateTime,
        changeType,
        resource: odataId,
        resourceData,
        clientState: subscription.clientState ?? null,
        tenantId: subscription.tenantId,
      })
    }
  }

  private enqueue(subscription: FakeSubscription, notification: Record<string, unknown>): void {
    const queue = this.queues.get(subscription.id) ?? []
    queue.push(notification)
    this.queues.set(subscription.id, queue)
    if (this.workers.has(subscription.id)) return
    const worker = this.drain(subscription.id).finally(() => this.workers.delete(subscription.id))
    this.workers.set(subscription.id, worker)
  }

  /** Sends a subscription's queue in order, a batch at a time, never blocking the change that queued it. */
  private async drain(id: string): Promise<void> {
    // Let the caller's change (and any made in the same turn, which then share a batch) finish first.
    await new Promise((resolve) => setImmediate(resolve))
    for (;;) {
      const queue = this.queues.get(id)
      const subscription = this.byId.get(id)
      if (!queue?.length || !subscription || Date.parse(subscription.expirationDateTime) <= Date.now()) {
        this.queues.delete(id)
        return
      }
      const batch = queue.splice(0, MAX_BATCH)
      await this.deliver(subscription, batch)
    }
  }

  private async deliver(subscription: FakeSubscription, value: Record<string, unknown>[]): Promise<void> {
    const body = { value }
    const record: NotificationDelivery = {
      subscriptionId: subscription.id,
      url: subscription.notificationUrl,
      body,
      at: Date.now(),
      status: 0,
      ms: 0,
      ok: false,
      timedOut: false,
    }
    this.notificationDeliveries.push(record)
    if (!this.transport) {
      record.status = -1
      record.error = 'no notification transport is set'
      return
    }
    const timeoutMs = this.host.settings().notificationTimeoutMs
    const pending = this.transport({
      url: subscription.notificationUrl,
      method: 'POST',
      headers: { 'content-type': 'application/json; charset=utf-8' },
      body: JSON.stringify(body),
    })
    const outcome = await this.timed(pending, timeoutMs)
    record.ms = outcome.ms
    if (outcome.kind === 'timeout') {
      record.timedOut = true
      pending.then(
        (answer) => (record.lateStatus = answer.status),
        () => undefined,
      )
      return
    }
    if (outcome.kind === 'error') {
      record.status = -1
      record.error = outcome.error.message
      return
    }
    record.status = outcome.answer.status
    record.ok = outcome.answer.status >= 200 && outcome.answer.status < 300
  }

  // ---- transport ----------------------------------------------------------------------------

  /** One POST through the transport, answered however long it takes (what post and lifecycle use). */
  private async send(url: string, body: string, contentType: string): Promise<TransportAnswer> {
    if (!this.transport) throw new Error('The fake has no notification transport; call setNotificationTransport first')
    const started = Date.now()
    const answer = await this.transport({ url, method: 'POST', headers: { 'content-type': contentType }, body })
    return { ...answer, ms: Date.now() - started }
  }

  private async timed(
    pending: Promise<NotificationAnswer>,
    timeoutMs: number,
  ): Promise<{ kind: 'answer'; answer: NotificationAnswer; ms: number } | { kind: 'error'; error: Error; ms: number } | { kind: 'timeout'; ms: number }> {
    const started = Date.now()
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs)
    })
    try {
      const result = await Promise.race([pending.then((answer) => ({ answer }), (error: unknown) => ({ error })), timeout])
      const ms = Date.now() - started
      if (result === 'timeout') return { kind: 'timeout', ms }
      if ('error' in result) return { kind: 'error', error: result.error instanceof Error ? result.error : new Error(String(result.error)), ms }
      // Graph's client gives up at the timeout; an answer arriving after it does not count.
      if (ms > timeoutMs) return { kind: 'timeout', ms }
      return { kind: 'answer', answer: result.answer, ms }
    } finally {
      clearTimeout(timer)
    }
  }
}
