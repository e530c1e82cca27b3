import { and, asc, desc, eq, getTableColumns, gt, inArray, lt, lte, sql, type Placeholder, type SQL } from 'drizzle-orm'
import { toSnakeCase } from 'drizzle-orm/casing'
import type { TypedQueryBuilder } from 'drizzle-orm/query-builders/query-builder'
import { connectors, emailRoutes, idempotencyKeys, outboundMessages, type MessageError, type MessageStatus, type SendProgress } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { heldByAny, RELEASED } from '../../workers/liveness.ts'

export type MessageRow = typeof outboundMessages.$inferSelect
export type NewMessage = typeof outboundMessages.$inferInsert

/** A message claimed for sending, with the mailbox (its connector's) that sends it. */
export type ClaimedMessage = MessageRow & { mailbox: string; integrationId: string }

/** The claimed row and its mailbox, as UPDATE ... FROM connectors RETURNING gives them. */
const claimedColumns = { ...getTableColumns(outboundMessages), mailbox: connectors.primaryAddress, integrationId: connectors.integrationId }

/** A connector's messages being sent right now: `sending` under a lease that has not run out. */
export function sendingNow(connectorId: string, now: Date): SQL {
  return and(
    eq(outboundMessages.connectorId, connectorId),
    eq(outboundMessages.status, 'sending'),
    // Spelled as a timestamptz literal: postgres.js cannot type a Date inside a subquery's raw SQL.
    gt(outboundMessages.leaseExpiresAt, sql`${now.toISOString()}::timestamptz`),
  )!
}

/**
 * Outgoing messages: what the API stores and shows, and what dispatchers claim and settle. Every write a dispatcher makes after its claim is fenced by
 * its lease (`heldBy`), so one that lost its lease cannot overwrite the one that took over.
 */
/**
 * The columns a submit sets; the others take their defaults. The times come from the
 * application's clock, the one dispatchers compare them with: PostgreSQL's now() has
 * microseconds, and a message inserted within the millisecond a dispatcher reads its clock
 * would not yet be due to it.
 */
const QUEUED_MESSAGE_FIELDS = [
  'id',
  'status',
  'createdByKeyId',
  'connectorId',
  'routeId',
  'fromAddress',
  'toAddresses',
  'ccAddresses',
  'bccAddresses',
  'replyTo',
  'subject',
  'bodyType',
  'body',
  'headers',
  'importance',
  'workItemRef',
  'totalBytes',
  'attachmentCount',
  'createdAt',
  'updatedAt',
  'nextAttemptAt',
] as const satisfies readonly (keyof NewMessage)[]
export type QueuedMessage = Required<Pick<NewMessage, (typeof QUEUED_MESSAGE_FIELDS)[number]>>

/** The Idempotency-Key a submit claims, with the answer it records. */
export interface SubmitIdempotency {
  key: string
  requestHash: string
  responseBody: Record<string, unknown>
  freshAfter: Date
}

/** A queued message whose sender (connector and route) the statement itself finds. */
export type QueuedMessageFromSender = Omit<QueuedMessage, 'connectorId' | 'routeId'>
const FIELDS_FROM_INPUT = QUEUED_MESSAGE_FIELDS.filter((field) => field !== 'connectorId' && field !== 'routeId')

/**
 * The sending address as the email-routes module finds it: at most one row, selecting
 * routeId, routeEnabled, connectorId, connectorEnabled and integrationId.
 */
export type SenderQuery = TypedQueryBuilder<{
  routeId: SQL.Aliased<string>
  routeEnabled: SQL.Aliased<boolean>
  connectorId: SQL.Aliased<string>
  connectorEnabled: SQL.Aliased<boolean>
  integrationId: SQL.Aliased<string>
}>

export class MessageRepository {
  /**
   * Submit in one statement, prepared once for `db`: find the sender, and insert the queued
   * message only if its route and connector are both enabled, taking its connector and route
   * from what was found. The row that comes back always holds the sender as found (none:
   * nobody sends as that address), and the message when it was stored.
   *
   * With `idempotent`, the statement also claims the Idempotency-Key, recording the answer it
   * gives, and inserts the message only if the claim was made: a new key, or one whose answer
   * is older than `freshAfter`. If another request holds the key, PostgreSQL makes this one
   * wait for it to commit; `claimed` false with an allowed sender then means a replay.
   */
  prepareSubmit(db: Db, senderQuery: (address: Placeholder) => SenderQuery, options: { idempotent: boolean }) {
    const sender = db.$with('sender').as(senderQuery(sql.placeholder('fromAddress')))
    const allowed = sql`${sender.routeEnabled} and ${sender.connectorEnabled}`
    const claim = db.$with('claim', { claimed: sql<boolean>`claimed` }).as(
      sql`insert into ${idempotencyKeys} (api_key_id, key, request_hash, response_status, response_body)
        select ${sql.placeholder('createdByKeyId')}::uuid, ${sql.placeholder('idempotencyKey')}::text, ${sql.placeholder('requestHash')}::text,
          202, ${sql.placeholder('responseBody')}::jsonb
        from ${sender} where ${allowed}
        on conflict (api_key_id, key) do update
          set request_hash = excluded.request_hash, response_status = excluded.response_status,
            response_body = excluded.response_body, created_at = now()
          where ${idempotencyKeys}.created_at < ${sql.placeholder('freshAfter')}::timestamptz
        returning true as claimed`,
    )
    const column = (field: keyof NewMessage) => outboundMessages[field]
    const names = sql.join(
      [...FIELDS_FROM_INPUT, 'connectorId', 'routeId'].map((field) => sql.identifier(toSnakeCase(field))),
      sql`, `,
    )
    // Parameters in a select list have no type of their own: each takes its column's.
    const values = sql.join(
      FIELDS_FROM_INPUT.map((field) => sql`${sql.placeholder(field)}::${sql.raw(column(field).getSQLType())}`),
      sql`, `,
    )
    const inserted = db
      .$with('inserted', {
        messageId: sql<string>`id`.as('message_id'),
        createdAt: sql<Date>`created_at`.mapWith(outboundMessages.createdAt).as('message_created_at'),
      })
      .as(
        sql`insert into ${outboundMessages} (${names}) select ${values}, ${sender.connectorId}, ${sender.routeId}
          from ${options.idempotent ? sql`${sender}, ${claim}` : sender} where ${allowed}
          returning id as message_id, created_at as message_created_at`,
      )
    const fields = {
      routeId: sender.routeId,
      routeEnabled: sender.routeEnabled,
      connectorId: sender.connectorId,
      connectorEnabled: sender.connectorEnabled,
      integrationId: sender.integrationId,
      messageId: inserted.messageId,
      createdAt: inserted.createdAt,
    }
    const query = (options.idempotent ? db.with(sender, claim, inserted) : db.with(sender, inserted))
      .select(fields)
      .from(sql`(select 1) as one`)
      .leftJoin(sender, sql`true`)
      .leftJoin(inserted, sql`true`)
      .prepare(options.idempotent ? 'submit_message_idempotent' : 'submit_message')
    return async (message: QueuedMessageFromSender, idempotency?: SubmitIdempotency) => {
      const params: Record<string, unknown> = Object.fromEntries(
        FIELDS_FROM_INPUT.map((field) => {
          const value = message[field]
          return [field, value === null || value === undefined ? null : column(field).mapToDriverValue(value)]
        }),
      )
      if (idempotency) {
        params.idempotencyKey = idempotency.key
        params.requestHash = idempotency.requestHash
        params.responseBody = JSON.stringify(idempotency.responseBody)
        params.freshAfter = idempotency.freshAfter.toISOString()
      }
      const [row] = await query.execute(params)
      return row!
    }
  }

  async insert(executor: Db, message: NewMessage): Promise<Pick<MessageRow, 'id' | 'status' | 'createdAt'>> {
    const [row] = await executor
      .insert(outboundMessages)
      .values(message)
      .returning({ id: outboundMessages.id, status: outboundMessages.status, createdAt: outboundMessages.createdAt })
    return row!
  }

  async findById(executor: Db, id: string, options: { forUpdate?: boolean } = {}): Promise<MessageRow | undefined> {
    const query = executor.select().from(outboundMessages).where(eq(outboundMessages.id, id)).limit(1)
    const [row] = options.forUpdate ? await query.for('update') : await query
    return row
  }

  async list(executor: Db, filter: { status?: string; connectorId?: string; workItemRef?: string; beforeId?: string; limit: number }) {
    const conditions: SQL[] = []
    if (filter.status) conditions.push(eq(outboundMessages.status, filter.status as MessageRow['status']))
    if (filter.connectorId) conditions.push(eq(outboundMessages.connectorId, filter.connectorId))
    if (filter.workItemRef) conditions.push(eq(outboundMessages.workItemRef, filter.workItemRef))
    if (filter.beforeId) conditions.push(lt(outboundMessages.id, filter.beforeId))
    return executor
      .select()
      .from(outboundMessages)
      .where(and(...conditions))
      .orderBy(desc(outboundMessages.id))
      .limit(filter.limit + 1)
  }

  async update(executor: Db, id: string, changes: Partial<NewMessage>): Promise<MessageRow> {
    const [row] = await executor.update(outboundMessages).set(changes).where(eq(outboundMessages.id, id)).returning()
    return row!
  }

  /** Connectors with due messages that may be sent now (connector and sending address enabled). */
  async dueConnectors(executor: Db, now: Date): Promise<string[]> {
    const rows = await executor
      .selectDistinct({ connectorId: outboundMessages.connectorId })
      .from(outboundMessages)
      .innerJoin(connectors, and(eq(connectors.id, outboundMessages.connectorId), eq(connectors.enabled, true)))
      .innerJoin(emailRoutes, and(eq(emailRoutes.id, outboundMessages.routeId), eq(emailRoutes.enabled, true)))
      .where(and(eq(outboundMessages.status, 'queued'), lte(outboundMessages.nextAttemptAt, now)))
    return rows.map((row) => row.connectorId)
  }

  /**
   * Claims up to `limit` of the connector's due messages (sending address enabled), oldest
   * first, skipping rows another transaction holds. Call inside the claim's transaction.
   */
  async claimDue(tx: Db, connectorId: string, owner: string, limit: number, leaseMs: number, now: Date): Promise<ClaimedMessage[]> {
    const due = tx
      .select({ id: outboundMessages.id })
      .from(outboundMessages)
      .innerJoin(emailRoutes, and(eq(emailRoutes.id, outboundMessages.routeId), eq(emailRoutes.enabled, true)))
      .where(and(eq(outboundMessages.connectorId, connectorId), eq(outboundMessages.status, 'queued'), lte(outboundMessages.nextAttemptAt, now)))
      .orderBy(asc(outboundMessages.nextAttemptAt), asc(outboundMessages.id))
      .limit(limit)
      .for('update', { of: outboundMessages, skipLocked: true })
    const claimed = await tx
      .update(outboundMessages)
      .set({ status: 'sending', leaseOwner: owner, leaseExpiresAt: new Date(now.getTime() + leaseMs), updatedAt: now })
      .from(connectors)
      .where(and(inArray(outboundMessages.id, due), eq(connectors.id, outboundMessages.connectorId)))
      .returning(claimedColumns)
    // RETURNING keeps no order: oldest first, as they were chosen.
    return claimed.sort((a, b) => a.nextAttemptAt.getTime() - b.nextAttemptAt.getTime() || (a.id < b.id ? -1 : 1))
  }

  /** Sends that dead instances held (see Liveness): their leases end now, so recovery takes them over. */
  async releaseLeasesOf(tx: Db, deadInstances: string[]): Promise<number> {
    const freed = await tx
      .update(outboundMessages)
      .set({ leaseExpiresAt: RELEASED })
      .where(and(eq(outboundMessages.status, 'sending'), heldByAny(outboundMessages.leaseOwner, deadInstances)))
      .returning({ id: outboundMessages.id })
    return freed.length
  }

  /**
   * Messages whose dispatcher stopped mid-send (lease expired while `sending`), claimed for
   * recovery by `owner`. Whether each was already submitted is for the caller to find out:
   * they are never simply queued again.
   */
  async claimAbandoned(executor: Db, owner: string, limit: number, leaseMs: number, now: Date): Promise<ClaimedMessage[]> {
    return executor.transaction(async (tx) => {
      const stale = await tx
        .select({ id: outboundMessages.id })
        .from(outboundMessages)
        .where(and(eq(outboundMessages.status, 'sending'), lte(outboundMessages.leaseExpiresAt, now)))
        .orderBy(asc(outboundMessages.leaseExpiresAt))
        .limit(limit)
        .for('update', { skipLocked: true })
      if (stale.length === 0) return []
      return tx
        .update(outboundMessages)
        .set({ leaseOwner: owner, leaseExpiresAt: new Date(now.getTime() + leaseMs), updatedAt: now })
        .from(connectors)
        .where(and(inArray(outboundMessages.id, stale.map((row) => row.id)), eq(connectors.id, outboundMessages.connectorId)))
        .returning(claimedColumns)
    })
  }

  /** Sends in flight for a connector across all instances (leases not yet expired). */
  async inFlight(executor: Db, connectorId: string, now: Date): Promise<number> {
    const [row] = await executor.select({ count: sql<number>`count(*)::int` }).from(outboundMessages).where(sendingNow(connectorId, now))
    return row?.count ?? 0
  }

  /**
   * Extends the lease and merges `progress` into the stored Graph ids (or replaces them), only
   * while `owner` still holds the message. False: another dispatcher took it over.
   */
  async recordProgress(
    executor: Db,
    id: string,
    owner: string,
    progress: SendProgress,
    options: { leaseMs: number; now: Date; replace?: boolean },
  ): Promise<boolean> {
    const rows = await executor
      .update(outboundMessages)
      .set({
        graphIds: options.replace ? progress : sql`${outboundMessages.graphIds} || ${JSON.stringify(progress)}::jsonb`,
        leaseExpiresAt: new Date(options.now.getTime() + options.leaseMs),
        updatedAt: options.now,
      })
      .where(heldBy(id, owner))
      .returning({ id: outboundMessages.id })
    return rows.length > 0
  }

  async progressOf(executor: Db, id: string): Promise<SendProgress | undefined> {
    const [row] = await executor.select({ graphIds: outboundMessages.graphIds }).from(outboundMessages).where(eq(outboundMessages.id, id))
    return row?.graphIds
  }

  /** Back to the queue, to be tried at `at`; `countsAsAttempt` is false for throttling. */
  async requeue(
    executor: Db,
    id: string,
    owner: string,
    options: { at: Date; countsAsAttempt: boolean; lastError?: MessageError; graphIds?: SendProgress },
    now: Date,
  ): Promise<boolean> {
    const rows = await executor
      .update(outboundMessages)
      .set({
        status: 'queued',
        nextAttemptAt: options.at,
        attempts: options.countsAsAttempt ? sql`${outboundMessages.attempts} + 1` : outboundMessages.attempts,
        ...(options.lastError ? { lastError: options.lastError } : {}),
        ...(options.graphIds ? { graphIds: options.graphIds } : {}),
        leaseOwner: null,
        leaseExpiresAt: null,
        updatedAt: now,
      })
      .where(heldBy(id, owner))
      .returning({ id: outboundMessages.id })
    return rows.length > 0
  }

  /** Ends the message as sent, failed or uncertain; undefined when the lease was lost (nothing written). */
  async finish(
    executor: Db,
    id: string,
    owner: string,
    outcome: { status: Extract<MessageStatus, 'sent' | 'failed' | 'uncertain'>; lastError?: MessageError; progress?: SendProgress; countsAsAttempt: boolean },
    now: Date,
  ): Promise<MessageRow | undefined> {
    const [row] = await executor
      .update(outboundMessages)
      .set({
        status: outcome.status,
        attempts: outcome.countsAsAttempt ? sql`${outboundMessages.attempts} + 1` : outboundMessages.attempts,
        ...(outcome.lastError ? { lastError: outcome.lastError } : {}),
        ...(outcome.progress ? { graphIds: sql`${outboundMessages.graphIds} || ${JSON.stringify(outcome.progress)}::jsonb` } : {}),
        ...(outcome.status === 'sent' ? { sentAt: now } : {}),
        leaseOwner: null,
        leaseExpiresAt: null,
        updatedAt: now,
      })
      .where(heldBy(id, owner))
      .returning()
    return row
  }
}

function heldBy(id: string, owner: string) {
  return and(eq(outboundMessages.id, id), eq(outboundMessages.status, 'sending'), eq(outboundMessages.leaseOwner, owner))
}
