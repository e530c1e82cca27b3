import { sql } from 'drizzle-orm'
import { boolean, customType, doublePrecision, index, integer, jsonb, pgTable, primaryKey, text, timestamp, uuid } from 'drizzle-orm/pg-core'
import { connectors, emailRoutes } from './connectors.ts'

const bytea = customType<{ data: Buffer; driverData: Buffer }>({ dataType: () => 'bytea' })

export const MESSAGE_STATUSES = ['queued', 'sending', 'sent', 'failed', 'uncertain', 'cancelled', 'bounced'] as const
export type MessageStatus = (typeof MESSAGE_STATUSES)[number]

export interface MessageError {
  code: string
  message: string
  hint?: string
  graphCode?: string
  status?: number
}

/** A non-delivery report that came back for a sent message. */
export interface MessageBounce {
  recipient: string | null
  /** The DSN's status code, e.g. 5.1.1. */
  status: string | null
  diagnostic: string | null
  /** The inbound email that carried the report. */
  inboundEmailId: string
  at: string
}

/** What the dispatcher stores about a message's progress in Graph, to resume after a crash. */
export interface SendProgress {
  /** Immutable id of the draft, once Graph created it. */
  draftId?: string
  internetMessageId?: string
  /** Set once every attachment is on the draft. */
  uploadedAt?: string
  /** Set just before the send request leaves: from here on, the message may be out. */
  sendRequestedAt?: string
}

/** The transactional outbox: a message is stored here before anything is sent. */
export const outboundMessages = pgTable(
  'outbound_messages',
  {
    id: uuid().primaryKey(),
    status: text().$type<MessageStatus>().notNull(),
    connectorId: uuid()
      .notNull()
      .references(() => connectors.id, { onDelete: 'restrict' }),
    /** The outgoing route (default address or alias) the message is sent as. */
    routeId: uuid()
      .notNull()
      .references(() => emailRoutes.id, { onDelete: 'restrict' }),
    fromAddress: text().notNull(),
    toAddresses: text().array().notNull(),
    ccAddresses: text().array().notNull(),
    bccAddresses: text().array().notNull(),
    replyTo: text().array().notNull(),
    subject: text().notNull(),
    bodyType: text().$type<'text' | 'html'>().notNull(),
    body: text().notNull(),
    headers: jsonb().$type<Record<string, string>>().notNull(),
    importance: text().$type<'low' | 'normal' | 'high'>().notNull(),
    workItemRef: text(),
    totalBytes: integer().notNull(),
    /** Saves the dispatcher a query for the many messages that have none. */
    attachmentCount: integer().notNull().default(0),
    attempts: integer().notNull().default(0),
    nextAttemptAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    lastError: jsonb().$type<MessageError>(),
    /** Ids Graph gave (draft id, internet message id) and send progress, for checking after a crash. */
    graphIds: jsonb().$type<SendProgress>().notNull().default({}),
    /** Non-delivery reports received for it; a bounced message has at least one. */
    bounces: jsonb().$type<MessageBounce[]>().notNull().default([]),
    leaseOwner: text(),
    leaseExpiresAt: timestamp({ withTimezone: true }),
    createdByKeyId: uuid(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    sentAt: timestamp({ withTimezone: true }),
  },
  (table) => [
    index('outbound_messages_due_idx').on(table.nextAttemptAt).where(sql`${table.status} = 'queued'`),
    index('outbound_messages_connector_idx').on(table.connectorId, table.id),
    // Claims per mailbox, in-flight counts and abandoned leases only ever look at these few rows.
    index('outbound_messages_queued_by_connector_idx').on(table.connectorId, table.nextAttemptAt).where(sql`${table.status} = 'queued'`),
    index('outbound_messages_sending_idx').on(table.leaseExpiresAt).where(sql`${table.status} = 'sending'`),
    // Ingest looks up replies, bounces and its own mail coming back by the Message-ID Graph reported.
    index('outbound_messages_internet_message_id_idx').on(sql`(${table.graphIds} ->> 'internetMessageId')`),
    index('outbound_messages_work_item_ref_lower_idx').on(sql`lower(${table.workItemRef})`),
  ],
)

/**
 * Attachment content, stored in chunks so that neither the submit path nor the dispatcher
 * ever holds a whole large file in memory. A blob is staged first (multipart uploads write
 * it while the request streams in) and owned once an outbound attachment references it;
 * unreferenced staged blobs are removed after a grace period.
 */
export const attachmentBlobs = pgTable('attachment_blobs', {
  id: uuid().primaryKey(),
  size: integer().notNull(),
  createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
})

export const attachmentChunks = pgTable(
  'attachment_chunks',
  {
    blobId: uuid()
      .notNull()
      .references(() => attachmentBlobs.id, { onDelete: 'cascade' }),
    seq: integer().notNull(),
    data: bytea().notNull(),
  },
  (table) => [primaryKey({ columns: [table.blobId, table.seq] })],
)

export const outboundAttachments = pgTable(
  'outbound_attachments',
  {
    messageId: uuid()
      .notNull()
      .references(() => outboundMessages.id, { onDelete: 'cascade' }),
    position: integer().notNull(),
    name: text().notNull(),
    contentType: text().notNull(),
    isInline: boolean().notNull(),
    contentId: text(),
    size: integer().notNull(),
    blobId: uuid()
      .notNull()
      .references(() => attachmentBlobs.id, { onDelete: 'restrict' }),
  },
  (table) => [primaryKey({ columns: [table.messageId, table.position] }), index('outbound_attachments_blob_idx').on(table.blobId)],
)

/** First answers to Idempotency-Key requests, per API key, replayed for 24 hours. */
export const idempotencyKeys = pgTable(
  'idempotency_keys',
  {
    apiKeyId: uuid().notNull(),
    key: text().notNull(),
    requestHash: text().notNull(),
    responseStatus: integer().notNull(),
    responseBody: jsonb().$type<Record<string, unknown>>().notNull(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (table) => [primaryKey({ columns: [table.apiKeyId, table.key] })],
)

/**
 * A token bucket per outgoing connector, shared by every instance through the row lock:
 * Exchange Online allows about 30 messages a minute per mailbox.
 */
export const mailboxSendBudgets = pgTable('mailbox_send_budgets', {
  connectorId: uuid()
    .primaryKey()
    .references(() => connectors.id, { onDelete: 'cascade' }),
  tokens: doublePrecision().notNull(),
  refilledAt: timestamp({ withTimezone: true }).notNull(),
  /** Set when Graph throttles the mailbox: no instance sends from it before this time. */
  pausedUntil: timestamp({ withTimezone: true }),
})
