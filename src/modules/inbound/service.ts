import { hash as oneShotHash, createHash } from 'node:crypto'
import { PassThrough, Readable } from 'node:stream'
import type { FastifyBaseLogger } from 'fastify'
import type { IngestSettings } from '../../config.ts'
import type { Db } from '../../database/index.ts'
import { databaseErrorCode } from '../../database/error-code.ts'
import { NotFoundError, PayloadTooLargeError } from '../../lib/errors.ts'
import { newId } from '../../lib/ids.ts'
import { decodeCursor, toPage, type PageResult } from '../../lib/schemas.ts'
import type { AttachmentStore } from '../attachments/store.ts'
import type { Actor, AuditService } from '../audit/service.ts'
import type { AfterAction, InboundOutcome } from '../../../db/schema.ts'
import type { CreateRouteInput } from '../email-routes/schemas.ts'
import type { EventLog } from '../events/service.ts'
import { dedupeKeys, dedupeScope, type DedupeKey, type DedupeWay } from './dedupe.ts'
import {
  ConnectorNotAcceptingMailError,
  DuplicateEmailError,
  NoSuchRequestError,
  RecipientNotOnEmailError,
  WorkItemAlreadyConfirmedError,
} from './errors.ts'
import { fromGraphMessage, type GraphMessageInput } from './graph-message.ts'
import { attachmentContent, parseMime } from './mime.ts'
import { storable, type ParsedMail } from './parsed-mail.ts'
import type { InboundPipeline, IngestConnector } from './pipeline.ts'
import { presentEmail, presentSummary } from './present.ts'
import { DecidedEmailWriter, type SentAnyOf } from './decided-writer.ts'
import type { InboundEmailRow, InboundRepository, WorkItemLinkRow } from './repository.ts'
import type { ConfirmWorkItemInput, CreateRouteFromEmailInput, InboundEmail, InboundEmailSummary, ListInboundInput, ReapplyInput } from './schemas.ts'

export interface InboundServiceDeps {
  db: Db
  repository: InboundRepository
  pipeline: InboundPipeline
  store: AttachmentStore
  audit: AuditService
  connectors: { find(executor: Db, id: string): Promise<IngestConnector | undefined> }
  routes: { create(actor: Actor, input: CreateRouteInput): Promise<{ id: string }> }
  settings: IngestSettings
  /** Largest message taken in, in bytes (MESSAGE_SIZE_LIMIT). */
  sizeLimit: number
  log?: FastifyBaseLogger
  events: EventLog
  /** The outbound module's "a sent message has one of these ids", which the store statement asks. */
  sentAnyOf: SentAnyOf
  /**
   * Test hook at the points where a crash matters: `decided` (nothing written yet) and
   * `stored` (stored as `received`, not yet processed).
   */
  onStage?: (stage: 'decided' | 'stored', email: { id: string; subject: string }) => Promise<void>
}

/** What intake stored: the email row, and its links when they are known without a read. */
export type Accepted =
  | { status: 201; row: InboundEmailRow; links?: WorkItemLinkRow[] }
  | { status: 200; duplicateOf: string; way: DedupeWay; row: InboundEmailRow; links?: WorkItemLinkRow[] }

export type IngestResult =
  | { status: 201; email: InboundEmail }
  | { status: 200; duplicate: { duplicateOf: string; way: DedupeWay; email: InboundEmail } }

export interface ReapplyResult {
  reapplied: number
  changed: number
  /** Set when the range holds more: pass it as `afterId` to reapply the rest. */
  nextAfterId: string | null
}

/** Emails re-applied in one call at most. */
export const REAPPLY_LIMIT = 1000
/** Processing attempts before recovery gives an email up as unhandled. */
const MAX_PROCESSING_ATTEMPTS = 5

class ExactRepeat extends Error {}

/**
 * Mail intake and the received-mail API. Intake stores an email (source kept byte for byte,
 * dedupe keys claimed) in one transaction, then runs the pipeline in another; an email left
 * `received` by a crash in between is finished by `recoverUnfinished`.
 */
export class InboundService {
  private readonly deps: InboundServiceDeps

  private readonly decidedWriter: DecidedEmailWriter
  private readonly outcomeListeners: ((outcome: InboundOutcome) => void)[] = []

  constructor(deps: InboundServiceDeps) {
    this.deps = deps
    this.decidedWriter = new DecidedEmailWriter(deps.db, deps.sentAnyOf)
  }

  /** Called with the outcome each email gets when intake or recovery decides it (metrics). */
  onOutcome(listener: (outcome: InboundOutcome) => void): void {
    this.outcomeListeners.push(listener)
  }

  private counted(outcome: InboundOutcome): void {
    // A mail left `received` is counted when recovery finishes it.
    if (outcome === 'received') return
    for (const listener of this.outcomeListeners) listener(outcome)
  }

  get sizeLimit(): number {
    return this.deps.sizeLimit
  }

  /** Raw RFC 5322: streamed into storage and through the parser side by side, never held whole. */
  async ingestMime(connectorId: string, source: AsyncIterable<Buffer>): Promise<IngestResult> {
    const connector = await this.requireAcceptingConnector(connectorId)
    const { blob, hash, mail } = await this.storeMime(source)
    return this.answer(await this.accept(connectorId, 'mime', blob, hash, mail, { connector }), mail)
  }

  /** Graph's message JSON, stored as received (re-serialised) so it can be processed again. */
  async ingestGraph(connectorId: string, message: GraphMessageInput): Promise<IngestResult> {
    const connector = await this.requireAcceptingConnector(connectorId)
    const { blob, hash, mail } = await this.storeGraph(message)
    return this.answer(await this.accept(connectorId, 'graph', blob, hash, mail, { connector }), mail)
  }

  /**
   * A message the mailbox sync read, as Graph's JSON or (when the JSON is not enough) its MIME:
   * stored and taken through the pipeline, with its id and the after-processing action to do.
   */
  async takeSynced(connectorId: string, message: { graph: GraphMessageInput } | { mime: AsyncIterable<Buffer> }, synced: { graphMessageId: string; afterProcessing: string | null }): Promise<Accepted> {
    if ('graph' in message) {
      const { blob, hash, mail } = await this.storeGraph(message.graph)
      return this.accept(connectorId, 'graph', blob, hash, mail, { synced })
    }
    let stored: Awaited<ReturnType<InboundService['storeMime']>>
    try {
      stored = await this.storeMime(message.mime)
    } finally {
      // Read to its end, or abandoned by a failure before it was read: closed either way, so
      // the response (and the mailbox's request slot) is not held until it times out.
      await message.mime[Symbol.asyncIterator]().return?.()
    }
    return this.accept(connectorId, 'mime', stored.blob, stored.hash, stored.mail, { synced })
  }

  /** Which of these Graph message ids the connector has taken in already (a replay, or a message moved between synced folders). */
  async knownSynced(connectorId: string, graphMessageIds: string[]): Promise<Set<string>> {
    return this.deps.repository.knownGraphMessages(this.deps.db, connectorId, graphMessageIds)
  }

  /** Synced mail whose after-processing action is still to do (its outcome is committed). */
  async pendingAfterActions(connectorId: string, limit: number): Promise<{ id: string; graphMessageId: string; afterAction: AfterAction }[]> {
    const rows = await this.deps.repository.pendingAfterActions(this.deps.db, connectorId, limit)
    return rows.filter((row) => row.graphMessageId && row.afterAction).map((row) => ({ id: row.id, graphMessageId: row.graphMessageId!, afterAction: row.afterAction! }))
  }

  /** Counts an attempt if the action is still as `seen`; the claimed state, or undefined when another got there first. */
  async claimAfterAction(id: string, seen: AfterAction): Promise<AfterAction | undefined> {
    const claimed: AfterAction = { ...seen, attempts: seen.attempts + 1 }
    return (await this.deps.repository.replaceAfterAction(this.deps.db, id, seen, claimed)) ? claimed : undefined
  }

  /** Records an attempt's result, unless the action changed since it was claimed. */
  async recordAfterAction(id: string, claimed: AfterAction, result: AfterAction): Promise<void> {
    await this.deps.repository.replaceAfterAction(this.deps.db, id, claimed, result)
  }

  private async storeGraph(message: GraphMessageInput) {
    const source = Buffer.from(JSON.stringify(message))
    const mail = storable(fromGraphMessage(message))
    const blob = await this.deps.store.write(this.deps.db, source)
    return { blob, hash: oneShotHash('sha256', source), mail }
  }

  private async storeMime(source: AsyncIterable<Buffer>) {
    const hash = createHash('sha256')
    const parserInput = new PassThrough({ highWaterMark: 256 * 1024 })
    const limit = this.deps.sizeLimit
    async function* teed(): AsyncGenerator<Buffer> {
      let size = 0
      try {
        for await (const chunk of source) {
          size += chunk.length
          if (size > limit) throw new PayloadTooLargeError(`The message is larger than MESSAGE_SIZE_LIMIT (${limit} bytes)`, { limit })
          hash.update(chunk)
          if (!parserInput.write(chunk)) await new Promise((resolve) => parserInput.once('drain', resolve))
          yield chunk
        }
        parserInput.end()
      } finally {
        // Storage stopped early (a size limit, a failed write): the parser must not wait for more.
        if (!parserInput.writableEnded) parserInput.destroy()
      }
    }
    const parsing = parseMime(parserInput)
    // The parser settles either way; keep its rejection from going unhandled while storage fails.
    parsing.catch(() => {})
    const blob = await this.deps.store.writeStream(this.deps.db, teed())
    const mail = storable(await parsing)
    return { blob, hash: hash.digest('hex'), mail }
  }

  private async requireAcceptingConnector(connectorId: string): Promise<IngestConnector> {
    const connector = await this.deps.connectors.find(this.deps.db, connectorId)
    if (!connector) throw new NotFoundError('connector', connectorId)
    if (connector.direction !== 'incoming') {
      throw new ConnectorNotAcceptingMailError(`Connector ${connectorId} is an outgoing connector; mail is taken in by incoming connectors only.`, { connectorId, state: 'outgoing' })
    }
    if (!connector.enabled) {
      const reason = connector.disabledReason ? `disabled: ${connector.disabledReason}` : 'disabled'
      throw new ConnectorNotAcceptingMailError(`Connector ${connectorId} is ${reason}. Test and enable it first.`, { connectorId, state: 'disabled' })
    }
    return connector
  }

  /**
   * The pipeline proper, from dedupe to outcome, for a source already stored and parsed:
   * what both intake formats (and the mailbox sync) end in.
   */
  async accept(
    connectorId: string,
    format: 'mime' | 'graph',
    blob: { blobId: string; size: number },
    sourceHash: string,
    mail: ParsedMail,
    options: {
      /** The connector, when the caller has just read it (intake checks its state first). */
      connector?: IngestConnector
      /** Mail the mailbox sync took in: the message's immutable id and the connector's after-processing action. */
      synced?: { graphMessageId: string; afterProcessing: string | null }
    } = {},
  ): Promise<Accepted> {
    const scope = dedupeScope(this.deps.settings.dedupeScope, connectorId)
    const keys = dedupeKeys(mail, sourceHash)
    const row = this.newRow(newId(), connectorId, format, blob, sourceHash, keys, mail)
    if (options.synced) {
      row.graphMessageId = options.synced.graphMessageId
      if (options.synced.afterProcessing) row.afterAction = { action: options.synced.afterProcessing, state: 'pending', attempts: 0, lastError: null, doneAt: null }
    }
    const fast = await this.storeDecided(row, scope, keys, mail, options.connector)
    const accepted = fast ?? (await this.storeThenProcess(row, scope, keys, sourceHash, mail))
    // An exact repeat stored nothing new: it is not counted again.
    if (accepted.row.id === row.id) this.counted(accepted.status === 200 ? 'duplicate' : accepted.row.outcome)
    return accepted
  }

  /**
   * The common case in one statement: decide from reads, then store the email with its
   * outcome, links and events at once. Undefined when that does not fit: a duplicate, a
   * bounce (it writes to the sent message too), or a decision that failed.
   */
  private async storeDecided(row: InboundEmailRow, scope: string, keys: DedupeKey[], mail: ParsedMail, connector?: IngestConnector): Promise<Accepted | undefined> {
    let decided: Awaited<ReturnType<InboundPipeline['decideNew']>>
    try {
      decided = await this.deps.pipeline.decideNew(this.deps.db, row, mail, connector)
    } catch (error) {
      this.deps.log?.error({ err: error, emailId: row.id }, 'deciding on a received email failed; it is stored and processed again by recovery')
      return undefined
    }
    if (decided.decision.bounce) return undefined
    await this.deps.onStage?.('decided', row)
    const final: InboundEmailRow = { ...row, ...decided.result }
    const stored = await this.decidedWriter.write({ row: final, scope, keys, links: decided.result.links, events: this.deps.events.rows(decided.events), ownMail: decided.ownMail })
    return stored ? { status: 201, row: final, links: decided.result.links } : undefined
  }

  /**
   * Store first (`received`, dedupe keys claimed), then process in a second transaction:
   * duplicates are recorded here, and an email a crash or failure leaves `received` is
   * finished by recovery.
   */
  private async storeThenProcess(row: InboundEmailRow, scope: string, keys: DedupeKey[], sourceHash: string, mail: ParsedMail): Promise<Accepted> {
    const id = row.id
    let duplicate: { originalId: string; way: DedupeWay } | undefined
    try {
      await this.deps.db.transaction(async (tx) => {
        await this.deps.repository.insert(tx, row)
        const taken = await this.deps.repository.claimKeys(tx, scope, keys, id)
        if (taken.includes('source')) throw new ExactRepeat()
        if (taken.length === 0) return
        const owners = await this.deps.repository.keyOwners(tx, scope, keys.filter((key) => taken.includes(key.kind)))
        const first = owners.find((owner) => owner.originalId !== id)!
        duplicate = { originalId: first.originalId, way: first.kind }
        await this.deps.repository.update(tx, id, {
          outcome: 'duplicate',
          outcomeReason: first.kind,
          duplicateOf: first.originalId,
          processedAt: new Date(),
          steps: [{ step: 'dedupe', result: 'duplicate', detail: `same ${describeWay(first.kind)} as email ${first.originalId} (scope ${scopeName(scope)})` }],
        })
        await this.deps.pipeline.recordDuplicate(tx, id, row.connectorId, first.originalId, first.kind)
      })
    } catch (error) {
      if (!(error instanceof ExactRepeat)) throw error
      const earlier = await this.deps.repository.findBySourceKey(this.deps.db, scope, sourceHash)
      if (!earlier) throw error
      const original = earlier.duplicateOf ?? earlier.id
      // Another mailbox item with the same bytes (a copy in a second synced folder), or this item
      // taken by another connector: a duplicate, but with its own row, so the sync knows it and
      // its after-processing runs.
      if (row.graphMessageId && (earlier.graphMessageId !== row.graphMessageId || earlier.connectorId !== row.connectorId)) return this.storeSyncedCopy(row, original)
      return { status: 200, duplicateOf: original, way: 'source', row: earlier }
    }
    if (duplicate) return { status: 200, duplicateOf: duplicate.originalId, way: duplicate.way, row: (await this.deps.repository.find(this.deps.db, id))! }

    await this.deps.onStage?.('stored', row)
    try {
      const result = await this.deps.pipeline.process(this.deps.db, row, mail)
      // Undefined: recovery in another instance took it first; read what it decided.
      if (result) return { status: 201, row: { ...row, ...result }, links: result.links }
    } catch (error) {
      // Stored and safe: recovery processes it again; the caller learns it is still `received`.
      this.deps.log?.error({ err: error, emailId: id }, 'processing a received email failed; recovery will retry it')
    }
    return { status: 201, row: (await this.deps.repository.find(this.deps.db, id))! }
  }

  private async storeSyncedCopy(row: InboundEmailRow, originalId: string): Promise<Accepted> {
    const copy: InboundEmailRow = {
      ...row,
      outcome: 'duplicate',
      outcomeReason: 'source',
      duplicateOf: originalId,
      processedAt: new Date(),
      steps: [{ step: 'dedupe', result: 'duplicate', detail: `same source as email ${originalId}, a separate item in the mailbox` }],
    }
    try {
      await this.deps.db.transaction(async (tx) => {
        await this.deps.repository.insert(tx, copy)
        await this.deps.pipeline.recordDuplicate(tx, copy.id, copy.connectorId, originalId, 'source')
      })
    } catch (error) {
      // Another sync stored this very item a moment ago: that row stands.
      if (databaseErrorCode(error) !== '23505') throw error
      const stored = await this.deps.repository.findSynced(this.deps.db, row.connectorId, row.graphMessageId!)
      if (!stored) throw error
      return { status: 200, duplicateOf: stored.duplicateOf ?? stored.id, way: 'source', row: stored }
    }
    return { status: 200, duplicateOf: originalId, way: 'source', row: copy }
  }

  /**
   * What intake answers: the email as the API shows it, its headers and bodies from the mail
   * just parsed (a duplicate of the exact source is the same mail).
   */
  async answer(accepted: Accepted, mail: ParsedMail): Promise<IngestResult> {
    const links = accepted.links ?? (await this.deps.repository.linksOf(this.deps.db, [accepted.row.id]))
    const email = presentEmail(accepted.row, links, mail)
    return accepted.status === 201 ? { status: 201, email } : { status: 200, duplicate: { duplicateOf: accepted.duplicateOf, way: accepted.way, email } }
  }

  private newRow(id: string, connectorId: string, format: 'mime' | 'graph', blob: { blobId: string; size: number }, sourceHash: string, keys: ReturnType<typeof dedupeKeys>, mail: ParsedMail): InboundEmailRow {
    return {
      id,
      connectorId,
      sourceFormat: format,
      sourceBlobId: blob.blobId,
      sourceSize: blob.size,
      sourceHash,
      contentHash: keys.find((key) => key.kind === 'content')!.hash,
      identityHash: keys.find((key) => key.kind === 'identity')?.hash ?? null,
      internetMessageId: mail.messageId,
      inReplyTo: mail.inReplyTo,
      references: mail.references,
      subject: mail.subject,
      fromAddress: mail.from?.address ?? null,
      fromName: mail.from?.name ?? null,
      senderAddress: mail.sender?.address ?? null,
      returnPath: mail.returnPath,
      toAddresses: mail.to,
      ccAddresses: mail.cc,
      bccAddresses: mail.bcc,
      replyTo: mail.replyTo,
      importance: mail.importance,
      sentAt: mail.date,
      attachments: mail.attachments,
      parseProblems: mail.problems,
      outcome: 'received',
      outcomeReason: null,
      duplicateOf: null,
      automated: null,
      suppressAutomatedAnswer: false,
      testMode: false,
      receivedAt: new Date(),
      processedAt: null,
      processingAttempts: 0,
      graphMessageId: null,
      afterAction: null,
      steps: [{ step: 'dedupe', result: 'unique', detail: `no earlier email with the same source, content or Message-ID (scope ${scopeName(dedupeScope(this.deps.settings.dedupeScope, connectorId))})` }],
    }
  }

  /** The stored source parsed again: what recovery and reprocessing run the pipeline on. */
  private async parseStored(row: Pick<InboundEmailRow, 'sourceFormat' | 'sourceBlobId'>): Promise<ParsedMail> {
    if (row.sourceFormat === 'mime') return storable(await parseMime(this.deps.store.chunks(this.deps.db, row.sourceBlobId)))
    const source = await this.deps.store.read(this.deps.db, row.sourceBlobId)
    return storable(fromGraphMessage(JSON.parse(source.toString('utf8')) as GraphMessageInput))
  }

  /** Finishes emails a crash left `received`; each exactly once, whichever instance gets to it. */
  async recoverUnfinished(options: { olderThanMs: number; limit: number }): Promise<number> {
    const ids = await this.deps.repository.unfinished(this.deps.db, new Date(Date.now() - options.olderThanMs), options.limit)
    let finished = 0
    for (const id of ids) {
      const attempts = await this.deps.repository.countAttempt(this.deps.db, id)
      if (attempts === 0) continue
      try {
        if (attempts > MAX_PROCESSING_ATTEMPTS) {
          if (await this.deps.pipeline.giveUp(this.deps.db, id, `processing failed ${MAX_PROCESSING_ATTEMPTS} times`)) {
            finished++
            this.counted('unhandled')
          }
          continue
        }
        const row = await this.deps.repository.find(this.deps.db, id)
        if (!row || row.outcome !== 'received') continue
        const result = await this.deps.pipeline.process(this.deps.db, row, await this.parseStored(row))
        if (result) {
          finished++
          this.counted(result.outcome)
        }
      } catch (error) {
        this.deps.log?.error({ err: error, emailId: id, attempts }, 'recovering a received email failed; it is retried later')
      }
    }
    return finished
  }

  async list(query: ListInboundInput): Promise<PageResult<InboundEmailSummary>> {
    const rows = await this.deps.repository.list(this.deps.db, {
      connectorId: query.connectorId,
      outcome: query.outcome,
      automatedKind: query.automatedKind,
      since: query.since ? new Date(query.since) : undefined,
      until: query.until ? new Date(query.until) : undefined,
      workItemRef: query.workItemRef,
      from: query.from,
      beforeId: decodeCursor(query.cursor),
      limit: query.limit,
    })
    const page = toPage(rows, query.limit)
    const links = await this.deps.repository.linksOf(this.deps.db, page.items.map((row) => row.id))
    return { ...page, items: page.items.map((row) => presentSummary(row, links.filter((link) => link.emailId === row.id))) }
  }

  /** One email with its headers and bodies, which come from its source, parsed again. */
  async get(id: string): Promise<InboundEmail> {
    const row = await this.deps.repository.find(this.deps.db, id)
    if (!row) throw new NotFoundError('inbound email', id)
    const [links, mail] = await Promise.all([this.deps.repository.linksOf(this.deps.db, [row.id]), this.parseStored(row)])
    return presentEmail(row, links, mail)
  }

  /** The stored source: RFC 5322 bytes, or Graph's JSON for mail taken in as JSON. */
  async source(id: string): Promise<{ format: 'mime' | 'graph'; size: number; content: AsyncIterable<Buffer> }> {
    const row = await this.deps.repository.find(this.deps.db, id)
    if (!row) throw new NotFoundError('inbound email', id)
    return { format: row.sourceFormat, size: row.sourceSize, content: this.deps.store.chunks(this.deps.db, row.sourceBlobId) }
  }

  async attachment(id: string, index: number): Promise<{ name: string; contentType: string; size: number; content: AsyncIterable<Buffer> }> {
    const row = await this.deps.repository.find(this.deps.db, id)
    const meta = row?.attachments[index]
    if (!row || !meta) throw new NotFoundError('attachment', `${id}/${index}`)
    if (row.sourceFormat === 'graph') {
      const message = JSON.parse((await this.deps.store.read(this.deps.db, row.sourceBlobId)).toString('utf8')) as GraphMessageInput
      const bytes = Buffer.from(message.attachments?.[index]?.contentBytes ?? '', 'base64')
      return { ...meta, content: Readable.from([bytes]) }
    }
    return { ...meta, content: attachmentContent(this.deps.store.chunks(this.deps.db, row.sourceBlobId), index) }
  }

  /** The work-management system names the work item a request became; later replies thread to it. */
  async confirmWorkItem(actor: Actor, id: string, input: ConfirmWorkItemInput): Promise<InboundEmail> {
    await this.deps.db.transaction(async (tx) => {
      const row = await this.deps.repository.lock(tx, id, { receivedOnly: false })
      if (!row) throw new NotFoundError('inbound email', id)
      const link = (await this.deps.repository.linksOf(tx, [id])).find((entry) => entry.kind === 'requested' && entry.routeId === input.routeId)
      if (!link) throw new NoSuchRequestError(`Email ${id} requested no work through route ${input.routeId}.`, { field: 'routeId' })
      if (link.workItemRef === input.workItemRef) return
      if (link.workItemRef !== null) {
        throw new WorkItemAlreadyConfirmedError(`The request through route ${input.routeId} is already work item ${link.workItemRef}.`, { workItemRef: link.workItemRef })
      }
      await this.deps.repository.confirmLink(tx, link.id, input.workItemRef, new Date())
      await this.deps.audit.record(tx, actor, {
        action: 'confirm_work_item',
        resourceType: 'inbound_email',
        resourceId: id,
        after: { routeId: input.routeId, workItemRef: input.workItemRef },
      })
    })
    return this.get(id)
  }

  async reprocess(actor: Actor, id: string): Promise<{ before: InboundEmail['outcome']; email: InboundEmail }> {
    const row = await this.deps.repository.find(this.deps.db, id)
    if (!row) throw new NotFoundError('inbound email', id)
    if (row.outcome === 'duplicate') throw new DuplicateEmailError(`Email ${id} is a duplicate of ${row.duplicateOf}; reprocess that one.`, { duplicateOf: row.duplicateOf })
    const result = await this.deps.pipeline.reprocess(this.deps.db, id, await this.parseStored(row), async (tx) => {
      await this.deps.audit.record(tx, actor, { action: 'reprocess', resourceType: 'inbound_email', resourceId: id, before: { outcome: row.outcome } })
    })
    return { before: result?.before ?? row.outcome, email: await this.get(id) }
  }

  /** A route from an email (its recipient, or a wildcard route for its sender), then optionally re-applied. */
  async routeFrom(actor: Actor, id: string, input: CreateRouteFromEmailInput): Promise<{ routeId: string } & ReapplyResult> {
    const row = await this.deps.repository.find(this.deps.db, id)
    if (!row) throw new NotFoundError('inbound email', id)
    const recipients = [...row.toAddresses, ...row.ccAddresses]
    let emailAddress: string
    let rules: CreateRouteInput['rules']
    if (input.match === 'recipient') {
      const wanted = input.emailAddress?.toLowerCase() ?? recipients[0]
      if (!wanted || !recipients.includes(wanted)) {
        throw new RecipientNotOnEmailError(
          wanted ? `${wanted} is not among the To/Cc addresses of email ${id}.` : `Email ${id} has no To/Cc address; create a sender route instead.`,
          { field: 'emailAddress', recipients },
        )
      }
      emailAddress = wanted
    } else {
      if (!row.fromAddress) throw new RecipientNotOnEmailError(`Email ${id} names no sender.`, { field: 'match' })
      emailAddress = '*'
      rules = { senderIncludes: [row.fromAddress] }
    }
    const route = await this.deps.routes.create(actor, {
      connectorId: row.connectorId,
      name: input.name ?? (input.match === 'recipient' ? `Mail to ${emailAddress}` : `Mail from ${row.fromAddress}`),
      emailAddress,
      workItemType: input.workItemType,
      processId: input.processId,
      ...(input.ticketCategory ? { ticketCategory: input.ticketCategory } : {}),
      ...(rules ? { rules } : {}),
    })
    if (!input.reapply) return { routeId: route.id, reapplied: 0, changed: 0, nextAfterId: null }
    return { routeId: route.id, ...(await this.reapply(actor, { connectorId: row.connectorId, ...input.reapply })) }
  }

  /**
   * Runs a connector's unhandled emails received in a range through the pipeline again (after
   * a route or blocked-address change), at most REAPPLY_LIMIT per call in id order; pass the
   * answer's `nextAfterId` as `afterId` to go on. Audited.
   */
  async reapply(actor: Actor, input: ReapplyInput): Promise<ReapplyResult> {
    const range = { connectorId: input.connectorId, since: new Date(input.since), until: new Date(input.until), afterId: input.afterId }
    const ids = await this.deps.repository.unhandledIn(this.deps.db, range, REAPPLY_LIMIT + 1)
    const batch = ids.slice(0, REAPPLY_LIMIT)
    let changed = 0
    for (const emailId of batch) {
      const email = await this.deps.repository.find(this.deps.db, emailId)
      if (!email) continue
      const result = await this.deps.pipeline.reprocess(this.deps.db, emailId, await this.parseStored(email))
      if (result && result.after !== result.before) changed++
    }
    const nextAfterId = ids.length > REAPPLY_LIMIT ? batch.at(-1)! : null
    await this.deps.audit.record(this.deps.db, actor, {
      action: 'reapply',
      resourceType: 'connector',
      resourceId: input.connectorId,
      details: { since: input.since, until: input.until, afterId: input.afterId ?? null, reapplied: batch.length, changed },
    })
    return { reapplied: batch.length, changed, nextAfterId }
  }
}

function describeWay(way: DedupeWay): string {
  return way === 'source' ? 'source bytes' : way === 'content' ? 'visible content' : 'Message-ID, sender, subject and recipients'
}

function scopeName(scope: string): string {
  return scope === '*' ? 'global' : `connector ${scope}`
}
