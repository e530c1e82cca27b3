import { and, desc, eq, gt, gte, isNotNull, lt, lte, or, sql, type Placeholder, type SQL } from 'drizzle-orm'
import { getTableColumns } from 'drizzle-orm'
import { inboundDedupeKeys, type AfterAction, inboundEmails, workItemLinks, type AutomatedKind, type InboundOutcome } from '../../../db/schema.ts'
import { idIn, textArrayLiteral } from '../../database/id-in.ts'
import type { Db } from '../../database/index.ts'
import type { DedupeKey, DedupeWay } from './dedupe.ts'

export type InboundEmailRow = typeof inboundEmails.$inferSelect
export type NewInboundEmail = typeof inboundEmails.$inferInsert
export type WorkItemLinkRow = typeof workItemLinks.$inferSelect
export type NewWorkItemLink = typeof workItemLinks.$inferInsert


export interface InboundListFilter {
  connectorId?: string
  outcome?: InboundOutcome
  automatedKind?: AutomatedKind
  since?: Date
  until?: Date
  workItemRef?: string
  from?: string
  beforeId?: string
  limit: number
}

/** Emails among these Message-IDs (a text[] literal) whose work item is known, with the address the work came in through. */
function knownMessagesQuery(executor: Db, messageIds: string | Placeholder) {
  return executor
    .selectDistinct({ messageId: inboundEmails.internetMessageId, workItemRef: workItemLinks.workItemRef, address: workItemLinks.address })
    .from(inboundEmails)
    .innerJoin(workItemLinks, eq(workItemLinks.emailId, inboundEmails.id))
    .where(and(sql`${inboundEmails.internetMessageId} = any(${messageIds}::text[])`, isNotNull(workItemLinks.workItemRef)))
}

/** The first link of each of these references (a text[] literal, lower case): the request the work was created by. */
function knownRefsQuery(executor: Db, lowerCaseRefs: string | Placeholder) {
  const lowerRef = sql<string>`lower(${workItemLinks.workItemRef})`
  return executor
    .selectDistinctOn([lowerRef], { ref: workItemLinks.workItemRef, address: workItemLinks.address })
    .from(workItemLinks)
    .where(sql`${lowerRef} = any(${lowerCaseRefs}::text[])`)
    .orderBy(lowerRef, workItemLinks.id)
}

export class InboundRepository {
  private readonly db: Db
  // Threading asks these of every reply: prepared once for `db` (a transaction runs its own).
  private readonly knownMessagesPrepared
  private readonly knownRefsPrepared

  constructor(db: Db) {
    this.db = db
    this.knownMessagesPrepared = knownMessagesQuery(db, sql.placeholder('messageIds')).prepare('inbound_known_messages')
    this.knownRefsPrepared = knownRefsQuery(db, sql.placeholder('refs')).prepare('inbound_known_refs')
  }

  async insert(tx: Db, row: NewInboundEmail): Promise<void> {
    await tx.insert(inboundEmails).values(row)
  }

  /** Claims the keys for an email; returns the kinds some other email already holds. */
  async claimKeys(tx: Db, scope: string, keys: DedupeKey[], emailId: string): Promise<DedupeWay[]> {
    const claimed = await tx
      .insert(inboundDedupeKeys)
      .values(keys.map((key) => ({ scope, kind: key.kind, hash: key.hash, emailId })))
      .onConflictDoNothing()
      .returning({ kind: inboundDedupeKeys.kind })
    const taken = new Set(claimed.map((row) => row.kind))
    return keys.filter((key) => !taken.has(key.kind)).map((key) => key.kind)
  }

  /** The original email (never a duplicate itself) holding each of these keys. */
  async keyOwners(executor: Db, scope: string, keys: DedupeKey[]): Promise<{ kind: DedupeWay; originalId: string }[]> {
    if (keys.length === 0) return []
    const rows = await executor
      .select({ kind: inboundDedupeKeys.kind, originalId: sql<string>`coalesce(${inboundEmails.duplicateOf}, ${inboundEmails.id})` })
      .from(inboundDedupeKeys)
      .innerJoin(inboundEmails, eq(inboundEmails.id, inboundDedupeKeys.emailId))
      .where(and(eq(inboundDedupeKeys.scope, scope), or(...keys.map((key) => and(eq(inboundDedupeKeys.kind, key.kind), eq(inboundDedupeKeys.hash, key.hash))))))
    return rows
  }

  /** The email that holds this exact source key. */
  async findBySourceKey(executor: Db, scope: string, hash: string): Promise<InboundEmailRow | undefined> {
    const [row] = await executor
      .select(getTableColumns(inboundEmails))
      .from(inboundDedupeKeys)
      .innerJoin(inboundEmails, eq(inboundEmails.id, inboundDedupeKeys.emailId))
      .where(and(eq(inboundDedupeKeys.scope, scope), eq(inboundDedupeKeys.kind, 'source'), eq(inboundDedupeKeys.hash, hash)))
    return row
  }

  /** The row of a mailbox item the connector's sync took in. */
  async findSynced(executor: Db, connectorId: string, graphMessageId: string): Promise<InboundEmailRow | undefined> {
    const [row] = await executor
      .select()
      .from(inboundEmails)
      .where(and(eq(inboundEmails.connectorId, connectorId), eq(inboundEmails.graphMessageId, graphMessageId)))
    return row
  }

  async find(executor: Db, id: string): Promise<InboundEmailRow | undefined> {
    const [row] = await executor.select().from(inboundEmails).where(eq(inboundEmails.id, id))
    return row
  }

  /** Locks an email for processing; `receivedOnly` skips one that is done or being processed elsewhere. */
  async lock(tx: Db, id: string, options: { receivedOnly: boolean }): Promise<InboundEmailRow | undefined> {
    const query = tx
      .select()
      .from(inboundEmails)
      .where(options.receivedOnly ? and(eq(inboundEmails.id, id), eq(inboundEmails.outcome, 'received')) : eq(inboundEmails.id, id))
    const [row] = await (options.receivedOnly ? query.for('update', { skipLocked: true }) : query.for('update'))
    return row
  }

  async update(tx: Db, id: string, changes: Partial<NewInboundEmail>): Promise<void> {
    await tx.update(inboundEmails).set(changes).where(eq(inboundEmails.id, id))
  }

  /** Writes a processing outcome; with `onlyIfReceived`, only while the email is still `received`. Whether it wrote. */
  async finish(tx: Db, id: string, changes: Partial<NewInboundEmail>, options: { onlyIfReceived: boolean }): Promise<boolean> {
    const where = options.onlyIfReceived ? and(eq(inboundEmails.id, id), eq(inboundEmails.outcome, 'received')) : eq(inboundEmails.id, id)
    const rows = await tx.update(inboundEmails).set(changes).where(where).returning({ id: inboundEmails.id })
    return rows.length > 0
  }

  /** Emails stored but not processed since before `olderThan`, oldest first. */
  async unfinished(executor: Db, olderThan: Date, limit: number): Promise<string[]> {
    const rows = await executor
      .select({ id: inboundEmails.id })
      .from(inboundEmails)
      .where(and(eq(inboundEmails.outcome, 'received'), lt(inboundEmails.receivedAt, olderThan)))
      .orderBy(inboundEmails.receivedAt)
      .limit(limit)
    return rows.map((row) => row.id)
  }

  async countAttempt(executor: Db, id: string): Promise<number> {
    const [row] = await executor
      .update(inboundEmails)
      .set({ processingAttempts: sql`${inboundEmails.processingAttempts} + 1` })
      .where(and(eq(inboundEmails.id, id), eq(inboundEmails.outcome, 'received')))
      .returning({ attempts: inboundEmails.processingAttempts })
    return row?.attempts ?? 0
  }

  /** Inserts links; a request for a route the email already made is left as it was. Returns those inserted. */
  async insertLinks(tx: Db, links: NewWorkItemLink[]): Promise<WorkItemLinkRow[]> {
    if (links.length === 0) return []
    return tx.insert(workItemLinks).values(links).onConflictDoNothing().returning()
  }

  async linksOf(executor: Db, emailIds: string[]): Promise<WorkItemLinkRow[]> {
    if (emailIds.length === 0) return []
    return executor.select().from(workItemLinks).where(idIn(workItemLinks.emailId, emailIds)).orderBy(workItemLinks.id)
  }

  async confirmLink(tx: Db, linkId: string, workItemRef: string, now: Date): Promise<void> {
    await tx.update(workItemLinks).set({ workItemRef, confirmedAt: now }).where(eq(workItemLinks.id, linkId))
  }

  /** Received mail of known work among these Message-IDs, with the address the work came in through. */
  async knownMessages(executor: Db, messageIds: string[]): Promise<{ messageId: string; workItemRef: string; address: string }[]> {
    if (messageIds.length === 0) return []
    const literal = textArrayLiteral(messageIds)
    const rows = executor === this.db ? await this.knownMessagesPrepared.execute({ messageIds: literal }) : await knownMessagesQuery(executor, literal)
    return rows.map((row) => ({ messageId: row.messageId!, workItemRef: row.workItemRef!, address: row.address }))
  }

  /** Confirmed references among these (lower case) -> as stored, with the address of the work's first request. */
  async knownRefs(executor: Db, lowerCaseRefs: string[]): Promise<Map<string, { ref: string; address: string }>> {
    if (lowerCaseRefs.length === 0) return new Map()
    const literal = textArrayLiteral(lowerCaseRefs)
    const rows = executor === this.db ? await this.knownRefsPrepared.execute({ refs: literal }) : await knownRefsQuery(executor, literal)
    return new Map(rows.map((row) => [row.ref!.toLowerCase(), { ref: row.ref!, address: row.address }]))
  }

  /** Which of these Graph message ids the connector has taken in already. */
  async knownGraphMessages(executor: Db, connectorId: string, graphMessageIds: string[]): Promise<Set<string>> {
    if (graphMessageIds.length === 0) return new Set()
    const rows = await executor
      .select({ id: inboundEmails.graphMessageId })
      .from(inboundEmails)
      .where(and(eq(inboundEmails.connectorId, connectorId), sql`${inboundEmails.graphMessageId} = any(${textArrayLiteral(graphMessageIds)}::text[])`))
    return new Set(rows.map((row) => row.id!))
  }

  /** Synced mail whose after-processing action is still to do, its outcome committed: oldest first. */
  async pendingAfterActions(executor: Db, connectorId: string, limit: number) {
    return executor
      .select({ id: inboundEmails.id, graphMessageId: inboundEmails.graphMessageId, afterAction: inboundEmails.afterAction })
      .from(inboundEmails)
      .where(and(eq(inboundEmails.connectorId, connectorId), sql`${inboundEmails.afterAction} ->> 'state' = 'pending'`, sql`${inboundEmails.outcome} <> 'received'`))
      .orderBy(inboundEmails.id)
      .limit(limit)
  }

  /** Replaces the action's state only if it is still `expected` (compare-and-set); whether it did. */
  async replaceAfterAction(executor: Db, id: string, expected: AfterAction, next: AfterAction): Promise<boolean> {
    const rows = await executor
      .update(inboundEmails)
      .set({ afterAction: next })
      .where(and(eq(inboundEmails.id, id), sql`${inboundEmails.afterAction} = ${JSON.stringify(expected)}::jsonb`))
      .returning({ id: inboundEmails.id })
    return rows.length === 1
  }

  async list(executor: Db, filter: InboundListFilter): Promise<InboundEmailRow[]> {
    const conditions: SQL[] = []
    if (filter.connectorId) conditions.push(eq(inboundEmails.connectorId, filter.connectorId))
    if (filter.outcome) conditions.push(eq(inboundEmails.outcome, filter.outcome))
    if (filter.automatedKind) conditions.push(sql`${inboundEmails.automated} ->> 'kind' = ${filter.automatedKind}`)
    if (filter.since) conditions.push(gte(inboundEmails.receivedAt, filter.since))
    if (filter.until) conditions.push(lte(inboundEmails.receivedAt, filter.until))
    if (filter.from) conditions.push(eq(inboundEmails.fromAddress, filter.from.toLowerCase()))
    if (filter.workItemRef) {
      conditions.push(sql`exists (select 1 from ${workItemLinks} where ${workItemLinks.emailId} = ${inboundEmails.id} and ${workItemLinks.workItemRef} = ${filter.workItemRef})`)
    }
    if (filter.beforeId) conditions.push(lt(inboundEmails.id, filter.beforeId))
    return executor
      .select(getTableColumns(inboundEmails))
      .from(inboundEmails)
      .where(and(...conditions))
      .orderBy(desc(inboundEmails.id))
      .limit(filter.limit + 1)
  }

  /** Unhandled emails of a connector received in a range, in id order after `afterId`. */
  async unhandledIn(executor: Db, range: { connectorId: string; since: Date; until: Date; afterId?: string }, limit: number): Promise<string[]> {
    const rows = await executor
      .select({ id: inboundEmails.id })
      .from(inboundEmails)
      .where(
        and(
          eq(inboundEmails.connectorId, range.connectorId),
          eq(inboundEmails.outcome, 'unhandled'),
          gte(inboundEmails.receivedAt, range.since),
          lte(inboundEmails.receivedAt, range.until),
          range.afterId ? gt(inboundEmails.id, range.afterId) : undefined,
        ),
      )
      .orderBy(inboundEmails.id)
      .limit(limit)
    return rows.map((row) => row.id)
  }

}
