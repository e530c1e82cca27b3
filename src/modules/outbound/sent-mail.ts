import { and, eq, or, sql, type Placeholder, type SQL } from 'drizzle-orm'
import { outboundMessages, type MessageBounce } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { textArrayLiteral } from '../../database/id-in.ts'
import type { EventLog } from '../events/service.ts'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const internetMessageId = sql<string>`${outboundMessages.graphIds} ->> 'internetMessageId'`

export interface SentMessageRef {
  /** Message-ID without angle brackets. */
  messageId: string
  workItemRef: string
  fromAddress: string
}

export interface BounceReport {
  /** The outbox id from the returned original's x-mailgate-message header. */
  mailgateId: string | null
  /** The returned original's Message-ID, without angle brackets. */
  messageId: string | null
  recipient: string | null
  status: string | null
  diagnostic: string | null
  inboundEmailId: string
}

function bracketed(ids: string[]): string[] {
  return ids.map((id) => `<${id}>`)
}

/**
 * What ingest needs to know about mail Mailgate sent: whether a received mail is its own
 * coming back, which sent mail a reply refers to, and where a bounce belongs. Message-IDs are
 * stored as Graph reports them, with angle brackets.
 */
/** Sent messages with a work item reference among the Message-IDs (a text[] literal with angle brackets). */
function withWorkQuery(executor: Db, messageIds: string | Placeholder) {
  return executor
    .select({ messageId: internetMessageId, workItemRef: outboundMessages.workItemRef, fromAddress: outboundMessages.fromAddress })
    .from(outboundMessages)
    .where(and(sql`${internetMessageId} = any(${messageIds}::text[])`, sql`${outboundMessages.workItemRef} is not null`))
}

/** The references sent mail carried, among these (a text[] literal, lower case). */
function knownRefsQuery(executor: Db, lowerCaseRefs: string | Placeholder) {
  return executor
    .selectDistinct({ ref: outboundMessages.workItemRef })
    .from(outboundMessages)
    .where(sql`lower(${outboundMessages.workItemRef}) = any(${lowerCaseRefs}::text[])`)
}

/** The ids a received mail may name Mailgate's own mail by, as sent mail stores them. */
export interface OwnMailIds {
  /** Outbox ids from `x-mailgate-message` (only well-formed UUIDs). */
  outboxIds: string[]
  /** Message-IDs with angle brackets. */
  messageIds: string[]
}

export function ownMailIds(mailgateIds: string[], messageIds: string[]): OwnMailIds {
  return { outboxIds: mailgateIds.filter((id) => UUID.test(id)), messageIds: bracketed(messageIds) }
}

/** Whether any sent message has one of these outbox ids (a uuid[]) or Message-IDs (a text[]). */
function sentAnyOf(outboxIds: SQL, messageIds: SQL): SQL<boolean> {
  return sql<boolean>`exists (select 1 from ${outboundMessages} where ${outboundMessages.id} = any(${outboxIds}) or ${internetMessageId} = any(${messageIds}))`
}

export class SentMail {
  private readonly db: Db
  private readonly events: EventLog
  private readonly includesAnyPrepared
  private readonly withWorkPrepared
  private readonly knownRefsPrepared

  constructor(db: Db, events: EventLog) {
    this.db = db
    this.events = events
    // One statement prepared once, whatever the number of ids.
    this.includesAnyPrepared = db
      .select({ own: sentAnyOf(sql`${sql.placeholder('ids')}::uuid[]`, sql`${sql.placeholder('messageIds')}::text[]`) })
      .from(sql`(select 1) as one`)
      .prepare('sent_mail_includes_any')
    // Asked of every reply: prepared too (a transaction runs its own).
    this.withWorkPrepared = withWorkQuery(db, sql.placeholder('messageIds')).prepare('sent_mail_with_work')
    this.knownRefsPrepared = knownRefsQuery(db, sql.placeholder('refs')).prepare('sent_mail_known_refs')
  }

  /** Whether any of these outbox ids or Message-IDs is a message Mailgate sent. */
  async includesAny(executor: Db, mailgateIds: string[], messageIds: string[]): Promise<boolean> {
    const ids = ownMailIds(mailgateIds, messageIds)
    if (ids.outboxIds.length === 0 && ids.messageIds.length === 0) return false
    const params = { ids: `{${ids.outboxIds.join(',')}}`, messageIds: textArrayLiteral(ids.messageIds) }
    if (executor === this.db) return (await this.includesAnyPrepared.execute(params))[0]!.own
    const [row] = await executor.select({ own: sentAnyOf(sql`${params.ids}::uuid[]`, sql`${params.messageIds}::text[]`) }).from(sql`(select 1) as one`)
    return row!.own
  }

  /**
   * The same question as a condition for a statement of another module, which gives the ids
   * as SQL (a uuid[] and a text[], as ownMailIds makes them): intake asks it in the statement
   * that stores a received mail, rather than in a read of its own.
   */
  sentAnyOf(outboxIds: SQL, messageIds: SQL): SQL<boolean> {
    return sentAnyOf(outboxIds, messageIds)
  }

  /** Sent messages with a work item reference among these Message-IDs. */
  async withWork(executor: Db, messageIds: string[]): Promise<SentMessageRef[]> {
    if (messageIds.length === 0) return []
    const literal = textArrayLiteral(bracketed(messageIds))
    const rows = executor === this.db ? await this.withWorkPrepared.execute({ messageIds: literal }) : await withWorkQuery(executor, literal)
    return rows.map((row) => ({ messageId: row.messageId.replace(/^<|>$/g, ''), workItemRef: row.workItemRef!, fromAddress: row.fromAddress }))
  }

  /** The references among these that sent mail carried, lower case -> as stored. */
  async knownRefs(executor: Db, lowerCaseRefs: string[]): Promise<Map<string, string>> {
    if (lowerCaseRefs.length === 0) return new Map()
    const literal = textArrayLiteral(lowerCaseRefs)
    const rows = executor === this.db ? await this.knownRefsPrepared.execute({ refs: literal }) : await knownRefsQuery(executor, literal)
    return new Map(rows.map((row) => [row.ref!.toLowerCase(), row.ref!]))
  }

  /**
   * Records a non-delivery report on the message it reports on, found by its outbox id or
   * Message-ID. A report that names no recipient, or one the message was not sent to, is not
   * believed: anyone can write a DSN, and every recipient saw the ids. Returns the message id
   * when recorded.
   */
  async recordBounce(tx: Db, report: BounceReport, now = new Date()): Promise<string | null> {
    const byId = report.mailgateId && UUID.test(report.mailgateId) ? eq(outboundMessages.id, report.mailgateId) : undefined
    const byMessageId = report.messageId ? eq(internetMessageId, `<${report.messageId}>`) : undefined
    if (!byId && !byMessageId) return null
    const [message] = await tx
      .select({
        id: outboundMessages.id,
        status: outboundMessages.status,
        connectorId: outboundMessages.connectorId,
        workItemRef: outboundMessages.workItemRef,
        recipients: sql<string[]>`${outboundMessages.toAddresses} || ${outboundMessages.ccAddresses} || ${outboundMessages.bccAddresses}`,
        bounces: outboundMessages.bounces,
      })
      .from(outboundMessages)
      .where(or(byId, byMessageId))
      .limit(1)
      .for('update')
    if (!message) return null
    if (!report.recipient || !message.recipients.includes(report.recipient)) return null
    if (message.bounces.some((bounce) => bounce.inboundEmailId === report.inboundEmailId)) return message.id
    const bounce: MessageBounce = {
      recipient: report.recipient,
      status: report.status,
      diagnostic: report.diagnostic,
      inboundEmailId: report.inboundEmailId,
      at: now.toISOString(),
    }
    const bounced = message.status === 'sent' || message.status === 'uncertain' || message.status === 'bounced'
    await tx
      .update(outboundMessages)
      .set({ bounces: [...message.bounces, bounce], ...(bounced ? { status: 'bounced' as const } : {}), updatedAt: now })
      .where(eq(outboundMessages.id, message.id))
    await this.events.record(tx, {
      type: 'message.bounced',
      subjectType: 'message',
      subjectId: message.id,
      payload: { messageId: message.id, connectorId: message.connectorId, workItemRef: message.workItemRef, ...bounce },
      occurredAt: now,
    })
    return message.id
  }
}
