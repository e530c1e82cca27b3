import { and, eq, isNull, lt, or, sql } from 'drizzle-orm'
import { mailboxSendBudgets, outboundMessages } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { sendingNow } from './message-repository.ts'

/** A mailbox's token bucket, as locked by one claimer, with its sends in flight across all instances. */
export interface LockedBudget {
  tokens: number
  refilledAt: Date
  pausedUntil: Date | null
  sending: number
}

/**
 * The per-mailbox send budget every instance shares: a token bucket and a pause (Graph said
 * Retry-After). Its row lock serialises the claimers of one mailbox.
 */
export class SendBudgetRepository {
  /** Locks the budget row, or undefined when another claimer holds it (it is skipped, not awaited). */
  async lock(tx: Db, connectorId: string, now: Date): Promise<LockedBudget | undefined> {
    const [budget] = await tx
      .select({
        tokens: mailboxSendBudgets.tokens,
        refilledAt: mailboxSendBudgets.refilledAt,
        pausedUntil: mailboxSendBudgets.pausedUntil,
        sending: sql<number>`(select count(*)::int from ${outboundMessages} where ${sendingNow(connectorId, now)})`,
      })
      .from(mailboxSendBudgets)
      .where(eq(mailboxSendBudgets.connectorId, connectorId))
      .for('update', { of: mailboxSendBudgets, skipLocked: true })
    return budget
  }

  /** Creates a full budget; false when it already exists (another claimer just made it). */
  async create(tx: Db, connectorId: string, tokens: number, now: Date): Promise<boolean> {
    const created = await tx.insert(mailboxSendBudgets).values({ connectorId, tokens, refilledAt: now }).onConflictDoNothing().returning()
    return created.length > 0
  }

  async spend(tx: Db, connectorId: string, tokensLeft: number, now: Date): Promise<void> {
    await tx.update(mailboxSendBudgets).set({ tokens: tokensLeft, refilledAt: now }).where(eq(mailboxSendBudgets.connectorId, connectorId))
  }

  /** Holds every instance off the mailbox until `until`. */
  async pause(executor: Db, connectorId: string, until: Date): Promise<void> {
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
}
