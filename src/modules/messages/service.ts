import { createHash } from 'node:crypto'
import type { MessageStatus } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { ConflictError, NotFoundError, PayloadTooLargeError, UnprocessableError, ValidationError } from '../../lib/errors.ts'
import { newId } from '../../lib/ids.ts'
import { decodeCursor, toPage, type PageResult } from '../../lib/schemas.ts'
import type { ConnectorRepository } from '../connectors/repository.ts'
import type { EmailRouteRepository } from '../email-routes/repository.ts'
import type { IntegrationService } from '../integrations/service.ts'
import type { AttachmentStore } from './attachment-store.ts'
import type { AttachmentInfo, MessageRepository, MessageRow, NewAttachment } from './repository.ts'
import type { ListMessagesInput, Message, SendMessageInput } from './schemas.ts'

/** Graph takes attachments up to 3 MB inline in a message; larger ones need an upload session. */
export const INLINE_ATTACHMENT_LIMIT = 3 * 1024 * 1024
export const MAX_RECIPIENTS = 500
const IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000
export const WORK_ITEM_HEADER = 'x-mailgate-work-item'

export class SenderNotAllowedError extends UnprocessableError {
  override readonly code = 'SENDER_NOT_ALLOWED'
  override readonly title = 'Mailgate may not send from this address'
}

export class AttachmentNotSendableError extends UnprocessableError {
  override readonly code = 'ATTACHMENT_NOT_SENDABLE'
  override readonly title = 'An attachment cannot be sent this way'
}

export class IdempotencyKeyReusedError extends ConflictError {
  override readonly code = 'IDEMPOTENCY_KEY_REUSED'
  override readonly title = 'The Idempotency-Key was used for a different request'
}

export class MessageStateError extends ConflictError {
  override readonly code = 'MESSAGE_STATE_CONFLICT'
  override readonly title = 'The message is not in a state that allows this'
}

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
  routes: EmailRouteRepository
  connectors: ConnectorRepository
  integrations: IntegrationService
  attachments: AttachmentStore
  /** Largest total message size in bytes (MESSAGE_SIZE_LIMIT). */
  sizeLimit: number
}

export class MessageService {
  private readonly deps: MessageServiceDeps

  constructor(deps: MessageServiceDeps) {
    this.deps = deps
  }

  get sizeLimit(): number {
    return this.deps.sizeLimit
  }

  /**
   * Validates and stores a message with its attachments in one transaction, queued for the
   * dispatcher. With an Idempotency-Key, the same key and body replay the first answer.
   */
  async submit(apiKeyId: string, input: SendMessageInput, idempotencyKey?: string): Promise<SubmitResult> {
    const requestHash = createHash('sha256').update(canonicalJson(input)).digest('hex')
    return this.deps.db.transaction(async (tx) => {
      if (idempotencyKey) {
        const claim = await this.deps.repository.claimIdempotencyKey(
          tx,
          { apiKeyId, key: idempotencyKey, requestHash, responseStatus: 0, responseBody: {} },
          new Date(Date.now() - IDEMPOTENCY_WINDOW_MS),
        )
        if (!claim.claimed) {
          if (!claim.existing) throw new ConflictError('The Idempotency-Key is being used by a request that just failed; retry.')
          if (claim.existing.requestHash !== requestHash) {
            throw new IdempotencyKeyReusedError(
              'This Idempotency-Key was used in the last 24 hours with a different body. Use a new key for a new message.',
            )
          }
          return { status: 202, body: claim.existing.responseBody as SubmitResult['body'], replayed: true }
        }
      }
      const prepared = await this.prepare(tx, input)
      const id = newId()
      const attachments: NewAttachment[] = []
      for (const { content, ...attachment } of prepared.attachments) {
        const { blobId } = await this.deps.attachments.write(tx, content)
        attachments.push({ ...attachment, messageId: id, blobId })
      }
      const row = await this.deps.repository.insert(tx, { id, status: 'queued', createdByKeyId: apiKeyId, ...prepared.message }, attachments)
      const body = { id: row.id, status: row.status, createdAt: row.createdAt.toISOString() }
      if (idempotencyKey) await this.deps.repository.storeIdempotentResponse(tx, apiKeyId, idempotencyKey, 202, body)
      return { status: 202, body, replayed: false }
    })
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
        throw new MessageStateError(`The message is ${existing.status}; only a queued message can be cancelled.`, { status: existing.status })
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
          status: existing.status,
        })
      }
      return this.deps.repository.update(tx, id, { status: 'queued', nextAttemptAt: new Date(), updatedAt: new Date() })
    })
    return (await this.present([row]))[0]!
  }

  private async prepare(tx: Db, input: SendMessageInput) {
    const from = input.from.toLowerCase()
    const route = await this.deps.routes.findOutgoingByAddress(tx, from)
    const connector = route ? await this.deps.connectors.findById(tx, route.connectorId) : undefined
    if (!route || !connector || !route.enabled || !connector.enabled) {
      const why = !route
        ? 'no outgoing connector or alias has this address'
        : !connector?.enabled
          ? `its connector ${route.connectorId} is disabled`
          : `the alias ${route.id} is not enabled (test it, then enable it)`
      throw new SenderNotAllowedError(`Mailgate cannot send from ${from}: ${why}.`, { field: 'from' })
    }
    const lower = (list: string[] | undefined) => (list ?? []).map((address) => address.toLowerCase())
    const to = lower(input.to)
    const cc = lower(input.cc)
    const bcc = lower(input.bcc)
    const recipients = to.length + cc.length + bcc.length
    if (recipients === 0) throw new ValidationError([{ field: 'to', message: 'give at least one recipient in to, cc or bcc' }])
    if (recipients > MAX_RECIPIENTS) {
      throw new ValidationError([{ field: 'to', message: `to, cc and bcc together may hold at most ${MAX_RECIPIENTS} recipients; this has ${recipients}` }])
    }

    const state = await this.deps.integrations.state(tx, connector.integrationId)
    const canUseDrafts = state?.roles.includes('Mail.ReadWrite') ?? false
    const attachments: (Omit<NewAttachment, 'messageId' | 'blobId'> & { content: Buffer })[] = []
    let totalBytes = Buffer.byteLength(input.subject) + Buffer.byteLength(input.body.content)
    for (const [position, attachment] of (input.attachments ?? []).entries()) {
      const content = Buffer.from(attachment.contentBytes, 'base64')
      totalBytes += content.length
      const field = `attachments.${position}`
      if (attachment.isInline && !attachment.contentId) {
        throw new ValidationError([{ field: `${field}.contentId`, message: 'is required for an inline attachment' }])
      }
      if (content.length > INLINE_ATTACHMENT_LIMIT && attachment.isInline) {
        throw new AttachmentNotSendableError(`Inline attachments must be under 3 MB; "${attachment.name}" is ${mb(content.length)}.`, { field })
      }
      if (content.length > INLINE_ATTACHMENT_LIMIT && !canUseDrafts) {
        throw new AttachmentNotSendableError(
          `"${attachment.name}" is ${mb(content.length)}. Attachments over 3 MB are uploaded to a draft, which needs the Mail.ReadWrite permission; the integration behind ${from} has only Mail.Send. Grant Mail.ReadWrite and test the integration again, or send smaller files.`,
          { field },
        )
      }
      attachments.push({
        position,
        name: attachment.name,
        contentType: attachment.contentType ?? 'application/octet-stream',
        isInline: attachment.isInline ?? false,
        contentId: attachment.contentId ?? null,
        size: content.length,
        content,
      })
    }
    if (totalBytes > this.deps.sizeLimit) {
      throw new PayloadTooLargeError(
        `The message is ${mb(totalBytes)}; the limit is ${mb(this.deps.sizeLimit)} (MESSAGE_SIZE_LIMIT).`,
      )
    }

    const headers: Record<string, string> = { ...(input.headers ?? {}) }
    let replyTo = lower(input.replyTo)
    if (input.workItemRef) {
      headers[WORK_ITEM_HEADER] = input.workItemRef
      if (replyTo.length === 0) replyTo = [plusAddress(from, input.workItemRef)]
    }
    return {
      message: {
        connectorId: connector.id,
        routeId: route.id,
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
        totalBytes,
      },
      attachments,
    }
  }

  private async present(rows: MessageRow[]): Promise<Message[]> {
    const infos = await this.deps.repository.attachmentInfo(this.deps.db, rows.map((row) => row.id))
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
      createdAt: row.createdAt.toISOString(),
      updatedAt: row.updatedAt.toISOString(),
      sentAt: row.sentAt?.toISOString() ?? null,
    }))
  }
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`
}
