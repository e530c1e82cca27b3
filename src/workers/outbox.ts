import { and, asc, eq, gt, inArray, isNull, lt, lte, or, sql } from 'drizzle-orm'
import {
  connectors,
  domainEvents,
  emailRoutes,
  idempotencyKeys,
  mailboxSendBudgets,
  outboundAttachments,
  outboundMessages,
  type EventType,
  type MessageError,
  type MessageStatus,
  type SendProgress,
} from '../../db/schema.ts'
import type { Db } from '../database/index.ts'
import { newId } from '../lib/ids.ts'
import type { MessageRow } from '../modules/messages/repository.ts'

export interface ClaimLimits {
  /** Sends in flight per mailbox across all instances. */
  maxInFlight: number
  /** The mailbox's send budget: a token bucket of this size, refilled at this rate. */
  perMinute: number
  leaseMs: number
  /** How many this caller can take on right now. */
  max: number
}

export interface ConnectorClaim {
  messages: MessageRow[]
  /** When nothing was claimed because of the budget or a pause: how long until it is worth asking again. */
  retryInMs?: number
}

export interface AttachmentToSend {
  position: number
  name: string
  contentType: string
  isInline: boolean
  contentId: string | null
  size: number
  blobId: string
}

/** A connector's messages being sent right now: `sending` under a lease that has not run out. */
function sendingNow(connectorId: string, now: Date) {
  return and(
    eq(outboundMessages.connectorId, connectorId),
    eq(outboundMessages.status, 'sending'),
    // Spelled as a timestamptz literal: postgres.js cannot type a Date inside a subquery's raw SQL.
    gt(outboundMessages.leaseExpiresAt, sql`${now.toISOString()}::timestamptz`),
  )
}

/**
 * The outbox as dispatchers see it. Every operation is safe with any number of dispatchers
 * on one database: claims skip rows another transaction holds, a claim is a lease that a
 * dead dispatcher gives back when it runs out, and every later write is fenced by the lease
 * owner, so a dispatcher that lost its lease cannot overwrite the one that took over.
 */
export class Outbox {
  /** Connectors with due messages that may be sent now (connector and sending address enabled). */
  async dueConnectors(executor: Db, now = new Date()): Promise<string[]> {
    const rows = await executor
      .selectDistinct({ connectorId: outboundMessages.connectorId })
      .from(outboundMessages)
      .innerJoin(connectors, and(eq(connectors.id, outboundMessages.connectorId), eq(connectors.enabled, true)))
      .innerJoin(emailRoutes, and(eq(emailRoutes.id, outboundMessages.routeId), eq(emailRoutes.enabled, true)))
      .where(and(eq(outboundMessages.status, 'queued'), lte(outboundMessages.nextAttemptAt, now)))
    return rows.map((row) => row.connectorId)
  }

  /**
   * Claims the connector's due messages as far as its limits allow: at most `maxInFlight`
   * sending at once across all instances, one budget token per message, nothing while the
   * mailbox is paused. The budget row lock serialises claimers of one mailbox; a claimer
   * that finds it held moves on rather than waiting.
   */
  async claimForConnector(executor: Db, connectorId: string, owner: string, limits: ClaimLimits, now = new Date()): Promise<ConnectorClaim> {
    return executor.transaction(async (tx) => {
      const lockBudget = () =>
        tx
          .select({
            tokens: mailboxSendBudgets.tokens,
            refilledAt: mailboxSendBudgets.refilledAt,
            pausedUntil: mailboxSendBudgets.pausedUntil,
            sending: sql<number>`(select count(*)::int from ${outboundMessages} where ${sendingNow(connectorId, now)})`,
          })
          .from(mailboxSendBudgets)
          .where(eq(mailboxSendBudgets.connectorId, connectorId))
          .for('update', { of: mailboxSendBudgets, skipLocked: true })
      let [budget] = await lockBudget()
      if (!budget) {
        const created = await tx.insert(mailboxSendBudgets).values({ connectorId, tokens: limits.perMinute, refilledAt: now }).onConflictDoNothing().returning()
        // Another claimer holds the row (or just created it): leave this mailbox to it for now.
        if (created.length === 0) return { messages: [], retryInMs: 50 }
        ;[budget] = await lockBudget()
      }
      if (!budget) return { messages: [], retryInMs: 50 }
      if (budget.pausedUntil && budget.pausedUntil > now) return { messages: [], retryInMs: budget.pausedUntil.getTime() - now.getTime() }

      const elapsedMs = Math.max(0, now.getTime() - budget.refilledAt.getTime())
      const tokens = Math.min(limits.perMinute, budget.tokens + (elapsedMs * limits.perMinute) / 60_000)
      const wanted = Math.min(limits.max, limits.maxInFlight - budget.sending, Math.floor(tokens))
      let claimed: MessageRow[] = []
      if (wanted > 0) {
        const due = tx
          .select({ id: outboundMessages.id })
          .from(outboundMessages)
          .innerJoin(emailRoutes, and(eq(emailRoutes.id, outboundMessages.routeId), eq(emailRoutes.enabled, true)))
          .where(and(eq(outboundMessages.connectorId, connectorId), eq(outboundMessages.status, 'queued'), lte(outboundMessages.nextAttemptAt, now)))
          .orderBy(asc(outboundMessages.nextAttemptAt), asc(outboundMessages.id))
          .limit(wanted)
          .for('update', { of: outboundMessages, skipLocked: true })
        claimed = await tx
          .update(outboundMessages)
          .set({ status: 'sending', leaseOwner: owner, leaseExpiresAt: new Date(now.getTime() + limits.leaseMs), updatedAt: now })
          .where(inArray(outboundMessages.id, due))
          .returning()
        // RETURNING keeps no order: oldest first, as they were chosen.
        claimed.sort((a, b) => a.nextAttemptAt.getTime() - b.nextAttemptAt.getTime() || (a.id < b.id ? -1 : 1))
      }
      const left = tokens - claimed.length
      await tx.update(mailboxSendBudgets).set({ tokens: left, refilledAt: now }).where(eq(mailboxSendBudgets.connectorId, connectorId))
      if (claimed.length > 0 || left >= 1) return { messages: claimed }
      return { messages: claimed, retryInMs: Math.ceil(((1 - left) * 60_000) / limits.perMinute) }
    })
  }

  /**
   * Messages whose dispatcher stopped mid-send (lease expired while `sending`), claimed for
   * recovery by `owner`. Whether each was already submitted is for the caller to find out:
   * they are never simply queued again.
   */
  async claimAbandoned(executor: Db, owner: string, limit: number, leaseMs: number, now = new Date()): Promise<MessageRow[]> {
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
        .where(inArray(outboundMessages.id, stale.map((row) => row.id)))
        .returning()
    })
  }

  /** Sends in flight for a connector across all instances (leases not yet expired). */
  async inFlight(executor: Db, connectorId: string, now = new Date()): Promise<number> {
    const [row] = await executor
      .select({ count: sql<number>`count(*)::int` })
      .from(outboundMessages)
      .where(sendingNow(connectorId, now))
    return row?.count ?? 0
  }

  /** Holds every instance off the mailbox until `until` (Graph said Retry-After). */
  async pauseMailbox(executor: Db, connectorId: string, until: Date): Promise<void> {
    await executor
      .update(mailboxSendBudgets)
      .set({ pausedUntil: until })
      .where(
        and(
          eq(mailboxSendBudgets.connectorId, connectorId),
          or(isNull(mailboxSendBudgets.pausedUntil), lt(mailboxSendBudgets.pausedUntil, until)),
        ),
      )
  }

  /**
   * Extends the lease and merges `progress` into the stored Graph ids, only while `owner`
   * still holds the message. False means another dispatcher took it over: stop touching it.
   */
  async recordProgress(executor: Db, id: string, owner: string, progress: SendProgress, leaseMs: number, now = new Date()): Promise<boolean> {
    const rows = await executor
      .update(outboundMessages)
      .set({
        graphIds: sql`${outboundMessages.graphIds} || ${JSON.stringify(progress)}::jsonb`,
        leaseExpiresAt: new Date(now.getTime() + leaseMs),
        updatedAt: now,
      })
      .where(this.heldBy(id, owner))
      .returning({ id: outboundMessages.id })
    return rows.length > 0
  }

  /** Like recordProgress, but replaces the stored progress (a discarded draft starts over). */
  async replaceProgress(executor: Db, id: string, owner: string, progress: SendProgress, leaseMs: number, now = new Date()): Promise<boolean> {
    const rows = await executor
      .update(outboundMessages)
      .set({ graphIds: progress, leaseExpiresAt: new Date(now.getTime() + leaseMs), updatedAt: now })
      .where(this.heldBy(id, owner))
      .returning({ id: outboundMessages.id })
    return rows.length > 0
  }

  async progressOf(executor: Db, id: string): Promise<SendProgress | undefined> {
    const [row] = await executor.select({ graphIds: outboundMessages.graphIds }).from(outboundMessages).where(eq(outboundMessages.id, id))
    return row?.graphIds
  }

  /** Renews the lease of a message still being worked on. */
  async renewLease(executor: Db, id: string, owner: string, leaseMs: number, now = new Date()): Promise<boolean> {
    return this.recordProgress(executor, id, owner, {}, leaseMs, now)
  }

  /** Back to the queue, to be tried at `at`; `countsAsAttempt` is false for throttling. */
  async requeue(
    executor: Db,
    id: string,
    owner: string,
    options: { at: Date; countsAsAttempt: boolean; lastError?: MessageError; graphIds?: SendProgress },
    now = new Date(),
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
      .where(this.heldBy(id, owner))
      .returning({ id: outboundMessages.id })
    return rows.length > 0
  }

  /**
   * Ends the message as sent, failed or uncertain and records the matching event in the same
   * transaction. False when the lease was lost meanwhile (nothing written).
   */
  async finish(
    executor: Db,
    id: string,
    owner: string,
    outcome: { status: Extract<MessageStatus, 'sent' | 'failed' | 'uncertain'>; lastError?: MessageError; progress?: SendProgress; countsAsAttempt: boolean },
    now = new Date(),
  ): Promise<MessageRow | undefined> {
    return executor.transaction(async (tx) => {
      const [row] = await tx
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
        .where(this.heldBy(id, owner))
        .returning()
      if (!row) return undefined
      const type: EventType = `message.${outcome.status}`
      await tx.insert(domainEvents).values({
        id: newId(),
        type,
        subjectType: 'message',
        subjectId: row.id,
        payload: {
          messageId: row.id,
          connectorId: row.connectorId,
          from: row.fromAddress,
          workItemRef: row.workItemRef,
          attempts: row.attempts,
          ...(row.lastError && outcome.status !== 'sent' ? { error: row.lastError } : {}),
          ...(row.graphIds.internetMessageId ? { internetMessageId: row.graphIds.internetMessageId } : {}),
        },
        occurredAt: now,
      })
      return row
    })
  }

  async attachmentsOf(executor: Db, messageId: string): Promise<AttachmentToSend[]> {
    return executor
      .select({
        position: outboundAttachments.position,
        name: outboundAttachments.name,
        contentType: outboundAttachments.contentType,
        isInline: outboundAttachments.isInline,
        contentId: outboundAttachments.contentId,
        size: outboundAttachments.size,
        blobId: outboundAttachments.blobId,
      })
      .from(outboundAttachments)
      .where(eq(outboundAttachments.messageId, messageId))
      .orderBy(asc(outboundAttachments.position))
  }

  async removeExpiredIdempotencyKeys(executor: Db, before: Date): Promise<number> {
    const removed = await executor.delete(idempotencyKeys).where(lt(idempotencyKeys.createdAt, before)).returning({ key: idempotencyKeys.key })
    return removed.length
  }

  private heldBy(id: string, owner: string) {
    return and(eq(outboundMessages.id, id), eq(outboundMessages.status, 'sending'), eq(outboundMessages.leaseOwner, owner))
  }
}
