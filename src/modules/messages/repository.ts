import { and, desc, eq, gt, lt, sql, type SQL } from 'drizzle-orm'
import { idempotencyKeys, outboundAttachments, outboundMessages } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'

export type MessageRow = typeof outboundMessages.$inferSelect
export type NewMessage = typeof outboundMessages.$inferInsert
export type NewAttachment = typeof outboundAttachments.$inferInsert
export type IdempotencyRow = typeof idempotencyKeys.$inferSelect

export interface AttachmentInfo {
  messageId: string
  name: string
  contentType: string
  size: number
  isInline: boolean
}

export class MessageRepository {
  async insert(executor: Db, message: NewMessage, attachments: NewAttachment[]): Promise<Pick<MessageRow, 'id' | 'status' | 'createdAt'>> {
    const [row] = await executor
      .insert(outboundMessages)
      .values({ ...message, attachmentCount: attachments.length })
      .returning({ id: outboundMessages.id, status: outboundMessages.status, createdAt: outboundMessages.createdAt })
    if (attachments.length > 0) await executor.insert(outboundAttachments).values(attachments)
    return row!
  }

  async findById(executor: Db, id: string, options: { forUpdate?: boolean } = {}): Promise<MessageRow | undefined> {
    const query = executor.select().from(outboundMessages).where(eq(outboundMessages.id, id)).limit(1)
    const [row] = options.forUpdate ? await query.for('update') : await query
    return row
  }

  async list(executor: Db, filter: { status?: string; connectorId?: string; workItemRef?: string; beforeId?: string; limit: number }) {
    const conditions: SQL[] = []
    if (filter.status) conditions.push(eq(outboundMessages.status, filter.status as MessageRow['status']))
    if (filter.connectorId) conditions.push(eq(outboundMessages.connectorId, filter.connectorId))
    if (filter.workItemRef) conditions.push(eq(outboundMessages.workItemRef, filter.workItemRef))
    if (filter.beforeId) conditions.push(lt(outboundMessages.id, filter.beforeId))
    return executor
      .select()
      .from(outboundMessages)
      .where(and(...conditions))
      .orderBy(desc(outboundMessages.id))
      .limit(filter.limit + 1)
  }

  /** Attachment metadata only: the content stays in the database until it is sent. */
  async attachmentInfo(executor: Db, messageIds: string[]): Promise<AttachmentInfo[]> {
    if (messageIds.length === 0) return []
    return executor
      .select({
        messageId: outboundAttachments.messageId,
        name: outboundAttachments.name,
        contentType: outboundAttachments.contentType,
        size: outboundAttachments.size,
        isInline: outboundAttachments.isInline,
      })
      .from(outboundAttachments)
      .where(sql`${outboundAttachments.messageId} in ${messageIds}`)
      .orderBy(outboundAttachments.messageId, outboundAttachments.position)
  }

  async update(executor: Db, id: string, changes: Partial<NewMessage>): Promise<MessageRow> {
    const [row] = await executor.update(outboundMessages).set(changes).where(eq(outboundMessages.id, id)).returning()
    return row!
  }

  /**
   * Claims the idempotency key for this request. If another request holds it, this waits
   * for that one to commit (the primary key makes it) and returns what it stored.
   */
  async claimIdempotencyKey(executor: Db, row: typeof idempotencyKeys.$inferInsert, freshAfter: Date) {
    await executor
      .delete(idempotencyKeys)
      .where(and(eq(idempotencyKeys.apiKeyId, row.apiKeyId), eq(idempotencyKeys.key, row.key), lt(idempotencyKeys.createdAt, freshAfter)))
    const inserted = await executor.insert(idempotencyKeys).values(row).onConflictDoNothing().returning()
    if (inserted.length > 0) return { claimed: true as const }
    const [existing] = await executor
      .select()
      .from(idempotencyKeys)
      .where(and(eq(idempotencyKeys.apiKeyId, row.apiKeyId), eq(idempotencyKeys.key, row.key), gt(idempotencyKeys.createdAt, freshAfter)))
      .limit(1)
    return { claimed: false as const, existing }
  }

  async storeIdempotentResponse(executor: Db, apiKeyId: string, key: string, status: number, body: Record<string, unknown>) {
    await executor
      .update(idempotencyKeys)
      .set({ responseStatus: status, responseBody: body })
      .where(and(eq(idempotencyKeys.apiKeyId, apiKeyId), eq(idempotencyKeys.key, key)))
  }
}
