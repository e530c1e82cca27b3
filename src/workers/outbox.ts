import { and, asc, eq, gt, inArray, lte, sql } from 'drizzle-orm'
import { mailboxSendBudgets, outboundMessages } from '../../db/schema.ts'
import type { Db } from '../database/index.ts'
import type { MessageRow } from '../modules/messages/repository.ts'

/**
 * The outbox as the dispatcher sees it. Every operation is safe with any number of
 * dispatchers on one database: claims skip rows another transaction holds, and a claim is
 * a lease, so a dispatcher that dies gives its messages back when the lease runs out.
 */
export class Outbox {
  /** Moves up to `limit` due messages to `sending` under a lease held by `owner`. */
  async claimDue(executor: Db, owner: string, limit: number, leaseMs: number, now = new Date()): Promise<MessageRow[]> {
    return executor.transaction(async (tx) => {
      const due = await tx
        .select({ id: outboundMessages.id })
        .from(outboundMessages)
        .where(and(eq(outboundMessages.status, 'queued'), lte(outboundMessages.nextAttemptAt, now)))
        .orderBy(asc(outboundMessages.nextAttemptAt), asc(outboundMessages.id))
        .limit(limit)
        .for('update', { skipLocked: true })
      if (due.length === 0) return []
      return tx
        .update(outboundMessages)
        .set({ status: 'sending', leaseOwner: owner, leaseExpiresAt: new Date(now.getTime() + leaseMs), updatedAt: now })
        .where(inArray(outboundMessages.id, due.map((row) => row.id)))
        .returning()
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

  /**
   * Takes one send from the connector's budget: a token bucket holding up to
   * `perMinute` sends that refills at `perMinute` a minute. The row lock makes the budget
   * hold across instances. Returns 0 when granted, else the milliseconds until a token.
   */
  async takeSendToken(executor: Db, connectorId: string, perMinute: number, now = new Date()): Promise<number> {
    return executor.transaction(async (tx) => {
      await tx
        .insert(mailboxSendBudgets)
        .values({ connectorId, tokens: perMinute, refilledAt: now })
        .onConflictDoNothing()
      const [budget] = await tx
        .select()
        .from(mailboxSendBudgets)
        .where(eq(mailboxSendBudgets.connectorId, connectorId))
        .for('update')
      const elapsedMs = Math.max(0, now.getTime() - budget!.refilledAt.getTime())
      const tokens = Math.min(perMinute, budget!.tokens + (elapsedMs * perMinute) / 60_000)
      if (tokens >= 1) {
        await tx
          .update(mailboxSendBudgets)
          .set({ tokens: tokens - 1, refilledAt: now })
          .where(eq(mailboxSendBudgets.connectorId, connectorId))
        return 0
      }
      await tx.update(mailboxSendBudgets).set({ tokens, refilledAt: now }).where(eq(mailboxSendBudgets.connectorId, connectorId))
      return Math.ceil(((1 - tokens) * 60_000) / perMinute)
    })
  }

  /** Sends in flight for a connector across all instances (leases not yet expired). */
  async inFlight(executor: Db, connectorId: string, now = new Date()): Promise<number> {
    const [row] = await executor
      .select({ count: sql<number>`count(*)::int` })
      .from(outboundMessages)
      .where(
        and(
          eq(outboundMessages.connectorId, connectorId),
          eq(outboundMessages.status, 'sending'),
          gt(outboundMessages.leaseExpiresAt, now),
        ),
      )
    return row?.count ?? 0
  }
}
