import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { MessageError, SendProgress } from '../../db/schema.ts'
import type { Db } from '../database/index.ts'
import { MailboxClient, MailboxError, toMailboxError, type FileAttachment, type OutgoingMail } from '../graph/mailbox-client.ts'
import { TokenError, type TokenProvider } from '../graph/token-provider.ts'
import { SecretUnreadableError } from '../lib/secret-box.ts'
import type { ConnectorService } from '../modules/connectors/service.ts'
import type { IntegrationService } from '../modules/integrations/service.ts'
import type { AttachmentStore } from '../modules/messages/attachment-store.ts'
import { STAGED_UPLOAD_GRACE_MS } from '../modules/messages/service.ts'
import type { MessageRow } from '../modules/messages/repository.ts'
import type { ConnectorRepository } from '../modules/connectors/repository.ts'
import { Outbox, type AttachmentToSend } from './outbox.ts'

/** Files up to this size travel inside a Graph request; larger ones need an upload session. */
const INLINE_LIMIT = 3 * 1024 * 1024
/** Graph refuses requests over about 4 MB; small files go into the draft request up to this total. */
const DRAFT_REQUEST_ATTACHMENT_BUDGET = 2_500_000
const UPLOAD_PIECE_BYTES = 4 * 1024 * 1024

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
  graphTimeoutMs: number
}

export const DEFAULT_DISPATCHER_SETTINGS: DispatcherSettings = {
  perMinute: 30,
  maxInFlightPerMailbox: 4,
  maxAttempts: 8,
  backoffMs: 15_000,
  maxBackoffMs: 30 * 60_000,
  leaseMs: 120_000,
  settleMs: 30_000,
  maxConcurrentSends: 64,
  pollMs: 1_000,
  graphTimeoutMs: 30_000,
}

export interface DispatcherDeps {
  db: Db
  tokens: TokenProvider
  integrations: IntegrationService
  connectors: ConnectorService
  connectorRepository: ConnectorRepository
  attachments: AttachmentStore
  log: FastifyBaseLogger
  settings?: Partial<DispatcherSettings>
  /** Identifies this dispatcher's leases; unique per process by default. */
  owner?: string
  clock?: () => Date
  onStep?: (step: DispatchStep, messageId: string) => void | Promise<void>
}

interface MailboxAccess {
  client: MailboxClient
  /** The connector's mailbox, which sends; `from` may be one of its aliases (Send As). */
  mailbox: string
  canUseDrafts: boolean
  expiresAt: number
}

/** Why a send attempt stopped, and whether the message may already be out. */
class SendFailure extends Error {
  readonly error: MailboxError
  /** The failed request was the send itself. */
  readonly atSend: boolean
  readonly ambiguous: boolean

  constructor(error: MailboxError, atSend: boolean) {
    super(error.message)
    this.error = error
    this.atSend = atSend
    this.ambiguous = atSend && isAmbiguous(error)
  }
}

/** Lease lost to another dispatcher: stop without writing anything. */
class LeaseLost extends Error {}

const TRANSIENT_TOKEN_CODES = new Set(['IDENTITY_PROVIDER_ERROR', 'NETWORK_ERROR', 'TOKEN_TIMEOUT'])

/**
 * Sends queued messages through Microsoft Graph. Runs in every instance; the outbox's leases
 * and per-mailbox budget make any number of them cooperate. The rule it never breaks: once a
 * send request may have reached Graph, the message is not sent again until Graph confirmed
 * it was not (draft path), or a person decided (Mail.Send-only path: `uncertain`).
 */
export class Dispatcher {
  readonly owner: string
  private readonly deps: DispatcherDeps
  private readonly settings: DispatcherSettings
  private readonly outbox = new Outbox()
  private readonly active = new Set<Promise<void>>()
  private readonly access = new Map<string, MailboxAccess>()
  /** Connectors not worth asking before this time (budget empty or mailbox paused). */
  private readonly quietUntil = new Map<string, number>()
  /** This instance's sends per connector: a mailbox already at the limit here needs no claim query. */
  private readonly sendingHere = new Map<string, number>()
  private due: string[] = []
  private scannedAt = 0
  /** Connectors whose failure count this instance reset recently, so each send need not. */
  private readonly healthySince = new Map<string, number>()
  private running = false
  private loop: Promise<void> | undefined
  private wake: (() => void) | undefined
  /** A wake-up that came while the loop was busy: the next wait ends at once. */
  private wakePending = false

  constructor(deps: DispatcherDeps) {
    this.deps = deps
    this.settings = { ...DEFAULT_DISPATCHER_SETTINGS, ...deps.settings }
    this.owner = deps.owner ?? `dispatcher-${randomUUID()}`
  }

  start(): void {
    if (this.running) return
    this.running = true
    this.loop = this.run()
  }

  /** Stops claiming and waits for sends in progress; whatever outlives `graceMs` is recovered by lease later. */
  async stop(graceMs = 10_000): Promise<void> {
    this.running = false
    this.notify()
    await this.loop
    await Promise.race([Promise.allSettled([...this.active]), new Promise((resolve) => setTimeout(resolve, graceMs).unref())])
  }

  /** Wakes the loop now: a send finished (its mailbox has room again), or it is stopping. */
  private notify(): void {
    if (this.wake) this.wake()
    else this.wakePending = true
  }

  /** One round: recover abandoned messages, claim what the limits allow, and wait for those sends. */
  async runOnce(): Promise<number> {
    const started = await this.claimAndStart(true)
    await Promise.allSettled([...this.active])
    return started
  }

  /**
   * Removes what nobody will use again: staged attachment content no message took (uploads
   * cut off by a crash, after a grace period far longer than any upload) and idempotency keys
   * past their 24 hours.
   */
  async housekeep(now = this.now()): Promise<{ blobs: number; idempotencyKeys: number }> {
    const blobs = await this.deps.attachments.removeUnreferenced(this.deps.db, new Date(now.getTime() - STAGED_UPLOAD_GRACE_MS))
    const idempotencyKeys = await this.outbox.removeExpiredIdempotencyKeys(this.deps.db, new Date(now.getTime() - 24 * 3_600_000))
    return { blobs, idempotencyKeys }
  }

  private async run(): Promise<void> {
    let housekeptAt = 0
    while (this.running) {
      try {
        await this.claimAndStart()
        if (Date.now() - housekeptAt > 10 * 60_000) {
          housekeptAt = Date.now()
          const removed = await this.housekeep()
          if (removed.blobs + removed.idempotencyKeys > 0) this.deps.log.info(removed, 'dispatcher: housekeeping removed expired data')
        }
      } catch (error) {
        this.deps.log.error({ err: error }, 'dispatcher: claiming failed; trying again shortly')
      }
      if (!this.running) break
      if (this.wakePending) {
        this.wakePending = false
        continue
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.nextWakeInMs())
        this.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      this.wake = undefined
    }
  }

  /** Until the next poll, or sooner when a quiet mailbox's next budget token comes due. */
  private nextWakeInMs(): number {
    const now = this.now().getTime()
    let wait = this.settings.pollMs
    for (const [connectorId, until] of this.quietUntil) {
      if (until <= now) this.quietUntil.delete(connectorId)
      else wait = Math.min(wait, until - now)
    }
    return Math.max(5, wait)
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

  private async claimAndStart(rescan = false): Promise<number> {
    const { db } = this.deps
    let started = 0
    const capacity = () => this.settings.maxConcurrentSends - this.active.size
    const now = this.now()
    if (rescan || now.getTime() - this.scannedAt >= this.scanIntervalMs()) {
      if (capacity() > 0) {
        const abandoned = await this.outbox.claimAbandoned(db, this.owner, capacity(), this.settings.leaseMs, now)
        for (const message of abandoned) this.launch(message)
        started += abandoned.length
      }
      this.due = await this.outbox.dueConnectors(db, now)
      this.scannedAt = now.getTime()
    }
    for (const connectorId of [...this.due]) {
      if (capacity() <= 0) break
      if ((this.quietUntil.get(connectorId) ?? 0) > now.getTime()) continue
      if ((this.sendingHere.get(connectorId) ?? 0) >= this.settings.maxInFlightPerMailbox) continue
      const claim = await this.outbox.claimForConnector(
        db,
        connectorId,
        this.owner,
        {
          maxInFlight: this.settings.maxInFlightPerMailbox,
          perMinute: this.settings.perMinute,
          leaseMs: this.settings.leaseMs,
          max: capacity(),
        },
        now,
      )
      if (claim.retryInMs) this.quietUntil.set(connectorId, now.getTime() + claim.retryInMs)
      else this.quietUntil.delete(connectorId)
      if (claim.messages.length === 0 && !claim.retryInMs && !this.sendingHere.has(connectorId)) {
        this.due = this.due.filter((id) => id !== connectorId) // nothing due there until the next scan
      }
      for (const message of claim.messages) this.launch(message)
      started += claim.messages.length
    }
    return started
  }

  private launch(message: MessageRow): void {
    const { connectorId } = message
    this.sendingHere.set(connectorId, (this.sendingHere.get(connectorId) ?? 0) + 1)
    const work = this.process(message)
      .catch((error: unknown) => {
        this.deps.log.error({ err: error, messageId: message.id }, 'dispatcher: unexpected failure; the lease will bring the message back')
      })
      .finally(() => {
        const left = (this.sendingHere.get(connectorId) ?? 1) - 1
        if (left > 0) this.sendingHere.set(connectorId, left)
        else this.sendingHere.delete(connectorId)
        this.active.delete(work)
        this.notify()
      })
    this.active.add(work)
  }

  private async step(step: DispatchStep, messageId: string): Promise<void> {
    await this.deps.onStep?.(step, messageId)
  }

  private async process(message: MessageRow): Promise<void> {
    const renew = setInterval(() => {
      this.outbox.renewLease(this.deps.db, message.id, this.owner, this.settings.leaseMs, this.now()).catch(() => {})
    }, Math.max(1_000, this.settings.leaseMs / 3))
    renew.unref()
    try {
      await this.step('claimed', message.id)
      const access = await this.accessFor(message.connectorId)
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
    } finally {
      clearInterval(renew)
    }
  }

  /** Mail.Send only: one sendMail request. Ambiguous outcomes become `uncertain`, never a re-send. */
  private async sendDirectly(message: MessageRow, { client, mailbox }: MailboxAccess): Promise<void> {
    if (message.graphIds.sendRequestedAt) {
      await this.finish(message, 'uncertain', {
        code: 'SEND_OUTCOME_UNKNOWN',
        message: 'A send request for this message was made but its outcome never came back, and with Mail.Send only Mailgate cannot look into the mailbox.',
        hint: "Check the mailbox's Sent Items. If the message is not there, retry it (POST /v1/messages/{id}/retry); granting Mail.ReadWrite lets Mailgate check by itself.",
      })
      return
    }
    const attachments = await this.loadSmallAttachments(await this.attachmentsOf(message))
    await this.progress(message, { sendRequestedAt: this.now().toISOString() })
    await this.step('send-requested', message.id)
    try {
      await client.sendMail(mailbox, { ...outgoingMail(message), attachments })
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
  private async sendThroughDraft(message: MessageRow, access: MailboxAccess): Promise<void> {
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
      if (attachment.size <= INLINE_LIMIT) {
        const [loaded] = await this.loadSmallAttachments([attachment])
        await client.addAttachment(mailbox, draft.id, loaded!)
      } else {
        await client.uploadAttachment(
          mailbox,
          draft.id,
          attachment,
          this.deps.attachments.pieces(this.deps.db, attachment.blobId, UPLOAD_PIECE_BYTES),
        )
      }
      await this.outbox.renewLease(this.deps.db, message.id, this.owner, this.settings.leaseMs, this.now())
    }
    progress = { ...progress, uploadedAt: this.now().toISOString() }
    await this.progress(message, { uploadedAt: progress.uploadedAt })
    await this.step('uploaded', message.id)
    await this.sendDraft(message, access, progress)
  }

  private async sendDraft(message: MessageRow, { client, mailbox }: MailboxAccess, progress: SendProgress): Promise<void> {
    await this.progress(message, { ...progress, sendRequestedAt: this.now().toISOString() })
    await this.step('send-requested', message.id)
    try {
      await client.sendDraft(mailbox, progress.draftId!)
    } catch (error) {
      throw new SendFailure(toSendError(error), true)
    }
    await this.step('sent', message.id)
    await this.finish(message, 'sent', undefined, { internetMessageId: progress.internetMessageId })
    await this.step('recorded', message.id)
  }

  private async settleFailure(message: MessageRow, failure: SendFailure): Promise<void> {
    const { error } = failure
    const lastError = errorRecord(error)
    if (error.countsTowardDisable && !isTransientAuthentication(error)) {
      await this.deps.connectors.recordMailboxFailure(message.connectorId, error).catch((reportError: unknown) => {
        this.deps.log.error({ err: reportError, connectorId: message.connectorId }, 'dispatcher: could not record a mailbox failure')
      })
      this.access.delete(message.connectorId)
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
      await this.outbox.pauseMailbox(this.deps.db, message.connectorId, until)
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
    const held = await this.outbox.recordProgress(this.deps.db, message.id, this.owner, progress, this.settings.leaseMs, this.now())
    if (!held) throw new LeaseLost()
  }

  private async replaceProgress(message: MessageRow, progress: SendProgress): Promise<void> {
    const held = await this.outbox.replaceProgress(this.deps.db, message.id, this.owner, progress, this.settings.leaseMs, this.now())
    if (!held) throw new LeaseLost()
  }

  private async currentProgress(message: MessageRow): Promise<SendProgress> {
    return (await this.outbox.progressOf(this.deps.db, message.id)) ?? message.graphIds
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
    if (!(await this.outbox.requeue(this.deps.db, message.id, this.owner, { ...options, graphIds }, this.now()))) throw new LeaseLost()
  }

  private async finish(
    message: MessageRow,
    status: 'sent' | 'failed' | 'uncertain',
    lastError?: MessageError,
    progress?: SendProgress,
    options: { deleteDraft?: boolean; draftUnsent?: boolean; countsAsAttempt?: boolean } = {},
  ): Promise<void> {
    if (options.deleteDraft) {
      const current = await this.currentProgress(message)
      if (current.draftId && (!current.sendRequestedAt || options.draftUnsent)) {
        await this.accessFor(message.connectorId)
          .then((access) => access.client.deleteMessage(access.mailbox, current.draftId!))
          .catch(() => {})
      }
    }
    const row = await this.outbox.finish(
      this.deps.db,
      message.id,
      this.owner,
      { status, lastError, progress, countsAsAttempt: options.countsAsAttempt ?? true },
      this.now(),
    )
    if (!row) throw new LeaseLost()
    if (status === 'sent' && Date.now() - (this.healthySince.get(message.connectorId) ?? 0) > 60_000) {
      await this.deps.connectors.recordMailboxSuccess(message.connectorId)
      this.healthySince.set(message.connectorId, Date.now())
    }
    this.deps.log.info({ messageId: message.id, status, code: lastError?.code }, `message ${status}`)
  }

  /** A Graph client for the connector's integration, cached briefly; credential changes apply within a minute. */
  private async accessFor(connectorId: string): Promise<MailboxAccess> {
    const cached = this.access.get(connectorId)
    if (cached && cached.expiresAt > Date.now()) return cached
    const connector = await this.deps.connectorRepository.findById(this.deps.db, connectorId)
    if (!connector) throw new MailboxError('MAILBOX_NOT_FOUND', `Connector ${connectorId} no longer exists`)
    let registration
    try {
      registration = (await this.deps.integrations.connectionFor(this.deps.db, connector.integrationId)).registration
    } catch (error) {
      if (error instanceof SecretUnreadableError) {
        throw new MailboxError('AUTHENTICATION_FAILED', `The integration's credential cannot be read (key ${error.keyId}).`, {
          hint: 'Start the server with the key that sealed it in SECRETS_KEY_PREVIOUS, or enter the credential again.',
        })
      }
      throw error
    }
    const token = await this.deps.tokens.acquire(registration)
    const access: MailboxAccess = {
      mailbox: connector.primaryAddress,
      client: new MailboxClient(this.deps.tokens, registration, { timeoutMs: this.settings.graphTimeoutMs }),
      canUseDrafts: token.roles.includes('Mail.ReadWrite'),
      expiresAt: Date.now() + 60_000,
    }
    this.access.set(connectorId, access)
    return access
  }

  private async attachmentsOf(message: MessageRow): Promise<AttachmentToSend[]> {
    return message.attachmentCount === 0 ? [] : this.outbox.attachmentsOf(this.deps.db, message.id)
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

function outgoingMail(message: MessageRow): OutgoingMail {
  return {
    from: message.fromAddress,
    to: message.toAddresses,
    cc: message.ccAddresses,
    bcc: message.bccAddresses,
    replyTo: message.replyTo,
    subject: message.subject,
    body: { contentType: message.bodyType, content: message.body },
    importance: message.importance,
    headers: message.headers,
  }
}

/** Small files ride in the draft request while they fit; the rest are added one by one. */
function splitForDraft(attachments: AttachmentToSend[]): [AttachmentToSend[], AttachmentToSend[]] {
  const inRequest: AttachmentToSend[] = []
  const separate: AttachmentToSend[] = []
  let budget = DRAFT_REQUEST_ATTACHMENT_BUDGET
  for (const attachment of attachments) {
    if (attachment.size <= INLINE_LIMIT && attachment.size <= budget) {
      inRequest.push(attachment)
      budget -= attachment.size
    } else {
      separate.push(attachment)
    }
  }
  return [inRequest, separate]
}

function toSendError(error: unknown): MailboxError {
  if (error instanceof SendFailure) return error.error
  if (error instanceof MailboxError) return error
  if (error instanceof TokenError) return toMailboxError(error)
  throw error
}

/** The send may have been processed: no answer, a cut connection, or a server error without Retry-After. */
function isAmbiguous(error: MailboxError): boolean {
  if (error.code === 'NETWORK_ERROR' || error.code === 'GRAPH_TIMEOUT') return true
  return error.code === 'GRAPH_UNAVAILABLE' && error.retryAfterSeconds === undefined
}

/** Refusals that another attempt would only repeat. */
function isPermanent(error: MailboxError): boolean {
  if (error.code === 'AUTHENTICATION_FAILED' || error.code === 'THROTTLED' || error.code === 'GRAPH_UNAVAILABLE') return false
  if (error.code === 'NETWORK_ERROR' || error.code === 'GRAPH_TIMEOUT') return false
  return error.status === undefined || (error.status >= 400 && error.status < 500 && error.status !== 408)
}

function isTransientAuthentication(error: MailboxError): boolean {
  return error.code === 'AUTHENTICATION_FAILED' && TRANSIENT_TOKEN_CODES.has(error.tokenCode ?? '')
}

function errorRecord(error: MailboxError): MessageError {
  return {
    code: error.code,
    message: error.message,
    hint: error.hint,
    ...(error.graphCode ? { graphCode: error.graphCode } : {}),
    ...(error.status !== undefined ? { status: error.status } : {}),
  }
}
