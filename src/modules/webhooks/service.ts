import type { Db } from '../../database/index.ts'
import { ConflictError, NotFoundError, ValidationError } from '../../lib/errors.ts'
import { newId } from '../../lib/ids.ts'
import { removeInBatches } from '../../workers/housekeeping.ts'
import { SecretUnreadableError, type SecretBox } from '../../lib/secret-box.ts'
import type { Actor, AuditService } from '../audit/service.ts'
import type { EventLog } from '../events/service.ts'
import { matchEventTypes } from '../events/feed.ts'
import { EventNotKeptError } from './errors.ts'
import type { WebhookHttp } from './http.ts'
import type { AttemptRow, DeliveryRow, EndpointRow, WebhookRepository } from './repository.ts'
import type { CreateWebhookBody, UpdateWebhookBody, WebhookDelivery, WebhookEndpoint, WebhookTestResult } from './schemas.ts'
import { newSigningSecret, signedHeaders } from './signing.ts'

export interface WebhookServiceDeps {
  db: Db
  repository: WebhookRepository
  secretBox: SecretBox
  audit: AuditService
  events: Pick<EventLog, 'record' | 'holdTrimming' | 'removedThrough'>
  http: WebhookHttp
  /** Whether a consumer's own connectors exist (the connector filter). */
  connectors: { exists(executor: Db, id: string): Promise<boolean> }
  /** WEBHOOK_ALLOW_HTTP: plain http URLs accepted (a receiver on the local network, a test). */
  allowHttp: boolean
  clock?: () => Date
}

const secretContext = (id: string, which: 'current' | 'previous') => `webhook:${id}:${which}`
const REPLAY_MAX = 10_000
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** Webhook endpoints: their configuration, secrets, a test ping, deliveries and replays. */
export class WebhookService {
  private readonly deps: WebhookServiceDeps

  constructor(deps: WebhookServiceDeps) {
    this.deps = deps
  }

  private now(): Date {
    return this.deps.clock?.() ?? new Date()
  }

  async create(actor: Actor, input: CreateWebhookBody): Promise<{ endpoint: WebhookEndpoint; secret: string }> {
    const url = this.checkUrl(input.url)
    const eventTypes = this.checkTypes(input.eventTypes)
    if (input.connectorId) await this.checkConnector(input.connectorId)
    const id = newId()
    const secret = newSigningSecret()
    const now = this.now()
    const row = await this.deps.db.transaction(async (tx) => {
      const created = await this.deps.repository.insertEndpoint(tx, {
        id,
        url,
        description: input.description ?? null,
        eventTypes,
        connectorId: input.connectorId ?? null,
        enabled: input.enabled ?? true,
        parallel: input.parallel ?? false,
        secretSealed: this.deps.secretBox.seal(secret, secretContext(id, 'current')),
        createdAt: now,
        updatedAt: now,
      })
      await this.deps.audit.record(tx, actor, { action: 'create', resourceType: 'webhook', resourceId: id, after: snapshot(created) })
      return created
    })
    return { endpoint: present(row), secret }
  }

  async list(): Promise<{ items: WebhookEndpoint[] }> {
    return { items: (await this.deps.repository.listEndpoints(this.deps.db)).map(present) }
  }

  async get(id: string): Promise<WebhookEndpoint> {
    return present(await this.require(this.deps.db, id))
  }

  async update(actor: Actor, id: string, input: UpdateWebhookBody): Promise<WebhookEndpoint> {
    const changes: Partial<EndpointRow> = {}
    if (input.url !== undefined) changes.url = this.checkUrl(input.url)
    if (input.eventTypes !== undefined) changes.eventTypes = this.checkTypes(input.eventTypes)
    if (input.connectorId !== undefined) {
      if (input.connectorId) await this.checkConnector(input.connectorId)
      changes.connectorId = input.connectorId
    }
    if (input.description !== undefined) changes.description = input.description
    if (input.parallel !== undefined) changes.parallel = input.parallel
    if (input.enabled !== undefined) {
      changes.enabled = input.enabled
      // Enabled again: its failures so far are forgiven.
      if (input.enabled) Object.assign(changes, { disabledReason: null, disabledAt: null, failingSince: null })
    }
    const row = await this.deps.db.transaction(async (tx) => {
      const before = await this.require(tx, id, { forUpdate: true })
      const updated = (await this.deps.repository.updateEndpoint(tx, id, { ...changes, updatedAt: this.now() }))!
      await this.deps.audit.record(tx, actor, { action: 'update', resourceType: 'webhook', resourceId: id, before: snapshot(before), after: snapshot(updated) })
      return updated
    })
    return present(row)
  }

  async delete(actor: Actor, id: string): Promise<void> {
    await this.deps.db.transaction(async (tx) => {
      const before = await this.require(tx, id, { forUpdate: true })
      await this.deps.repository.deleteEndpoint(tx, id)
      await this.deps.audit.record(tx, actor, { action: 'delete', resourceType: 'webhook', resourceId: id, before: snapshot(before) })
    })
  }

  /** A new secret, shown once; the previous one signs too for `overlapHours` (default 24). */
  async rotateSecret(actor: Actor, id: string, overlapHours = 24): Promise<{ endpoint: WebhookEndpoint; secret: string }> {
    const secret = newSigningSecret()
    const now = this.now()
    const row = await this.deps.db.transaction(async (tx) => {
      const before = await this.require(tx, id, { forUpdate: true })
      // A secret no configured key opens cannot sign on: it is replaced without an overlap.
      let previous: string | undefined
      try {
        previous = this.deps.secretBox.open(before.secretSealed, secretContext(id, 'current'))
      } catch (error) {
        if (!(error instanceof SecretUnreadableError)) throw error
      }
      const overlap = overlapHours > 0 && previous !== undefined
      const updated = (await this.deps.repository.updateEndpoint(tx, id, {
        secretSealed: this.deps.secretBox.seal(secret, secretContext(id, 'current')),
        previousSecretSealed: overlap ? this.deps.secretBox.seal(previous!, secretContext(id, 'previous')) : null,
        previousSecretUntil: overlap ? new Date(now.getTime() + overlapHours * 3_600_000) : null,
        updatedAt: now,
      }))!
      await this.deps.audit.record(tx, actor, { action: 'rotate_secret', resourceType: 'webhook', resourceId: id, details: { overlapHours } })
      return updated
    })
    return { endpoint: present(row), secret }
  }

  /** The secrets that sign a delivery now: the current one, and the previous during its overlap. */
  signingSecrets(row: EndpointRow, now = this.now()): string[] {
    const secrets = [this.deps.secretBox.open(row.secretSealed, secretContext(row.id, 'current'))]
    if (row.previousSecretSealed && row.previousSecretUntil && row.previousSecretUntil > now) {
      secrets.push(this.deps.secretBox.open(row.previousSecretSealed, secretContext(row.id, 'previous')))
    }
    return secrets
  }

  /** Sends a `ping` event now, signed like any delivery, and reports the answer. */
  async test(id: string): Promise<WebhookTestResult> {
    const row = await this.require(this.deps.db, id)
    const now = this.now()
    const eventId = newId()
    const body = JSON.stringify({ id: eventId, type: 'ping', occurredAt: now.toISOString(), subject: { type: 'webhook', id: row.id }, data: { endpointId: row.id } })
    const result = await this.deps.http.post(row.url, signedHeaders(eventId, new Date(), body, this.signingSecrets(row, now)), body)
    const ok = result.status !== null && result.status >= 200 && result.status < 300
    return { ok, status: result.status, durationMs: result.durationMs, responseBody: result.body, error: result.error }
  }

  async deliveries(id: string, query: { limit: number; cursor?: string }): Promise<{ items: WebhookDelivery[]; nextCursor: string | null }> {
    if (query.cursor !== undefined && !UUID.test(query.cursor)) throw new ValidationError([{ field: 'cursor', message: 'is not a cursor this list gave out: pass a page’s nextCursor as it came' }])
    await this.require(this.deps.db, id)
    const rows = await this.deps.repository.deliveriesOf(this.deps.db, id, query.limit + 1, query.cursor)
    const items = rows.slice(0, query.limit).map(({ delivery, attempts }) => presentDelivery(delivery, attempts))
    return { items, nextCursor: rows.length > query.limit ? items.at(-1)!.id : null }
  }

  /** The delivery's event delivered again, as a new delivery (same webhook-id: the event's). */
  async replayDelivery(actor: Actor, id: string, deliveryId: string): Promise<WebhookDelivery> {
    const row = await this.deps.db.transaction(async (tx) => {
      await this.require(tx, id)
      const delivery = await this.deps.repository.findDelivery(tx, id, deliveryId)
      if (!delivery) throw new NotFoundError('webhook delivery', deliveryId)
      if (delivery.state === 'pending') throw new ConflictError(`Delivery ${deliveryId} has not ended yet (it is pending): it is delivered without a replay.`)
      await this.deps.events.holdTrimming(tx)
      const again = await this.deps.repository.queueAgain(tx, delivery, this.now())
      if (!again) throw new EventNotKeptError(delivery.eventId)
      await this.deps.audit.record(tx, actor, { action: 'replay', resourceType: 'webhook', resourceId: id, details: { deliveryId, eventId: delivery.eventId } })
      return again
    })
    return presentDelivery(row, [])
  }

  /** Every event for the endpoint since a time, queued again (at most 10,000). */
  async replaySince(actor: Actor, id: string, since: string): Promise<{ queued: number }> {
    const from = new Date(since)
    return this.deps.db.transaction(async (tx) => {
      const endpoint = await this.require(tx, id)
      await this.deps.events.holdTrimming(tx)
      const queued = await this.deps.repository.queueSince(tx, endpoint, matchEventTypes(endpoint.eventTypes, 'eventTypes'), from, REPLAY_MAX, this.now())
      await this.deps.audit.record(tx, actor, { action: 'replay', resourceType: 'webhook', resourceId: id, details: { since, queued } })
      return { queued }
    })
  }

  /**
   * Housekeeping: deliveries that ended before `cutoff` go, with their attempts (a batch at a
   * time, at most 20 batches a run); pending ones whose event the feed removed end as failed.
   */
  async removeExpired(cutoff: Date, now: Date): Promise<number> {
    const removedThrough = await this.deps.events.removedThrough(this.deps.db)
    const failed = removedThrough ? await this.deps.repository.failOrphans(this.deps.db, removedThrough, now) : 0
    return failed + (await removeInBatches((batch) => this.deps.repository.removeEndedBefore(this.deps.db, cutoff, batch)))
  }

  /**
   * Disables an endpoint (410 Gone, or failing for 3 days) and records `webhook.disabled`, once.
   * Its undelivered events wait: enabling it again delivers them. `row` is locked by the caller.
   */
  async disableForFailures(tx: Db, row: EndpointRow, reason: string): Promise<void> {
    if (!row.enabled) return
    const now = this.now()
    await this.deps.repository.updateEndpoint(tx, row.id, { enabled: false, disabledReason: reason, disabledAt: now, updatedAt: now })
    // The origin only: a URL's path or query may hold a token, and events go to other consumers too.
    await this.deps.events.record(tx, { type: 'webhook.disabled', subjectType: 'webhook', subjectId: row.id, payload: { endpointId: row.id, url: new URL(row.url).origin, reason }, occurredAt: now })
  }

  /** Seals webhook secrets sealed with an older key with the current one (the start-up re-seal); ids of those no key opens. */
  async resealSecrets(): Promise<{ resealed: number; unreadable: string[] }> {
    const box = this.deps.secretBox
    let resealed = 0
    const unreadable: string[] = []
    for (const row of await this.deps.repository.listEndpoints(this.deps.db)) {
      const changes: Partial<EndpointRow> = {}
      try {
        if (!box.isCurrent(row.secretSealed)) changes.secretSealed = box.seal(box.open(row.secretSealed, secretContext(row.id, 'current')), secretContext(row.id, 'current'))
        if (row.previousSecretSealed && !box.isCurrent(row.previousSecretSealed)) {
          changes.previousSecretSealed = box.seal(box.open(row.previousSecretSealed, secretContext(row.id, 'previous')), secretContext(row.id, 'previous'))
        }
      } catch (error) {
        if (!(error instanceof SecretUnreadableError)) throw error
        unreadable.push(row.id)
        continue
      }
      if (Object.keys(changes).length === 0) continue
      // Compare-and-set: a rotation meanwhile wins.
      if (await this.deps.repository.replaceSecrets(this.deps.db, row, changes)) resealed++
    }
    return { resealed, unreadable }
  }

  private async require(executor: Db, id: string, options: { forUpdate?: boolean } = {}): Promise<EndpointRow> {
    const row = await this.deps.repository.findEndpoint(executor, id, options)
    if (!row) throw new NotFoundError('webhook', id)
    return row
  }

  private checkUrl(input: string): string {
    const refuse = (message: string) => new ValidationError([{ field: 'url', message }])
    let url: URL
    try {
      url = new URL(input)
    } catch {
      throw refuse('must be an absolute URL such as https://example.com/mailgate-events')
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && this.deps.allowHttp)) {
      throw refuse(this.deps.allowHttp ? 'must be an http or https URL' : 'must be an https URL (plain http only when the operator sets WEBHOOK_ALLOW_HTTP=true)')
    }
    if (url.username || url.password) throw refuse('must not hold a user name or password: authenticate deliveries by their signature')
    const literal = this.deps.http.literalRefusal(url)
    if (literal) throw refuse(`names an address webhooks may not reach (${literal}); an operator can allow a network with WEBHOOK_ALLOWED_NETWORKS`)
    url.hash = ''
    return url.toString()
  }

  private checkTypes(patterns: string[]): string[] {
    matchEventTypes(patterns, 'eventTypes')
    return [...new Set(patterns)]
  }

  private async checkConnector(connectorId: string): Promise<void> {
    if (!(await this.deps.connectors.exists(this.deps.db, connectorId))) {
      throw new ValidationError([{ field: 'connectorId', message: `names no connector (${connectorId}): use the id of an existing connector, or leave it out for all` }])
    }
  }
}

function snapshot(row: EndpointRow): Record<string, unknown> {
  return { url: row.url, eventTypes: row.eventTypes, connectorId: row.connectorId, enabled: row.enabled, parallel: row.parallel, description: row.description }
}

export function present(row: EndpointRow): WebhookEndpoint {
  return {
    id: row.id,
    url: row.url,
    description: row.description,
    eventTypes: row.eventTypes,
    connectorId: row.connectorId,
    enabled: row.enabled,
    parallel: row.parallel,
    disabledReason: row.disabledReason,
    disabledAt: row.disabledAt?.toISOString() ?? null,
    failingSince: row.failingSince?.toISOString() ?? null,
    secondSecretUntil: row.previousSecretSealed && row.previousSecretUntil ? row.previousSecretUntil.toISOString() : null,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  }
}

function presentDelivery(row: DeliveryRow, attempts: AttemptRow[]): WebhookDelivery {
  return {
    id: row.id,
    eventId: row.eventId,
    state: row.state,
    attempts: row.attempts,
    nextAttemptAt: row.state === 'pending' ? row.nextAttemptAt.toISOString() : null,
    lastStatus: row.lastStatus,
    lastError: row.lastError,
    deliveredAt: row.deliveredAt?.toISOString() ?? null,
    createdAt: row.createdAt.toISOString(),
    attemptLog: attempts.map((attempt) => ({
      at: attempt.at.toISOString(),
      status: attempt.status,
      durationMs: attempt.durationMs,
      responseHeaders: attempt.responseHeaders,
      responseBody: attempt.responseBody,
      error: attempt.error,
    })),
  }
}
