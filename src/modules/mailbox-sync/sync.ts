import { randomUUID } from 'node:crypto'
import type { ValidateFunction } from 'ajv'
import type { FastifyBaseLogger } from 'fastify'
import type { AfterAction } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { MailboxError, toMailboxError } from '../../graph/errors.ts'
import type { MailboxClient } from '../../graph/mailbox-client.ts'
import { PayloadTooLargeError } from '../../lib/errors.ts'
import { createAjv } from '../../lib/validation.ts'
import { whileRenewing, type BackgroundLoop, type Checkpoint, type LoopJob, type TaskPool } from '../../workers/runner.ts'
import { GraphMessageBody, type GraphMessageInput } from '../inbound/graph-message.ts'
import type { MailboxHealth } from '../outbound/dispatcher.ts'
import type { ClaimedFolder, MailboxSyncRepository } from './repository.ts'
import type { FolderSubscriptions } from './subscriptions.ts'

/** Points of a folder's sync where a test may stop it dead, as a crash there would. */
export type SyncStep = 'page-fetched' | 'message-taken' | 'page-saved' | 'action-performed' | 'action-done'

export interface MailboxSyncSettings {
  /** How often each folder is read when nothing wakes it (SYNC_INTERVAL). */
  intervalMs: number
  /** A claim lasts this long unless renewed by progress; a dead instance's folders come back after it. */
  leaseMs: number
  /** Messages per delta page (Prefer: odata.maxpagesize). */
  pageSize: number
  /** Pages one turn reads before giving other folders their turn (the folder stays due). */
  pagesPerTurn: number
  /** Folders synced at once by this instance (SYNC_CONCURRENCY). */
  maxConcurrentFolders: number
  /** A folder's after-processing actions done at once (the mailbox's gate allows 4 requests in all). */
  actionConcurrency: number
  /** After a failure without Retry-After, the wait before the folder is tried again. */
  retryMs: number
  /** After-processing attempts before an action is given up as failed. */
  maxActionAttempts: number
}

export const DEFAULT_SYNC_SETTINGS: MailboxSyncSettings = {
  intervalMs: 60_000,
  leaseMs: 120_000,
  pageSize: 50,
  pagesPerTurn: 20,
  maxConcurrentFolders: 64,
  actionConcurrency: 4,
  retryMs: 60_000,
  maxActionAttempts: 5,
}

/** The fields the pipeline reads: `$select` of the first delta request (Graph keeps it in the links). */
export const SYNC_SELECT = [
  'internetMessageId',
  'subject',
  'from',
  'sender',
  'toRecipients',
  'ccRecipients',
  'bccRecipients',
  'replyTo',
  'internetMessageHeaders',
  'body',
  'importance',
  'hasAttachments',
  'receivedDateTime',
  'sentDateTime',
]

/** What the sync needs of intake (the inbound module). */
export interface SyncIntake {
  takeSynced(
    connectorId: string,
    message: { graph: GraphMessageInput } | { mime: AsyncIterable<Buffer> },
    synced: { graphMessageId: string; afterProcessing: string | null },
  ): Promise<unknown>
  knownSynced(connectorId: string, graphMessageIds: string[]): Promise<Set<string>>
  pendingAfterActions(connectorId: string, limit: number): Promise<{ id: string; graphMessageId: string; afterAction: AfterAction }[]>
  /** Counts an attempt if the action is still as read (pending, same attempts); the claimed state, or undefined. */
  claimAfterAction(id: string, seen: AfterAction): Promise<AfterAction | undefined>
  /** Records the attempt's result if nobody changed the action since the claim. */
  recordAfterAction(id: string, claimed: AfterAction, result: AfterAction): Promise<void>
}

export interface MailboxSyncDeps {
  db: Db
  repository: MailboxSyncRepository
  mailboxes: { open(integrationId: string): Promise<{ client: MailboxClient }> }
  intake: SyncIntake
  health: MailboxHealth
  log: FastifyBaseLogger
  /** Change-notification subscriptions, when PUBLIC_BASE_URL is set. */
  subscriptions?: FolderSubscriptions
  settings?: Partial<MailboxSyncSettings>
  owner?: string
  clock?: () => Date
  onStep?: Checkpoint<SyncStep>
}

/** The folder's lease went to another instance: stop without writing anything more. */
class LeaseLost extends Error {}

/**
 * The synced folder itself answers 404 (deleted, or renamed and not re-tested): the connector
 * cannot read what it is set to read, which counts toward its automatic disable like a lost
 * mailbox. (A 404 for one message, or for a move target, does not.)
 */
class SyncedFolderGone extends MailboxError {
  override get countsTowardDisable(): boolean {
    return true
  }
}

/** A message passed over (see `skippable`), recorded on its folder. */
interface Skipped {
  graphMessageId: string
  reason: string
}

/** Content types whose meaning is in MIME parts Graph's JSON does not carry (reports, S/MIME). */
const NEEDS_MIME = /^\s*(multipart\/(report|signed|encrypted)|application\/(pkcs7-mime|x-pkcs7-mime))/i

/**
 * Reads every enabled incoming connector's folders through Graph's delta query and takes new
 * mail through the pipeline. Runs in every instance: a folder is synced by the holder of its
 * lease only, and every write of a round is fenced, so any number of instances cooperate.
 * A page's next link is saved only after every message of the page has its outcome
 * committed; a crash before that reads the page again, and what was taken is recognised.
 */
export class MailboxSync implements LoopJob {
  readonly owner: string
  private readonly deps: MailboxSyncDeps
  private readonly settings: MailboxSyncSettings
  private readonly loop: BackgroundLoop
  private readonly validMessage: ValidateFunction
  private reconciledAt = 0

  constructor(deps: MailboxSyncDeps, loopFor: (job: LoopJob, settings: MailboxSyncSettings) => BackgroundLoop) {
    this.deps = deps
    this.settings = { ...DEFAULT_SYNC_SETTINGS, ...deps.settings }
    this.owner = deps.owner ?? `sync-${randomUUID()}`
    this.validMessage = createAjv(false).compile(GraphMessageBody)
    this.loop = loopFor(this, this.settings)
  }

  start(): void {
    this.loop.start()
  }

  async stop(graceMs = 10_000): Promise<void> {
    await this.loop.stop(graceMs)
  }

  /** One round: every due folder synced (tests drive the sync with this). */
  async runOnce(): Promise<number> {
    return this.loop.runOnce()
  }

  /** Starts a round now (a connector was enabled, a sync asked for). */
  wake(): void {
    this.loop.wake()
  }

  private now(): Date {
    return this.deps.clock?.() ?? new Date()
  }

  async round(pool: TaskPool, { thorough }: { thorough: boolean }): Promise<{ started: number; nextInMs: number }> {
    const { db, repository } = this.deps
    const now = this.now()
    // Connectors enabled, edited or re-tested anywhere get their folders here.
    if (thorough || now.getTime() - this.reconciledAt >= this.settings.intervalMs / 4) {
      await repository.reconcile(db, now)
      this.reconciledAt = now.getTime()
      await this.deps.subscriptions?.cleanUp((integrationId) => this.deps.mailboxes.open(integrationId)).catch((error: unknown) => this.deps.log.warn({ err: error }, 'cleaning up Graph subscriptions failed; tried again later'))
    }
    const claimed = await repository.claimDue(db, this.owner, pool.capacity, this.settings, now)
    for (const folder of claimed) pool.launch(`folder:${folder.id}`, () => this.syncFolder(folder))
    // Every slot busy: a finishing turn wakes the loop, so there is nothing to poll for meanwhile.
    if (pool.capacity === 0) return { started: claimed.length, nextInMs: this.settings.intervalMs }
    const next = await repository.nextDueAt(db)
    const nextInMs = next ? Math.max(0, next.getTime() - now.getTime()) : this.settings.intervalMs
    return { started: claimed.length, nextInMs: Math.min(nextInMs, this.settings.intervalMs) }
  }

  private async step(step: SyncStep, id: string): Promise<void> {
    await this.deps.onStep?.(step, id)
  }

  /**
   * One turn of a folder: pages until the round ends (or the turn's pages are used), then its
   * after-processing. 'quiet' when the folder is still due when the claim said: the loop needs
   * no extra round for it (one woken meanwhile, or due sooner, wakes the loop).
   */
  private async syncFolder(folder: ClaimedFolder): Promise<void | 'quiet'> {
    const { db, repository, log } = this.deps
    let dueAt = new Date(this.now().getTime() + this.settings.intervalMs)
    let notBefore: Date | undefined
    let error: MailboxError | undefined
    try {
      const { client } = await this.deps.mailboxes.open(folder.integrationId)
      await this.readPages(folder, client).then((more) => {
        if (more) dueAt = this.now() // the round goes on in the next turn
      })
      await this.afterProcessing(folder, client)
      if (folder.resetsFailures) await this.deps.health.recordMailboxSuccess(folder.connectorId)
      // Notifications are a wake-up only: a folder without its subscription is still polled.
      await this.deps.subscriptions?.ensure(folder, client).catch((failure: unknown) =>
        log.warn({ err: failure, connectorId: folder.connectorId, folder: folder.folderPath }, 'the folder has no Graph subscription yet (tried again next turn); it is polled meanwhile'),
      )
    } catch (failure) {
      if (failure instanceof LeaseLost) return 'quiet'
      error = toMailboxError(failure)
      if (!(failure instanceof MailboxError)) log.error({ err: failure, folderSyncId: folder.id }, 'syncing a folder failed')
      if (error.retryAfterSeconds) notBefore = new Date(this.now().getTime() + error.retryAfterSeconds * 1000)
      dueAt = new Date(this.now().getTime() + this.settings.retryMs)
      // As the dispatcher: Entra being down or unreachable says nothing about this connector.
      if (error.countsTowardDisable && !error.transientAuthentication) {
        await this.deps.health.recordMailboxFailure(folder.connectorId, error).catch((report: unknown) => log.error({ err: report }, 'recording a mailbox failure failed'))
      }
    }
    const syncError = error ? { code: error.code, message: error.message.slice(0, 500), at: this.now().toISOString() } : null
    const due = await repository.release(db, folder, { dueAt, notBefore }, syncError, this.now())
    // Still due when the claim said (nothing woke it meanwhile, no more pages, no Retry-After sooner).
    return due === undefined || (due >= folder.claimedDueAt && due > this.now()) ? 'quiet' : undefined
  }

  /** Reads pages from where the folder stands; true when the round is not over yet. */
  private async readPages(folder: ClaimedFolder, client: MailboxClient): Promise<boolean> {
    const { db, repository } = this.deps
    let link = folder.nextLink ?? folder.deltaLink ?? undefined
    let restarted = false
    for (let pages = 0; pages < this.settings.pagesPerTurn; pages++) {
      let page: Awaited<ReturnType<MailboxClient['deltaPage']>>
      try {
        page = await client.deltaPage(folder.mailbox, folder.folderId, { link, select: SYNC_SELECT, pageSize: this.settings.pageSize })
      } catch (failure) {
        if (failure instanceof MailboxError && failure.code === 'FOLDER_NOT_FOUND') {
          throw new SyncedFolderGone('FOLDER_NOT_FOUND', `The folder ${folder.folderPath} of ${folder.mailbox} is not there any more (${failure.message})`, {
            status: failure.status,
            graphCode: failure.graphCode,
            retryAfterSeconds: failure.retryAfterSeconds,
            hint: 'Re-create the folder, or change the connector\'s folderPaths and test it again.',
            cause: failure,
          })
        }
        if (!(failure instanceof MailboxError) || failure.code !== 'SYNC_STATE_EXPIRED' || restarted) throw failure
        // Read again from the start; what was taken before is recognised, older mail skipped.
        if (!(await repository.restartRound(db, folder, this.now()))) throw new LeaseLost()
        restarted = true
        link = undefined
        pages--
        continue
      }
      await this.step('page-fetched', folder.id)
      const { taken, skipped } = await this.holding(folder, (lease) => this.takePage(folder, client, page.messages, lease))
      const leaseUntil = new Date(this.now().getTime() + this.settings.leaseMs)
      const saved = await repository.saveProgress(db, folder, { nextLink: page.nextLink, deltaLink: page.deltaLink, taken, skipped, leaseUntil }, this.now())
      if (!saved) throw new LeaseLost()
      await this.step('page-saved', folder.id)
      if (page.deltaLink || !page.nextLink) return false
      link = page.nextLink
    }
    return true
  }

  /**
   * Runs `work` while renewing the folder's lease; `lease.lost` turns true when a renewal
   * finds the lease gone (another instance holds the folder now), and the work stops.
   */
  private async holding<T>(folder: ClaimedFolder, work: (lease: { lost: boolean }) => Promise<T>): Promise<T> {
    const lease = { lost: false }
    const renew = async () => {
      if (!(await this.deps.repository.renew(this.deps.db, folder, new Date(this.now().getTime() + this.settings.leaseMs)))) lease.lost = true
    }
    return whileRenewing(renew, this.settings.leaseMs / 3, () => work(lease))
  }

  /**
   * Takes a page's new messages through the pipeline, one after another; how many it took.
   * Mail received before the folder's start date is skipped in every round: Graph reports an
   * old message again when someone reads, flags or moves it, and it is not new work. A
   * message that cannot be taken (too large, gone before its MIME was read, an id Graph
   * should not send) is skipped with a warning rather than holding up the folder; a
   * failure of Graph or the database fails the page, which is read again.
   */
  private async takePage(folder: ClaimedFolder, client: MailboxClient, messages: Record<string, unknown>[], lease: { lost: boolean }): Promise<{ taken: number; skipped: Skipped[] }> {
    const ids = new Set(messages.map((message) => message.id).filter(isGraphId))
    // Replays (a changed message comes again) and messages moved between synced folders.
    const known = await this.deps.intake.knownSynced(folder.connectorId, [...ids])
    let taken = 0
    const skipped: Skipped[] = []
    for (const message of messages) {
      if (lease.lost) throw new LeaseLost()
      const id = message.id
      if (!isGraphId(id) || known.has(id)) continue
      if (receivedTime(message) < folder.ingestSince.getTime()) continue
      known.add(id)
      try {
        await this.deps.intake.takeSynced(folder.connectorId, await this.contentOf(folder, client, id, message), {
          graphMessageId: id,
          afterProcessing: folder.afterProcessing,
        })
      } catch (failure) {
        if (!skippable(failure)) throw failure
        this.deps.log.warn({ err: failure, connectorId: folder.connectorId, folder: folder.folderPath, graphMessageId: id }, 'a synced message could not be taken in and is skipped')
        skipped.push({ graphMessageId: id, reason: failure instanceof Error ? failure.message.slice(0, 300) : String(failure) })
        continue
      }
      taken++
      await this.step('message-taken', folder.id)
    }
    return { taken, skipped }
  }

  /**
   * The message as the pipeline takes it: Graph's JSON (only the fields it reads, so a replay
   * is the same source), or its MIME when the JSON does not carry everything (attachments,
   * delivery reports, S/MIME) or is not what Graph documents.
   */
  private async contentOf(folder: ClaimedFolder, client: MailboxClient, id: string, message: Record<string, unknown>) {
    const picked: Record<string, unknown> = {}
    for (const field of SYNC_SELECT) if (message[field] !== undefined) picked[field] = message[field]
    const headers = Array.isArray(message.internetMessageHeaders) ? (message.internetMessageHeaders as { name?: unknown; value?: unknown }[]) : []
    const contentType = headers.find((header) => typeof header?.name === 'string' && header.name.toLowerCase() === 'content-type')?.value
    const needsMime =
      message.hasAttachments === true ||
      (typeof contentType === 'string' && NEEDS_MIME.test(contentType)) ||
      referencesInlineParts(message.body) ||
      !this.validMessage(picked)
    if (needsMime) return { mime: await client.messageMime(folder.mailbox, id) }
    return { graph: picked as GraphMessageInput }
  }

  /**
   * The connector's after-processing action on synced messages whose outcome is committed:
   * each recorded on its email; a transient failure is retried next turn, up to
   * maxActionAttempts; one message's failure does not hold up the others.
   */
  private async afterProcessing(folder: ClaimedFolder, client: MailboxClient): Promise<void> {
    const pending = await this.deps.intake.pendingAfterActions(folder.connectorId, 100)
    const destinations = new Map<string, Promise<string>>()
    await this.holding(folder, async (lease) => {
      let next = 0
      const worker = async () => {
        while (next < pending.length) {
          if (lease.lost) throw new LeaseLost()
          await this.afterProcess(folder, client, pending[next++]!, destinations)
        }
      }
      // The first failure that stops the folder (throttling, a lost mailbox) ends the other workers after their current action.
      const workers = Array.from({ length: Math.min(this.settings.actionConcurrency, pending.length) }, () =>
        worker().catch((failure: unknown) => {
          next = pending.length
          throw failure
        }),
      )
      const settled = await Promise.allSettled(workers)
      const failed = settled.find((result) => result.status === 'rejected')
      if (failed) throw failed.reason
    })
  }

  private async afterProcess(
    folder: ClaimedFolder,
    client: MailboxClient,
    { id, graphMessageId, afterAction }: { id: string; graphMessageId: string; afterAction: AfterAction },
    destinations: Map<string, Promise<string>>,
  ): Promise<void> {
    // Claimed first (another folder of the connector may be at the same list): one performer per attempt.
    const claimed = await this.deps.intake.claimAfterAction(id, afterAction)
    if (!claimed) return
    const { attempts } = claimed
    try {
      await this.perform(folder, client, graphMessageId, afterAction.action, destinations)
      await this.step('action-performed', folder.id)
      await this.deps.intake.recordAfterAction(id, claimed, { ...claimed, state: 'done', lastError: null, doneAt: this.now().toISOString() })
    } catch (failure) {
      const error = toMailboxError(failure)
      // Throttled (by Graph, or refused by the mailbox's gate before any request): not an attempt.
      const notTried = error.code === 'THROTTLED' || error.code === 'REQUEST_SLOTS_UNAVAILABLE'
      // Gone from the mailbox (deleted by someone): nothing left to do, and nothing to retry.
      const final = !notTried && (error.status === 404 || attempts >= this.settings.maxActionAttempts)
      await this.deps.intake.recordAfterAction(id, claimed, {
        ...claimed,
        attempts: notTried ? attempts - 1 : attempts,
        state: final ? 'failed' : 'pending',
        lastError: `${error.code}: ${error.message}`.slice(0, 500),
        doneAt: null,
      })
      if (notTried || error.countsTowardDisable) throw error
    }
    await this.step('action-done', folder.id)
  }

  private async perform(folder: ClaimedFolder, client: MailboxClient, messageId: string, action: string, destinations: Map<string, Promise<string>>): Promise<void> {
    if (action === 'markRead') return client.markRead(folder.mailbox, messageId)
    if (action === 'delete') return client.deleteMessage(folder.mailbox, messageId)
    if (action.startsWith('move:')) {
      const path = action.slice('move:'.length)
      // One lookup of the target for the actions running side by side; a failed one is looked up again.
      let destination = destinations.get(path)
      if (!destination) {
        destination = client.resolveFolderPath(folder.mailbox, path).then((found) => found.id)
        destinations.set(path, destination)
        destination.catch(() => destinations.delete(path))
      }
      return client.moveMessage(folder.mailbox, messageId, await destination)
    }
    throw new MailboxError('GRAPH_REQUEST_FAILED', `Unknown after-processing action ${action}`)
  }
}

/** Graph's ids are base64url-ish text: anything else (empty, huge, control characters) is not taken. */
function isGraphId(id: unknown): id is string {
  return typeof id === 'string' && id.length > 0 && id.length <= 1024 && /^[\x21-\x7e]+$/.test(id)
}

/** Failures that belong to one message, not to the folder: that message is skipped. */
function skippable(failure: unknown): boolean {
  if (failure instanceof PayloadTooLargeError) return true
  // The message was deleted between the delta page and the read of its MIME.
  return failure instanceof MailboxError && failure.status === 404 && failure.code === 'FOLDER_NOT_FOUND'
}

/** `cid:` as an attribute value or a CSS url(): where HTML shows an inline part. */
const INLINE_REFERENCE = /(?:=\s*["']?|url\(\s*["']?)\s*cid:/i

/**
 * HTML that shows inline parts (`cid:` images, such as a signature's logo): Graph's
 * `hasAttachments` leaves inline attachments out, and its JSON does not carry them, so such
 * a message is read as MIME (one more request, the price of keeping the images).
 */
function referencesInlineParts(body: unknown): boolean {
  if (typeof body !== 'object' || body === null) return false
  const { contentType, content } = body as { contentType?: unknown; content?: unknown }
  return typeof contentType === 'string' && contentType.toLowerCase() === 'html' && typeof content === 'string' && INLINE_REFERENCE.test(content)
}

function receivedTime(message: Record<string, unknown>): number {
  const value = typeof message.receivedDateTime === 'string' ? Date.parse(message.receivedDateTime) : Number.NaN
  // No date: taken (a message of unknown age is not dropped).
  return Number.isNaN(value) ? Number.POSITIVE_INFINITY : value
}
