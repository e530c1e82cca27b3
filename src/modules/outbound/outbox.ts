import type { EventType, MessageError, MessageStatus, SendProgress } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { EventLog } from '../events/service.ts'
import { OutboundAttachmentRepository, type AttachmentToSend } from './attachment-repository.ts'
import { MessageRepository, type ClaimedMessage, type MessageRow } from './message-repository.ts'
import { SendBudgetRepository } from './send-budget-repository.ts'

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
  messages: ClaimedMessage[]
  /** When nothing was claimed because of the budget or a pause: how long until it is worth asking again. */
  retryInMs?: number
}

export interface OutboxDeps {
  messages: MessageRepository
  attachments: OutboundAttachmentRepository
  budgets: SendBudgetRepository
  events: EventLog
}

/**
 * The outbox as dispatchers see it. Every operation is safe with any number of dispatchers
 * on one database: claims skip rows another transaction holds, a claim is a lease that a
 * dead dispatcher gives back when it runs out, and every later write is fenced by the lease
 * owner, so a dispatcher that lost its lease cannot overwrite the one that took over.
 */
export class Outbox {
  private readonly deps: OutboxDeps

  constructor(deps: Partial<OutboxDeps> = {}) {
    this.deps = {
      messages: deps.messages ?? new MessageRepository(),
      attachments: deps.attachments ?? new OutboundAttachmentRepository(),
      budgets: deps.budgets ?? new SendBudgetRepository(),
      events: deps.events ?? new EventLog(),
    }
  }

  /** Connectors with due messages that may be sent now (connector and sending address enabled). */
  async dueConnectors(executor: Db, now = new Date()): Promise<string[]> {
    return this.deps.messages.dueConnectors(executor, now)
  }

  /**
   * Claims the connector's due messages as far as its limits allow: at most `maxInFlight`
   * sending at once across all instances, one budget token per message, nothing while the
   * mailbox is paused. The budget row lock serialises claimers of one mailbox; a claimer
   * that finds it held moves on rather than waiting.
   */
  async claimForConnector(executor: Db, connectorId: string, owner: string, limits: ClaimLimits, now = new Date()): Promise<ConnectorClaim> {
    const { messages, budgets } = this.deps
    return executor.transaction(async (tx) => {
      let budget = await budgets.lock(tx, connectorId, now)
      if (!budget) {
        // Another claimer holds the row (or just created it): leave this mailbox to it for now.
        if (!(await budgets.create(tx, connectorId, limits.perMinute, now))) return { messages: [], retryInMs: 50 }
        budget = await budgets.lock(tx, connectorId, now)
      }
      if (!budget) return { messages: [], retryInMs: 50 }
      if (budget.pausedUntil && budget.pausedUntil > now) return { messages: [], retryInMs: budget.pausedUntil.getTime() - now.getTime() }

      const elapsedMs = Math.max(0, now.getTime() - budget.refilledAt.getTime())
      const tokens = Math.min(limits.perMinute, budget.tokens + (elapsedMs * limits.perMinute) / 60_000)
      const wanted = Math.min(limits.max, limits.maxInFlight - budget.sending, Math.floor(tokens))
      const claimed = wanted > 0 ? await messages.claimDue(tx, connectorId, owner, wanted, limits.leaseMs, now) : []
      const left = tokens - claimed.length
      await budgets.spend(tx, connectorId, left, now)
      if (claimed.length > 0 || left >= 1) return { messages: claimed }
      return { messages: claimed, retryInMs: Math.ceil(((1 - left) * 60_000) / limits.perMinute) }
    })
  }

  /** Messages whose dispatcher stopped mid-send, claimed for recovery by `owner` (never simply queued again). */
  async claimAbandoned(executor: Db, owner: string, limit: number, leaseMs: number, now = new Date()): Promise<ClaimedMessage[]> {
    return this.deps.messages.claimAbandoned(executor, owner, limit, leaseMs, now)
  }

  /** Sends in flight for a connector across all instances (leases not yet expired). */
  async inFlight(executor: Db, connectorId: string, now = new Date()): Promise<number> {
    return this.deps.messages.inFlight(executor, connectorId, now)
  }

  /** Holds every instance off the mailbox until `until` (Graph said Retry-After). */
  async pauseMailbox(executor: Db, connectorId: string, until: Date): Promise<void> {
    await this.deps.budgets.pause(executor, connectorId, until)
  }

  /**
   * Extends the lease and merges `progress` into the stored Graph ids, only while `owner`
   * still holds the message. False means another dispatcher took it over: stop touching it.
   */
  async recordProgress(executor: Db, id: string, owner: string, progress: SendProgress, leaseMs: number, now = new Date()): Promise<boolean> {
    return this.deps.messages.recordProgress(executor, id, owner, progress, { leaseMs, now })
  }

  /** Like recordProgress, but replaces the stored progress (a discarded draft starts over). */
  async replaceProgress(executor: Db, id: string, owner: string, progress: SendProgress, leaseMs: number, now = new Date()): Promise<boolean> {
    return this.deps.messages.recordProgress(executor, id, owner, progress, { leaseMs, now, replace: true })
  }

  async progressOf(executor: Db, id: string): Promise<SendProgress | undefined> {
    return this.deps.messages.progressOf(executor, id)
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
    return this.deps.messages.requeue(executor, id, owner, options, now)
  }

  /**
   * Ends the message as sent, failed or uncertain and records the matching event in the same
   * transaction. Undefined when the lease was lost meanwhile (nothing written).
   */
  async finish(
    executor: Db,
    id: string,
    owner: string,
    outcome: { status: Extract<MessageStatus, 'sent' | 'failed' | 'uncertain'>; lastError?: MessageError; progress?: SendProgress; countsAsAttempt: boolean },
    now = new Date(),
  ): Promise<MessageRow | undefined> {
    return executor.transaction(async (tx) => {
      const row = await this.deps.messages.finish(tx, id, owner, outcome, now)
      if (!row) return undefined
      const type: EventType = `message.${outcome.status}`
      await this.deps.events.record(tx, {
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
    return this.deps.attachments.toSend(executor, messageId)
  }
}
