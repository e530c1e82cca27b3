import { asc, eq, sql } from 'drizzle-orm'
import { outboundAttachments } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'

export type NewAttachment = typeof outboundAttachments.$inferInsert

export interface AttachmentInfo {
  messageId: string
  name: string
  contentType: string
  size: number
  isInline: boolean
}

export interface AttachmentToSend {
  position: number
  name: string
  contentType: string
  isInline: boolean
  contentId: string | null
  size: number
  blobId: string
}

/** The attachments of outgoing messages: names, types and sizes, each pointing at its stored content. */
export class OutboundAttachmentRepository {
  async insert(executor: Db, attachments: NewAttachment[]): Promise<void> {
    if (attachments.length > 0) await executor.insert(outboundAttachments).values(attachments)
  }

  /** Attachment metadata only: the content stays in the database until it is sent. */
  async infoOf(executor: Db, messageIds: string[]): Promise<AttachmentInfo[]> {
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

  async toSend(executor: Db, messageId: string): Promise<AttachmentToSend[]> {
    return executor
      .select({
        position: outboundAttachments.position,
        name: outboundAttachments.name,
        contentType: outboundAttachments.contentType,
        isInline: outboundAttachments.isInline,
        contentId: outboundAttachments.contentId,
        size: outboundAttachments.size,
        blobId: outboundAttachments.blobId,
      })
      .from(outboundAttachments)
      .where(eq(outboundAttachments.messageId, messageId))
      .orderBy(asc(outboundAttachments.position))
  }
}
