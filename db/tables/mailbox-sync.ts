import { boolean, index, integer, jsonb, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core'
import { connectors } from './connectors.ts'

export interface SyncError {
  code: string
  message: string
  at: string
}

/** A message the sync passed over because it cannot be taken in (too large, gone before it was read). */
export interface SkippedMessage {
  graphMessageId: string
  reason: string
  at: string
}

/**
 * Where the mailbox sync of one folder of an incoming connector stands: the delta link its
 * next round starts from, the page of a round in progress, and who holds it now. A folder is
 * synced by one instance at a time: the holder's lease, and writes fenced by `fence`.
 */
export const mailboxFolderSyncs = pgTable(
  'mailbox_folder_syncs',
  {
    id: uuid().primaryKey(),
    connectorId: uuid()
      .notNull()
      .references(() => connectors.id, { onDelete: 'cascade' }),
    /** As configured on the connector, e.g. `Inbox/Invoices`. */
    folderPath: text().notNull(),
    /** Graph's id of the folder, found by the connector's test. */
    folderId: text().notNull(),
    /** A round from the start (the first, or after Graph forgot the link) takes in only mail received since. */
    ingestSince: timestamp({ withTimezone: true }).notNull(),
    /** Where the next round starts; null: from the start. */
    deltaLink: text(),
    /** The next page of the round in progress: a sync that stopped goes on from there. */
    nextLink: text(),
    /** When the folder is next synced (a wake-up sets it to now). */
    dueAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    leaseOwner: text(),
    leaseExpiresAt: timestamp({ withTimezone: true }),
    /** Raised by every claim; a write of a holder that lost its lease changes nothing. */
    fence: integer().notNull().default(0),
    lastSyncedAt: timestamp({ withTimezone: true }),
    lastError: jsonb().$type<SyncError | null>(),
    /** Messages taken in (stored, duplicates included) since the folder was first synced. */
    messagesTaken: integer().notNull().default(0),
    /** Messages passed over because they cannot be taken in; the last one, so an admin can find it. */
    messagesSkipped: integer().notNull().default(0),
    lastSkipped: jsonb().$type<SkippedMessage | null>(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (table) => [uniqueIndex('mailbox_folder_syncs_folder_unique').on(table.connectorId, table.folderPath), index('mailbox_folder_syncs_due_idx').on(table.dueAt)],
)

/**
 * Graph change-notification subscriptions, one per synced folder (when PUBLIC_BASE_URL is
 * set). Notifications only wake the folder's sync; the clientState Graph echoes back is
 * stored sealed and checked on every notification. A row outlives its connector so that the
 * subscription can still be deleted at Graph.
 */
export const graphSubscriptions = pgTable(
  'graph_subscriptions',
  {
    id: uuid().primaryKey(),
    /** Graph's subscription id. */
    subscriptionId: text().notNull(),
    connectorId: uuid().notNull(),
    folderPath: text().notNull(),
    integrationId: uuid().notNull(),
    mailbox: text().notNull(),
    clientStateSealed: text().notNull(),
    expiresAt: timestamp({ withTimezone: true }).notNull(),
    /** Set when Graph asked for reauthorization: renewed on the folder's next turn. */
    renewRequested: boolean().notNull().default(false),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    renewedAt: timestamp({ withTimezone: true }),
  },
  (table) => [uniqueIndex('graph_subscriptions_subscription_unique').on(table.subscriptionId), uniqueIndex('graph_subscriptions_folder_unique').on(table.connectorId, table.folderPath)],
)
