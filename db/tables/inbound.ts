import { sql } from 'drizzle-orm'
import { boolean, index, integer, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core'
import { connectors, emailRoutes } from './connectors.ts'
import { attachmentBlobs } from './messages.ts'

export const INBOUND_OUTCOMES = ['received', 'requested', 'appended', 'unhandled', 'discarded', 'ignored', 'duplicate'] as const
export type InboundOutcome = (typeof INBOUND_OUTCOMES)[number]

export const AUTOMATED_KINDS = ['out_of_office', 'auto_reply', 'bounce', 'delay', 'read_receipt'] as const
export type AutomatedKind = (typeof AUTOMATED_KINDS)[number]

export interface Automated {
  kind: AutomatedKind
  /** The headers and patterns that decided it, e.g. `Auto-Submitted: auto-replied`. */
  evidence: string[]
}

export interface PipelineStep {
  step: string
  result: string
  detail: string
}

export interface InboundAttachment {
  name: string
  contentType: string
  size: number
  /** SHA-256 of the decoded content, hex. */
  sha256: string
  contentId: string | null
  inline: boolean
}

/** The after-processing action on a synced message: `markRead`, `delete` or `move:<folder path>`. */
export interface AfterAction {
  action: string
  state: 'pending' | 'done' | 'failed'
  attempts: number
  lastError: string | null
  doneAt: string | null
}

export interface InboundHeader {
  name: string
  value: string
}

/**
 * Every email taken in by an incoming connector, with its source kept byte for byte (a blob)
 * and what the pipeline decided. `received` means stored but not yet processed; recovery
 * finishes such emails. Headers and bodies are not copied here: reading one email parses
 * its source again, so each mail is stored once.
 */
export const inboundEmails = pgTable(
  'inbound_emails',
  {
    /** UUIDv7: ordering by id is ordering by arrival. */
    id: uuid().primaryKey(),
    connectorId: uuid()
      .notNull()
      .references(() => connectors.id, { onDelete: 'cascade' }),
    /** `mime` (RFC 5322) or `graph` (Graph's message JSON). */
    sourceFormat: text().$type<'mime' | 'graph'>().notNull(),
    sourceBlobId: uuid()
      .notNull()
      .references(() => attachmentBlobs.id, { onDelete: 'restrict' }),
    sourceSize: integer().notNull(),
    sourceHash: text().notNull(),
    contentHash: text().notNull(),
    identityHash: text(),
    internetMessageId: text(),
    inReplyTo: text(),
    references: text().array().notNull(),
    subject: text().notNull(),
    fromAddress: text(),
    fromName: text(),
    senderAddress: text(),
    returnPath: text(),
    toAddresses: text().array().notNull(),
    ccAddresses: text().array().notNull(),
    bccAddresses: text().array().notNull(),
    replyTo: text().array().notNull(),
    importance: text().$type<'low' | 'normal' | 'high'>().notNull(),
    sentAt: timestamp({ withTimezone: true }),
    attachments: jsonb().$type<InboundAttachment[]>().notNull(),
    /** What could not be read as given (bad charset, truncated parts, too many parts). */
    parseProblems: text().array().notNull(),
    automated: jsonb().$type<Automated | null>(),
    suppressAutomatedAnswer: boolean().notNull().default(false),
    outcome: text().$type<InboundOutcome>().notNull(),
    outcomeReason: text(),
    duplicateOf: uuid(),
    testMode: boolean().notNull().default(false),
    steps: jsonb().$type<PipelineStep[]>().notNull(),
    receivedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    processedAt: timestamp({ withTimezone: true }),
    /** Times processing was started; recovery gives up (unhandled, reason `processing_failed`) after a few. */
    processingAttempts: integer().notNull().default(0),
    /** Graph's immutable id of the message, for mail the mailbox sync took in. */
    graphMessageId: text(),
    /** What the connector does to the message in its mailbox once the outcome is committed. */
    afterAction: jsonb().$type<AfterAction | null>(),
  },
  (table) => [
    index('inbound_emails_connector_idx').on(table.connectorId, table.id),
    index('inbound_emails_outcome_idx').on(table.outcome, table.id),
    index('inbound_emails_message_id_idx').on(table.internetMessageId),
    index('inbound_emails_received_idx').on(table.receivedAt).where(sql`${table.outcome} = 'received'`),
    index('inbound_emails_source_blob_idx').on(table.sourceBlobId),
    // One row per mailbox item and connector: two syncs racing over one message cannot both store it.
    uniqueIndex('inbound_emails_graph_message_idx').on(table.connectorId, table.graphMessageId).where(sql`${table.graphMessageId} is not null`),
    index('inbound_emails_after_action_pending_idx').on(table.connectorId, table.id).where(sql`${table.afterAction} ->> 'state' = 'pending'`),
  ],
)

/**
 * The three dedupe fingerprints of every stored email, unique per scope (`*` for global, or
 * a connector id), so that racing intakes of one mail cannot both store it.
 */
export const inboundDedupeKeys = pgTable(
  'inbound_dedupe_keys',
  {
    scope: text().notNull(),
    kind: text().$type<'source' | 'content' | 'identity'>().notNull(),
    hash: text().notNull(),
    emailId: uuid()
      .notNull()
      .references(() => inboundEmails.id, { onDelete: 'cascade' }),
  },
  (table) => [primaryKey({ columns: [table.scope, table.kind, table.hash] }), index('inbound_dedupe_keys_email_idx').on(table.emailId)],
)

/**
 * What an email did to work: a request for new work through a route, or a message appended
 * to existing work. The work-management system confirms the reference of requested work.
 */
export const workItemLinks = pgTable(
  'work_item_links',
  {
    id: uuid().primaryKey(),
    emailId: uuid()
      .notNull()
      .references(() => inboundEmails.id, { onDelete: 'cascade' }),
    kind: text().$type<'requested' | 'appended'>().notNull(),
    routeId: uuid().references(() => emailRoutes.id, { onDelete: 'set null' }),
    /** The recipient address the work came in through (lower case). */
    address: text().notNull(),
    workItemRef: text(),
    automated: boolean().notNull().default(false),
    testMode: boolean().notNull().default(false),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    confirmedAt: timestamp({ withTimezone: true }),
  },
  (table) => [
    uniqueIndex('work_item_links_request_unique').on(table.emailId, table.routeId).where(sql`${table.kind} = 'requested'`),
    uniqueIndex('work_item_links_append_unique').on(table.emailId, table.workItemRef).where(sql`${table.kind} = 'appended'`),
    index('work_item_links_email_idx').on(table.emailId),
    index('work_item_links_ref_idx').on(table.workItemRef),
    // Threading looks references up case-blind (plus addresses arrive lower case).
    index('work_item_links_ref_lower_idx').on(sql`lower(${table.workItemRef})`),
  ],
)

export const BLOCK_ACTIONS = ['discard', 'no_automated_replies', 'spam'] as const
export type BlockAction = (typeof BLOCK_ACTIONS)[number]

/** Senders whose mail is discarded, marked spam, or never answered automatically. */
export const blockedAddresses = pgTable('blocked_addresses', {
  id: uuid().primaryKey(),
  /** Lower case: an address, or `*@domain`. */
  pattern: text().notNull().unique(),
  action: text().$type<BlockAction>().notNull(),
  note: text(),
  createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
})
