import { createHash } from 'node:crypto'
import type { Placeholder } from 'drizzle-orm'
import type { MessageStatus } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { capabilitiesOf, GRAPH_LIMITS } from '../../graph/limits.ts'
import { ConflictError, NotFoundError, ValidationError } from '../../lib/errors.ts'
import { newId } from '../../lib/ids.ts'
import { decodeCursor, toPage, type PageResult } from '../../lib/schemas.ts'
import type { AttachmentStore } from '../attachments/store.ts'
import { IdempotencyKeyReusedError, MessageStateError, SenderNotAllowedError } from './errors.ts'
import type { IdempotencyRepository } from './idempotency-repository.ts'
import type { AttachmentInfo, NewAttachment, OutboundAttachmentRepository } from './attachment-repository.ts'
import type { MessageRepository, MessageRow, SenderQuery } from './message-repository.ts'
import { MAX_ATTACHMENTS, type ListMessagesInput, type Message, type SendMessageInput } from './schemas.ts'
import { SizeRules } from './size-rules.ts'

export const IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000
export const WORK_ITEM_HEADER = 'x-mailgate-work-item'

/** What submitting needs to know about a sending address (the email-routes module answers). */
export interface Sender {
  routeId: string
  routeEnabled: boolean
  connectorId: string
  connectorEnabled: boolean
  integrationId: string
}

export interface SenderDirectory {
  findSender(executor: Db, address: string): Promise<Sender | undefined>
  /** findSender as a query to build into the submit statement (a Sender's fields, at most one row). */
  senderQuery(db: Db, address: Placeholder): SenderQuery
}

/** What submitting needs to know of an integration: the permissions its latest successful test saw. */
export interface IntegrationRoles {
  state(executor: Db, integrationId: string): Promise<{ roles: string[] } | undefined>
}

/** A file that arrives as a stream (a multipart part), read once, as it comes. */
/** A file streamed in beside the message, its name and types already checked by the API's rules. */
export interface IncomingFile {
  name: string
  contentType: string
  /** Set for an inline image: the body refers to it as cid:<contentId>. */
  contentId?: string
  content: AsyncIterable<Buffer>
}

/** A streamed file already written to the attachment store, not yet owned by a message. */
interface StagedFile {
  name: string
  contentType: string
  contentId: string | null
  size: number
  sha256: string
  blobId: string
}

type PreparedAttachment = Omit<NewAttachment, 'messageId' | 'blobId'> & ({ content: Buffer } | { blobId: string })

export interface SubmitResult {
  /** Only 202 is ever stored and replayed: a refused request leaves no trace under its key. */
  status: 202
  body: { id: string; status: MessageStatus; createdAt: string }
  replayed: boolean
}

/** Key order does not change what a request means. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`)
      .join(',')}}`
  }
  return JSON.stringify(value)
}

/** support@contoso.com + WI-42 -> support+WI-42@contoso.com: replies carry the reference back. */
export function plusAddress(address: string, reference: string): string {
  const at = address.lastIndexOf('@')
  return `${address.slice(0, at)}+${reference}${address.slice(at)}`
}

export interface MessageServiceDeps {
  db: Db
  repository: MessageRepository
  attachmentRows: OutboundAttachmentRepository
  idempotency: IdempotencyRepository
  senders: SenderDirectory
  integrations: IntegrationRoles
  attachments: Pick<AttachmentStore, 'write' | 'writeStream' | 'remove'>
  /** Largest total message size in bytes (MESSAGE_SIZE_LIMIT). */
  sizeLimit: number
}

export class MessageService {
  private readonly deps: MessageServiceDeps
  private readonly submitAlone: ReturnType<MessageRepository['prepareSubmit']>
  private readonly submitKeyed: ReturnType<MessageRepository['prepareSubmit']>

  constructor(deps: MessageServiceDeps) {
    this.deps = deps
    const senderQuery = (address: Placeholder) => deps.senders.senderQuery(deps.db, address)
    this.submitAlone = deps.repository.prepareSubmit(deps.db, senderQuery, { idempotent: false })
    this.submitKeyed = deps.repository.prepareSubmit(deps.db, senderQuery, { idempotent: true })
  }

  get sizeLimit(): number {
    return this.deps.sizeLimit
  }

  /**
   * Validates and stores a message with its attachments in one transaction, queued for the
   * dispatcher. With an Idempotency-Key, the same key and body replay the first answer.
   */
  async submit(apiKeyId: string, input: SendMessageInput, idempotencyKey?: string): Promise<SubmitResult> {
    // Only a key's claim records the hash, so only then is it worked out.
    return this.record(apiKeyId, input, [], idempotencyKey === undefined ? '' : requestHash(input), idempotencyKey)
  }

  /**
   * Like submit, with more attachments arriving as streams (multipart uploads). The sender and
   * recipients are checked before the first file byte is read; each file is written to the
   * attachment store as it streams in and refused at the byte that breaks a size rule; then the
   * message takes the staged files in one transaction. Staged files that no message took (a
   * refusal, a replay) are removed; if the process dies first, housekeeping does it.
   */
  async submitWithFiles(
    apiKeyId: string,
    input: SendMessageInput,
    files: AsyncIterable<IncomingFile>,
    idempotencyKey?: string,
  ): Promise<SubmitResult> {
    const staged: StagedFile[] = []
    try {
      const { attachments, rules } = await this.prepare(this.deps.db, input, [], { filesFollow: true })
      for await (const file of files) staged.push(await this.stage(file, attachments.length + staged.length, rules))
      // Without files the request means what the same JSON body means, and hashes the same.
      const hash =
        idempotencyKey === undefined
          ? ''
          : staged.length === 0
            ? requestHash(input)
            : requestHash({ message: input, files: staged.map(({ name, contentType, contentId, sha256 }) => ({ name, contentType, contentId, sha256 })) })
      const result = await this.record(apiKeyId, input, staged, hash, idempotencyKey)
      if (result.replayed) await this.discard(staged)
      return result
    } catch (error) {
      await this.discard(staged)
      throw error
    }
  }

  private async record(
    apiKeyId: string,
    input: SendMessageInput,
    staged: StagedFile[],
    hash: string,
    idempotencyKey: string | undefined,
  ): Promise<SubmitResult> {
    // The answer is known before anything is stored, so the key's claim records it: no update afterwards.
    const id = newId()
    const createdAt = new Date()
    const body: SubmitResult['body'] = { id, status: 'queued', createdAt: createdAt.toISOString() }
    const freshAfter = new Date(createdAt.getTime() - IDEMPOTENCY_WINDOW_MS)
    if (staged.length === 0 && !input.attachments?.length) {
      // A message alone is one prepared statement that checks the sender, claims the key if
      // there is one, and inserts: atomic by itself, no transaction. The integration's
      // permissions matter only for attachments.
      const { message } = this.shape(input, { canUseDrafts: false })
      const queued = { id, status: 'queued' as const, createdByKeyId: apiKeyId, ...message, attachmentCount: 0, createdAt, updatedAt: createdAt, nextAttemptAt: createdAt }
      const row = idempotencyKey
        ? await this.submitKeyed(queued, { key: idempotencyKey, requestHash: hash, responseBody: body, freshAfter })
        : await this.submitAlone(queued)
      if (row.messageId) return { status: 202, body, replayed: false }
      const refusal = senderRefusal(message.fromAddress, row.routeId === null ? undefined : (row as Sender))
      if (idempotencyKey) {
        // Taken by an earlier request (a retry, most likely): its answer stands even if the sender changed since.
        const earlier = await this.deps.idempotency.findFresh(this.deps.db, apiKeyId, idempotencyKey, freshAfter)
        if (earlier || !refusal) return replay(earlier, hash)
      }
      // Nothing stored: the sender may not send (an allowed sender without a key always inserts).
      throw refusal ?? new ConflictError('The message could not be stored; retry.')
    }
    return this.deps.db.transaction(async (tx) => {
      if (idempotencyKey) {
        const claim = await this.deps.idempotency.claim(
          tx,
          { apiKeyId, key: idempotencyKey, requestHash: hash, responseStatus: 202, responseBody: body },
          freshAfter,
        )
        if (!claim.claimed) return replay(claim.existing, hash)
      }
      const prepared = await this.prepare(tx, input, staged)
      const attachments: NewAttachment[] = []
      for (const attachment of prepared.attachments) {
        if ('blobId' in attachment) {
          attachments.push({ ...attachment, messageId: id })
        } else {
          const { content, ...rest } = attachment
          const { blobId } = await this.deps.attachments.write(tx, content)
          attachments.push({ ...rest, messageId: id, blobId })
        }
      }
      await this.deps.repository.insert(tx, {
        id,
        status: 'queued',
        createdByKeyId: apiKeyId,
        ...prepared.message,
        attachmentCount: attachments.length,
        createdAt,
        updatedAt: createdAt,
        nextAttemptAt: createdAt,
      })
      await this.deps.attachmentRows.insert(tx, attachments)
      return { status: 202, body, replayed: false }
    })
  }

  /** Writes one streamed file to the attachment store, checking the size rules as its bytes arrive. */
  private async stage(file: IncomingFile, position: number, rules: SizeRules): Promise<StagedFile> {
    const field = `attachments.${position}`
    if (position >= MAX_ATTACHMENTS) {
      throw new ValidationError([{ field: 'attachments', message: `a message may have at most ${MAX_ATTACHMENTS} attachments, base64 and file parts together` }])
    }
    const name = file.name
    const attachment = { field, name, isInline: file.contentId !== undefined }
    const sha256 = createHash('sha256')
    let size = 0
    let failure: unknown
    // A stream that threw through writeStream would take the id of the blob it staged with it,
    // so a broken rule or a broken upload ends the stream here and is thrown once the blob is gone.
    async function* checked(): AsyncGenerator<Buffer> {
      try {
        for await (const data of file.content) {
          size += data.length
          rules.check(attachment, size)
          sha256.update(data)
          yield data
        }
      } catch (error) {
        failure = error
      }
    }
    const { blobId } = await this.deps.attachments.writeStream(this.deps.db, checked())
    const staged = { name, contentType: file.contentType, contentId: file.contentId ?? null, size, sha256: sha256.digest('hex'), blobId }
    if (failure !== undefined) {
      await this.discard([staged])
      throw failure
    }
    rules.add(size)
    return staged
  }

  /** Best effort: whatever is left is removed later by housekeeping. */
  private async discard(staged: StagedFile[]): Promise<void> {
    await this.deps.attachments.remove(this.deps.db, staged.map((file) => file.blobId)).catch(() => {})
  }

  async list(query: ListMessagesInput): Promise<PageResult<Message>> {
    const rows = await this.deps.repository.list(this.deps.db, { ...query, beforeId: decodeCursor(query.cursor) })
    const page = toPage(rows, query.limit)
    return { items: await this.present(page.items), nextCursor: page.nextCursor }
  }

  async get(id: string): Promise<Message> {
    const row = await this.deps.repository.findById(this.deps.db, id)
    if (!row) throw new NotFoundError('message', id)
    return (await this.present([row]))[0]!
  }

  /** Only a queued message can be cancelled: once sending began, it may already be out. */
  async cancel(id: string): Promise<Message> {
    const row = await this.deps.db.transaction(async (tx) => {
      const existing = await this.deps.repository.findById(tx, id, { forUpdate: true })
      if (!existing) throw new NotFoundError('message', id)
      if (existing.status === 'cancelled') return existing
      if (existing.status !== 'queued') {
        throw new MessageStateError(`The message is ${existing.status}; only a queued message can be cancelled.`, { messageStatus: existing.status })
      }
      return this.deps.repository.update(tx, id, { status: 'cancelled', updatedAt: new Date(), leaseOwner: null, leaseExpiresAt: null })
    })
    return (await this.present([row]))[0]!
  }

  /** Queues a failed or uncertain message again, by hand: for uncertain ones, after checking it did not go out. */
  async retry(id: string): Promise<Message> {
    const row = await this.deps.db.transaction(async (tx) => {
      const existing = await this.deps.repository.findById(tx, id, { forUpdate: true })
      if (!existing) throw new NotFoundError('message', id)
      if (existing.status === 'queued') return existing
      if (existing.status !== 'failed' && existing.status !== 'uncertain') {
        throw new MessageStateError(`The message is ${existing.status}; only failed or uncertain messages can be retried.`, {
          messageStatus: existing.status,
        })
      }
      // A person decided to send again: the dispatcher must not stop at the earlier, unresolved
      // send request, and the attempt count starts over. A draft id stays, so a draft that did
      // go out after all is still found and recorded instead of sent twice.
      const { sendRequestedAt: _decided, ...graphIds } = existing.graphIds
      return this.deps.repository.update(tx, id, { status: 'queued', attempts: 0, graphIds, nextAttemptAt: new Date(), updatedAt: new Date() })
    })
    return (await this.present([row]))[0]!
  }

  /**
   * Checks a message against the sender, recipient and size rules and shapes it for storage.
   * Runs before streamed files are read (without them) and again inside the storing transaction.
   */
  private async prepare(executor: Db, input: SendMessageInput, staged: StagedFile[] = [], options: { filesFollow?: boolean } = {}) {
    const from = input.from.toLowerCase()
    const sender = allowedSender(from, await this.deps.senders.findSender(executor, from))
    // The granted permissions decide only how attachments may travel.
    const hasAttachments = options.filesFollow || staged.length > 0 || (input.attachments?.length ?? 0) > 0
    const state = hasAttachments ? await this.deps.integrations.state(executor, sender.integrationId) : undefined
    const shaped = this.shape(input, { canUseDrafts: capabilitiesOf(state?.roles ?? []).readWrite, staged })
    return { ...shaped, message: { ...shaped.message, connectorId: sender.connectorId, routeId: sender.routeId } }
  }

  /** The recipient and size rules, and the message as it is stored, less its sender's connector and route. */
  private shape(input: SendMessageInput, options: { canUseDrafts: boolean; staged?: StagedFile[] }) {
    const from = input.from.toLowerCase()
    const staged = options.staged ?? []
    const lower = (list: string[] | undefined) => (list ?? []).map((address) => address.toLowerCase())
    const to = lower(input.to)
    const cc = lower(input.cc)
    const bcc = lower(input.bcc)
    const recipients = to.length + cc.length + bcc.length
    if (recipients === 0) throw new ValidationError([{ field: 'to', message: 'give at least one recipient in to, cc or bcc' }])
    if (recipients > GRAPH_LIMITS.recipientsPerMessage) {
      throw new ValidationError([{ field: 'to', message: `to, cc and bcc together may hold at most ${GRAPH_LIMITS.recipientsPerMessage} recipients; this has ${recipients}` }])
    }

    const rules = new SizeRules({
      sizeLimit: this.deps.sizeLimit,
      canUseDrafts: options.canUseDrafts,
      from,
      textBytes: Buffer.byteLength(input.subject) + Buffer.byteLength(input.body.content),
    })
    rules.checkTotal()
    const attachments: PreparedAttachment[] = []
    for (const [position, attachment] of (input.attachments ?? []).entries()) {
      const content = Buffer.from(attachment.contentBytes, 'base64')
      const field = `attachments.${position}`
      if (attachment.isInline && !attachment.contentId) {
        throw new ValidationError([{ field: `${field}.contentId`, message: 'is required for an inline attachment' }])
      }
      const isInline = attachment.isInline ?? false
      rules.check({ field, name: attachment.name, isInline }, content.length)
      rules.add(content.length)
      attachments.push({
        position,
        name: attachment.name,
        contentType: attachment.contentType ?? 'application/octet-stream',
        isInline,
        contentId: attachment.contentId ?? null,
        size: content.length,
        content,
      })
    }
    for (const file of staged) {
      const position = attachments.length
      const isInline = file.contentId !== null
      rules.check({ field: `attachments.${position}`, name: file.name, isInline }, file.size)
      rules.add(file.size)
      const { name, contentType, contentId, size, blobId } = file
      attachments.push({ position, name, contentType, isInline, contentId, size, blobId })
    }

    const headers: Record<string, string> = { ...(input.headers ?? {}) }
    let replyTo = lower(input.replyTo)
    if (input.workItemRef) {
      headers[WORK_ITEM_HEADER] = input.workItemRef
      if (replyTo.length === 0) replyTo = [plusAddress(from, input.workItemRef)]
    }
    return {
      message: {
        fromAddress: from,
        toAddresses: to,
        ccAddresses: cc,
        bccAddresses: bcc,
        replyTo,
        subject: input.subject,
        bodyType: input.body.contentType,
        body: input.body.content,
        headers,
        importance: input.importance ?? 'normal',
        workItemRef: input.workItemRef ?? null,
        totalBytes: rules.totalBytes,
      },
      attachments,
      rules,
    }
  }

  private async present(rows: MessageRow[]): Promise<Message[]> {
    const infos = await this.deps.attachmentRows.infoOf(this.deps.db, rows.map((row) => row.id))
    const byMessage = new Map<string, AttachmentInfo[]>()
    for (const info of infos) byMessage.set(info.messageId, [...(byMessage.get(info.messageId) ?? []), info])
    return rows.map((row) => ({
      id: row.id,
      status: row.status,
      connectorId: row.connectorId,
      from: row.fromAddress,
      to: row.toAddresses,
      cc: row.ccAddresses,
      bcc: row.bccAddresses,
      replyTo: row.replyTo,
      subject: row.subject,
      importance: row.importance,
      headers: row.headers,
      workItemRef: row.workItemRef,
      attachments: (byMessage.get(row.id) ?? []).map(({ name, contentType, size, isInline }) => ({ name, contentType, size, isInline })),
      totalBytes: row.totalBytes,
      attempts: row.attempts,
      lastError: row.lastError,
      graphIds: { draftId: row.graphIds.draftId ?? null, internetMessageId: row.graphIds.internetMessageId ?? null },
      nextAttemptAt: row.status === 'queued' ? row.nextAttemptAt.toISOString() : null,
      createdAt: row.createdAt.toISOString(),
      updatedAt: row.updatedAt.toISOString(),
      sentAt: row.sentAt?.toISOString() ?? null,
      bounces: row.bounces,
    }))
  }
}

function requestHash(request: unknown): string {
  return createHash('sha256').update(canonicalJson(request)).digest('hex')
}

/** Why the sender may not send now, or undefined when it may. */
function senderRefusal(from: string, sender: Sender | undefined): SenderNotAllowedError | undefined {
  if (sender && sender.routeEnabled && sender.connectorEnabled) return undefined
  const why = !sender
    ? 'no outgoing connector or alias has this address'
    : !sender.connectorEnabled
      ? `its connector ${sender.connectorId} is disabled`
      : `the alias ${sender.routeId} is not enabled (test it, then enable it)`
  return new SenderNotAllowedError(`Mailgate cannot send from ${from}: ${why}.`, { field: 'from' })
}

/** The sender, if it may send now; otherwise throws the refusal that says why not. */
function allowedSender(from: string, sender: Sender | undefined): Sender {
  const refusal = senderRefusal(from, sender)
  if (refusal) throw refusal
  return sender!
}

/** The answer an Idempotency-Key already holds, given again for the same body only. */
function replay(earlier: { requestHash: string; responseBody: unknown } | undefined, hash: string): SubmitResult {
  if (!earlier) throw new ConflictError('The Idempotency-Key is being used by a request that just failed; retry.')
  if (earlier.requestHash !== hash) {
    throw new IdempotencyKeyReusedError('This Idempotency-Key was used in the last 24 hours with a different body. Use a new key for a new message.')
  }
  return { status: 202, body: earlier.responseBody as SubmitResult['body'], replayed: true }
}
