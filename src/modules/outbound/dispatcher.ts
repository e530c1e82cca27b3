import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { MessageError, SendProgress } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import type { MailboxError } from '../../graph/errors.ts'
import { GRAPH_LIMITS } from '../../graph/limits.ts'
import type { FileAttachment, MailboxClient } from '../../graph/mailbox-client.ts'
import type { BackgroundLoop, Checkpoint, LoopJob, TaskPool } from '../../workers/runner.ts'
import { whileRenewing } from '../../workers/runner.ts'
import type { AttachmentStore } from '../attachments/store.ts'
import type { Mailboxes } from '../integrations/mailbox-access.ts'
import type { AttachmentToSend } from './attachment-repository.ts'
import type { ClaimedMessage, MessageRow } from './message-repository.ts'
import type { Outbox } from './outbox.ts'
import { errorRecord, isPermanent, LeaseLost, outgoingMail, SendFailure, splitForDraft, toSendError } from './send-policy.ts'

/** Points where a dispatcher may stop dead; `onStep` lets tests stop it exactly there. */
export type DispatchStep = 'claimed' | 'draft-returned' | 'draft-created' | 'uploaded' | 'send-requested' | 'sent' | 'recorded'

export interface DispatcherSettings {
  /** Messages a minute per mailbox, across all instances (Exchange Online allows about 30). */
  perMinute: number
  /** Graph requests in flight per mailbox, across all instances (Graph allows 4). */
  maxInFlightPerMailbox: number
  /** Attempts before a transiently failing message is failed. */
  maxAttempts: number
  /** First retry delay; doubles with every attempt, with jitter, up to maxBackoffMs. */
  backoffMs: number
  maxBackoffMs: number
  /** A claim lasts this long unless renewed; a dead dispatcher's messages come back after it. */
  leaseMs: number
  /** After an ambiguous send, how long to let Exchange settle before checking the draft. */
  settleMs: number
  /** Sends one instance works on at once, over all mailboxes. */
  maxConcurrentSends: number
  /** How often to look for work when nothing woke the dispatcher. */
  pollMs: number
  /** Mailboxes claimed from at once (each claim is a short transaction of its own). */
  claimConcurrency: number
}

export const DEFAULT_DISPATCHER_SETTINGS: DispatcherSettings = {
  perMinute: GRAPH_LIMITS.messagesPerMinute,
  maxInFlightPerMailbox: GRAPH_LIMITS.concurrentRequestsPerMailbox,
  maxAttempts: 8,
  backoffMs: 15_000,
  maxBackoffMs: 30 * 60_000,
  leaseMs: 120_000,
  settleMs: 30_000,
  maxConcurrentSends: 64,
  pollMs: 1_000,
  claimConcurrency: 4,
}

/** Where mailbox failures and successes are reported (connectors: automatic disable). */
export interface MailboxHealth {
  recordMailboxFailure(connectorId: string, error: MailboxError): Promise<unknown>
  recordMailboxSuccess(connectorId: string): Promise<void>
}

export interface DispatcherDeps {
  db: Db
  outbox: Outbox
  mailboxes: Pick<Mailboxes, 'open'>
  health: MailboxHealth
  attachments: Pick<AttachmentStore, 'read' | 'pieces'>
  log: FastifyBaseLogger
  settings?: Partial<DispatcherSettings>
  /** Identifies this dispatcher's leases; unique per process by default. */
  owner?: string
  clock?: () => Date
  onStep?: Checkpoint<DispatchStep>
}

/** The way into the sending mailbox for one message. */
interface SendAccess {
  client: MailboxClient
  /** The connector's mailbox, which sends; `from` may be one of its aliases (Send As). */
  mailbox: string
  canUseDrafts: boolean
}

/**
 * Sends queued messages through Microsoft Graph. Runs in every instance; the outbox's leases
 * and per-mailbox budget make any number of them cooperate. The rule it never breaks: once a
 * send request may have reached Graph, the message is not sent again until Graph confirmed
 * it was not (draft path), or a person decided (Mail.Send-only path: `uncertain`).
 */
export class Dispatcher implements LoopJob {
  readonly owner: string
  /** Messages this process is sending now. */
  private readonly running = new Set<string>()
  private readonly deps: DispatcherDeps
  private readonly settings: DispatcherSettings
  private readonly loop: BackgroundLoop
  /** Connectors not worth asking before this time (budget empty or mailbox paused). */
  private readonly quietUntil = new Map<string, number>()
  private due: string[] = []
  private scannedAt = 0
  /** Connectors whose failure count this instance reset recently, so each send need not. */
  private readonly healthySince = new Map<string, number>()

  /** `loopFor` makes the loop that runs it (the workers plugin's, with its metrics). */
  constructor(deps: DispatcherDeps, loopFor: (job: LoopJob, settings: DispatcherSettings) => BackgroundLoop) {
    this.deps = deps
    this.settings = { ...DEFAULT_DISPATCHER_SETTINGS, ...deps.settings }
    this.owner = deps.owner ?? `dispatcher-${randomUUID()}`
    this.loop = loopFor(this, this.settings)
  }

  start(): void {
    this.loop.start()
  }

  /** Stops claiming and waits for sends in progress; whatever outlives `graceMs` is recovered by lease later. */
  async stop(graceMs = 10_000): Promise<void> {
    await this.loop.stop(graceMs)
  }

  /** Starts a round now (a dead instance's messages were freed). */
  wake(): void {
    this.loop.wake()
  }

  /** One round: recover abandoned messages, claim what the limits allow, and wait for those sends. */
  async runOnce(): Promise<number> {
    return this.loop.runOnce()
  }

  private now(): Date {
    return this.deps.clock?.() ?? new Date()
  }

  /**
   * Completions wake the loop many times a second; the due-mailbox and abandoned-message
   * scans run at most this often, and in between only mailboxes known to have work are asked.
   */
  private scanIntervalMs(): number {
    return Math.max(100, this.settings.pollMs / 4)
  }

  async round(pool: TaskPool, { thorough }: { thorough: boolean }): Promise<{ started: number; nextInMs: number }> {
    const { db } = this.deps
    let started = 0
    const now = this.now()
    if (thorough || now.getTime() - this.scannedAt >= this.scanIntervalMs()) {
      if (pool.capacity > 0) {
        const abandoned = await this.deps.outbox.claimAbandoned(db, this.owner, pool.capacity, this.settings.leaseMs, now)
        for (const message of abandoned) this.launch(pool, message)
        started += abandoned.length
      }
      this.due = await this.deps.outbox.dueConnectors(db, now)
      this.scannedAt = now.getTime()
    }
    // Mailboxes whose tokens come due together (all of them after a quiet spell) are claimed
    // several at a time, so the last of them does not wait for every claim before it.
    const candidates = this.due.filter(
      (connectorId) => (this.quietUntil.get(connectorId) ?? 0) <= now.getTime() && pool.running(connectorId) < this.settings.maxInFlightPerMailbox,
    )
    for (let next = 0; next < candidates.length && pool.capacity > 0; next += this.settings.claimConcurrency) {
      // The instance's free capacity is shared out among the batch, so no claim can overrun it.
      let unreserved = pool.capacity
      const slice = candidates.slice(next, next + this.settings.claimConcurrency)
      const batch = slice
        .map((connectorId, index) => {
          const share = Math.max(1, Math.floor(unreserved / (slice.length - index)))
          const max = Math.min(unreserved, share, this.settings.maxInFlightPerMailbox - pool.running(connectorId))
          unreserved -= Math.max(0, max)
          return { connectorId, max }
        })
        .filter(({ max }) => max > 0)
      const claims = await Promise.allSettled(
        batch.map(({ connectorId, max }) =>
          this.deps.outbox.claimForConnector(
            db,
            connectorId,
            this.owner,
            { maxInFlight: this.settings.maxInFlightPerMailbox, perMinute: this.settings.perMinute, leaseMs: this.settings.leaseMs, max },
            now,
          ),
        ),
      )
      let failure: unknown
      for (const [index, settled] of claims.entries()) {
        const { connectorId } = batch[index]!
        if (settled.status === 'rejected') {
          failure ??= settled.reason
          continue
        }
        const claim = settled.value
        if (claim.retryInMs) this.quietUntil.set(connectorId, now.getTime() + claim.retryInMs)
        else this.quietUntil.delete(connectorId)
        if (claim.messages.length === 0 && !claim.retryInMs && pool.running(connectorId) === 0) {
          this.due = this.due.filter((id) => id !== connectorId) // nothing due there until the next scan
        }
        for (const message of claim.messages) this.launch(pool, message)
        started += claim.messages.length
      }
      // What the other claims took is launched first; the failed one is retried next round.
      if (failure !== undefined) throw failure
    }
    return { started, nextInMs: this.nextWakeInMs() }
  }

  /** Until the next poll, or sooner when a quiet mailbox's next budget token comes due. */
  private nextWakeInMs(): number {
    const now = this.now().getTime()
    let wait = this.settings.pollMs
    for (const [connectorId, until] of this.quietUntil) {
      if (until <= now) this.quietUntil.delete(connectorId)
      else wait = Math.min(wait, until - now)
    }
    return wait
  }

  private launch(pool: TaskPool, message: ClaimedMessage): void {
    // Our own lease, freed while we still work on it (taken for dead after a stall) and
    // claimed back by this very process: the task already running keeps it; a second one
    // under the same owner would pass every fence and could send a second draft.
    if (this.running.has(message.id)) return
    this.running.add(message.id)
    pool.launch(message.connectorId, () =>
      whileRenewing(
        () => this.deps.outbox.renewLease(this.deps.db, message.id, this.owner, this.settings.leaseMs, this.now()),
        Math.max(1_000, this.settings.leaseMs / 3),
        () => this.process(message),
      ).finally(() => this.running.delete(message.id)),
    )
  }

  private async step(step: DispatchStep, messageId: string): Promise<void> {
    await this.deps.onStep?.(step, messageId)
  }

  private async process(message: ClaimedMessage): Promise<void> {
    try {
      await this.step('claimed', message.id)
      const access = await this.accessFor(message)
      if (access.canUseDrafts) await this.sendThroughDraft(message, access)
      else await this.sendDirectly(message, access)
    } catch (error) {
      try {
        if (error instanceof LeaseLost) throw error
        await this.settleFailure(message, error instanceof SendFailure ? error : new SendFailure(toSendError(error), false))
      } catch (settleError) {
        if (!(settleError instanceof LeaseLost)) throw settleError
        this.deps.log.warn({ messageId: message.id }, 'dispatcher: another dispatcher took this message over; leaving it')
      }
    }
  }

  /** Mail.Send only: one sendMail request. Ambiguous outcomes become `uncertain`, never a re-send. */
  private async sendDirectly(message: ClaimedMessage, { client, mailbox }: SendAccess): Promise<void> {
    if (message.graphIds.sendRequestedAt) {
      await this.finish(message, 'uncertain', {
        code: 'SEND_OUTCOME_UNKNOWN',
        message: 'A send request for this message was made but its outcome never came back, and with Mail.Send only Mailgate cannot look into the mailbox.',
        hint: "Check the mailbox's Sent Items. If the message is not there, retry it (POST /v1/messages/{id}/retry); granting Mail.ReadWrite lets Mailgate check by itself.",
      })
      return
    }
    const attachments = await this.loadSmallAttachments(await this.attachmentsOf(message))
    try {
      await client.sendMail(mailbox, { ...outgoingMail(message), attachments }, { beforeRequest: () => this.recordSendRequest(message, {}) })
    } catch (error) {
      throw new SendFailure(toSendError(error), true)
    }
    await this.step('sent', message.id)
    await this.finish(message, 'sent')
    await this.step('recorded', message.id)
  }

  /**
   * With Mail.ReadWrite: draft (immutable id, stored before anything else) -> attachments ->
   * send. A message that was already in flight is first checked in the mailbox.
   */
  private async sendThroughDraft(message: ClaimedMessage, access: SendAccess): Promise<void> {
    const { client, mailbox } = access
    let progress: SendProgress = { ...message.graphIds }
    if (progress.draftId) {
      const found = await client.findMessage(mailbox, progress.draftId)
      if (found && !found.isDraft) {
        // The attempt that sent it was counted when it ended, unless its dispatcher died.
        await this.finish(message, 'sent', undefined, { internetMessageId: found.internetMessageId ?? progress.internetMessageId }, { countsAsAttempt: message.attempts === 0 })
        return
      }
      if (!found && progress.sendRequestedAt) {
        await this.finish(message, 'uncertain', {
          code: 'SEND_OUTCOME_UNKNOWN',
          message: 'The draft disappeared after it was submitted for sending: it was either sent and then removed from Sent Items, or deleted.',
          hint: "Check the recipients or the mailbox's Deleted Items; retry the message only if it did not go out.",
        })
        return
      }
      if (found && progress.sendRequestedAt) {
        const settledAt = Date.parse(progress.sendRequestedAt) + this.settings.settleMs
        if (settledAt > this.now().getTime()) {
          await this.requeue(message, { at: new Date(settledAt), countsAsAttempt: false })
          return
        }
      }
      if (found && message.attempts >= this.settings.maxAttempts) {
        const gaveUp = { code: message.lastError?.code ?? 'SEND_FAILED', ...message.lastError, message: `Not sent after ${message.attempts} attempts; the draft was removed.` }
        await this.finish(message, 'failed', gaveUp, undefined, { deleteDraft: true, draftUnsent: true, countsAsAttempt: false })
        return
      }
      if (found && progress.uploadedAt) {
        // A complete draft that Graph confirms unsent: sending it now cannot duplicate it.
        await this.sendDraft(message, access, progress)
        return
      }
      if (found) await client.deleteMessage(mailbox, progress.draftId)
      progress = {}
      await this.replaceProgress(message, progress)
    }

    const [inRequest, separate] = splitForDraft(await this.attachmentsOf(message))
    const draft = await client.createDraft(mailbox, { ...outgoingMail(message), attachments: await this.loadSmallAttachments(inRequest) })
    await this.step('draft-returned', message.id)
    progress = { draftId: draft.id, ...(draft.internetMessageId ? { internetMessageId: draft.internetMessageId } : {}) }
    if (separate.length === 0) {
      // Complete as created: one write records the draft and the send about to be requested.
      await this.step('draft-created', message.id)
      await this.step('uploaded', message.id)
      await this.sendDraft(message, access, { ...progress, uploadedAt: this.now().toISOString() })
      return
    }
    await this.progress(message, progress)
    await this.step('draft-created', message.id)

    for (const attachment of separate) {
      if (attachment.size <= GRAPH_LIMITS.attachmentInRequestBytes) {
        const [loaded] = await this.loadSmallAttachments([attachment])
        await client.addAttachment(mailbox, draft.id, loaded!)
      } else {
        await client.uploadAttachment(
          mailbox,
          draft.id,
          attachment,
          this.deps.attachments.pieces(this.deps.db, attachment.blobId, GRAPH_LIMITS.uploadPieceBytes),
        )
      }
      await this.deps.outbox.renewLease(this.deps.db, message.id, this.owner, this.settings.leaseMs, this.now())
    }
    progress = { ...progress, uploadedAt: this.now().toISOString() }
    await this.progress(message, { uploadedAt: progress.uploadedAt })
    await this.step('uploaded', message.id)
    await this.sendDraft(message, access, progress)
  }

  private async sendDraft(message: ClaimedMessage, { client, mailbox }: SendAccess, progress: SendProgress): Promise<void> {
    try {
      await client.sendDraft(mailbox, progress.draftId!, { beforeRequest: () => this.recordSendRequest(message, progress) })
    } catch (error) {
      throw new SendFailure(toSendError(error), true)
    }
    await this.step('sent', message.id)
    await this.finish(message, 'sent', undefined, { internetMessageId: progress.internetMessageId })
    await this.step('recorded', message.id)
  }

  /**
   * Recorded once the mailbox's request slot is taken, right before the send leaves: a send
   * that waited for a slot and never went is not mistaken for one that may have. A failure
   * here (a lost lease, the database) stops the send before it is made.
   */
  private async recordSendRequest(message: ClaimedMessage, progress: SendProgress): Promise<void> {
    await this.progress(message, { ...progress, sendRequestedAt: this.now().toISOString() })
    await this.step('send-requested', message.id)
  }

  private async settleFailure(message: ClaimedMessage, failure: SendFailure): Promise<void> {
    const { error } = failure
    const lastError = errorRecord(error)
    if (error.countsTowardDisable && !error.transientAuthentication) {
      await this.deps.health.recordMailboxFailure(message.connectorId, error).catch((reportError: unknown) => {
        this.deps.log.error({ err: reportError, connectorId: message.connectorId }, 'dispatcher: could not record a mailbox failure')
      })
      this.healthySince.delete(message.connectorId)
    }
    const attempts = message.attempts + 1

    if (failure.ambiguous) {
      const current = await this.currentProgress(message)
      if (current.draftId) {
        // Draft path: look in the mailbox once Exchange has settled, before anything else.
        await this.requeue(message, { at: new Date(this.now().getTime() + this.settings.settleMs), countsAsAttempt: true, lastError })
        return
      }
      await this.finish(message, 'uncertain', {
        ...lastError,
        hint: `${lastError.hint ?? ''} The send request may have reached Graph, and with Mail.Send only Mailgate cannot check: look in the mailbox's Sent Items, then retry by hand if it did not go out.`.trim(),
      })
      return
    }

    if (error.retryAfterSeconds !== undefined && (error.code === 'THROTTLED' || error.code === 'GRAPH_UNAVAILABLE')) {
      const until = new Date(this.now().getTime() + error.retryAfterSeconds * 1000)
      await this.deps.outbox.pauseMailbox(this.deps.db, message.connectorId, until)
      this.quietUntil.set(message.connectorId, until.getTime())
      await this.requeue(message, { at: until, countsAsAttempt: false, lastError, clearSendRequest: failure.atSend })
      return
    }

    // Graph answered the send itself with a refusal: the draft is certainly unsent.
    const deleteDraft = { deleteDraft: true, draftUnsent: failure.atSend }
    if (isPermanent(error)) {
      await this.finish(message, 'failed', lastError, undefined, deleteDraft)
      return
    }

    if (attempts >= this.settings.maxAttempts) {
      await this.finish(message, 'failed', { ...lastError, message: `${lastError.message} (gave up after ${attempts} attempts)` }, undefined, deleteDraft)
      return
    }
    await this.requeue(message, { at: new Date(this.now().getTime() + this.backoff(attempts)), countsAsAttempt: true, lastError, clearSendRequest: failure.atSend })
  }

  /** Exponential backoff with full jitter over the upper half, so retries of many messages spread out. */
  private backoff(attempts: number): number {
    const ceiling = Math.min(this.settings.maxBackoffMs, this.settings.backoffMs * 2 ** (attempts - 1))
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2)
  }

  private async progress(message: MessageRow, progress: SendProgress): Promise<void> {
    const held = await this.deps.outbox.recordProgress(this.deps.db, message.id, this.owner, progress, this.settings.leaseMs, this.now())
    if (!held) throw new LeaseLost()
  }

  private async replaceProgress(message: MessageRow, progress: SendProgress): Promise<void> {
    const held = await this.deps.outbox.replaceProgress(this.deps.db, message.id, this.owner, progress, this.settings.leaseMs, this.now())
    if (!held) throw new LeaseLost()
  }

  private async currentProgress(message: MessageRow): Promise<SendProgress> {
    return (await this.deps.outbox.progressOf(this.deps.db, message.id)) ?? message.graphIds
  }

  private async requeue(
    message: MessageRow,
    options: { at: Date; countsAsAttempt: boolean; lastError?: MessageError; clearSendRequest?: boolean },
  ): Promise<void> {
    let graphIds: SendProgress | undefined
    if (options.clearSendRequest) {
      // The request was refused before it was processed: nothing was sent, so the next
      // attempt need not check first.
      const { sendRequestedAt: _dropped, ...rest } = await this.currentProgress(message)
      graphIds = rest
    }
    if (!(await this.deps.outbox.requeue(this.deps.db, message.id, this.owner, { ...options, graphIds }, this.now()))) throw new LeaseLost()
  }

  private async finish(
    message: ClaimedMessage,
    status: 'sent' | 'failed' | 'uncertain',
    lastError?: MessageError,
    progress?: SendProgress,
    options: { deleteDraft?: boolean; draftUnsent?: boolean; countsAsAttempt?: boolean } = {},
  ): Promise<void> {
    if (options.deleteDraft) {
      const current = await this.currentProgress(message)
      if (current.draftId && (!current.sendRequestedAt || options.draftUnsent)) {
        await this.accessFor(message)
          .then((access) => access.client.deleteMessage(access.mailbox, current.draftId!))
          .catch(() => {})
      }
    }
    const row = await this.deps.outbox.finish(
      this.deps.db,
      message.id,
      this.owner,
      { status, lastError, progress, countsAsAttempt: options.countsAsAttempt ?? true },
      this.now(),
    )
    if (!row) throw new LeaseLost()
    if (status === 'sent' && Date.now() - (this.healthySince.get(message.connectorId) ?? 0) > 60_000) {
      await this.deps.health.recordMailboxSuccess(message.connectorId)
      this.healthySince.set(message.connectorId, Date.now())
    }
    this.deps.log.info({ messageId: message.id, status, code: lastError?.code }, `message ${status}`)
  }

  /** The sending mailbox, through the one door (its cache sees credential changes at once). */
  private async accessFor(message: ClaimedMessage): Promise<SendAccess> {
    const access = await this.deps.mailboxes.open(message.integrationId)
    return { client: access.client, mailbox: message.mailbox, canUseDrafts: access.capabilities.readWrite }
  }

  private async attachmentsOf(message: MessageRow): Promise<AttachmentToSend[]> {
    return message.attachmentCount === 0 ? [] : this.deps.outbox.attachmentsOf(this.deps.db, message.id)
  }

  private async loadSmallAttachments(attachments: AttachmentToSend[]): Promise<FileAttachment[]> {
    const loaded: FileAttachment[] = []
    for (const attachment of attachments) {
      loaded.push({
        name: attachment.name,
        contentType: attachment.contentType,
        isInline: attachment.isInline,
        contentId: attachment.contentId,
        content: await this.deps.attachments.read(this.deps.db, attachment.blobId),
      })
    }
    return loaded
  }
}

