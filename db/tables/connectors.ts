import { sql } from 'drizzle-orm'
import { boolean, integer, jsonb, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core'
import { integrations } from './integrations.ts'

export const DIRECTIONS = ['incoming', 'outgoing'] as const
export type Direction = (typeof DIRECTIONS)[number]

export const connectors = pgTable(
  'connectors',
  {
    id: uuid().primaryKey(),
    integrationId: uuid()
      .notNull()
      .references(() => integrations.id, { onDelete: 'restrict' }),
    name: text().notNull(),
    direction: text().$type<Direction>().notNull(),
    /** Lower case. */
    primaryAddress: text().notNull(),
    enabled: boolean().notNull().default(false),
    /** Incoming: folders to read, as paths such as `Inbox/Invoices`. */
    folderPaths: text().array(),
    /** Incoming: folder ids found by the latest successful test, by path. */
    folderIds: jsonb().$type<Record<string, string>>(),
    /** Incoming: `markRead`, `delete` or `move:<folder path>`. */
    afterProcessing: text(),
    sendAutomatedEmails: boolean().notNull().default(true),
    testModeOnly: boolean().notNull().default(false),
    emailClassification: boolean().notNull().default(false),
    sentimentAnalysis: boolean().notNull().default(false),
    emailDataExtraction: boolean().notNull().default(false),
    thankYouEvaluation: boolean().notNull().default(false),
    /** Authentication or unreachable-mailbox failures in a row, for automatic disable. */
    consecutiveFailures: integer().notNull().default(0),
    disabledReason: text(),
    disabledAt: timestamp({ withTimezone: true }),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (table) => [uniqueIndex('connectors_address_unique').on(table.direction, table.primaryAddress)],
)

export const ROUTE_KINDS = ['specific', 'wildcard', 'fallback', 'default', 'alias'] as const
export type RouteKind = (typeof ROUTE_KINDS)[number]

export interface RouteRules {
  importantOnly?: boolean
  attachmentTypes?: string[]
  subjectKeywords?: string[]
  recipientIncludes?: string[]
  senderIncludes?: string[]
}

/**
 * Incoming routes (specific, wildcard, fallback) decide which process an email becomes;
 * outgoing routes (default, alias) are the addresses an outgoing connector sends from.
 */
export const emailRoutes = pgTable(
  'email_routes',
  {
    id: uuid().primaryKey(),
    connectorId: uuid()
      .notNull()
      .references(() => connectors.id, { onDelete: 'cascade' }),
    direction: text().$type<Direction>().notNull(),
    kind: text().$type<RouteKind>().notNull(),
    name: text().notNull(),
    description: text(),
    /** Lower case; `*` for a wildcard route. */
    emailAddress: text().notNull(),
    workItemType: text().$type<'ticket' | 'case'>(),
    processId: text(),
    ticketCategory: text(),
    rules: jsonb().$type<RouteRules>().notNull().default({}),
    sendAutomatedEmails: boolean().notNull().default(true),
    forAttention: boolean().notNull().default(false),
    testModeOnly: boolean().notNull().default(false),
    enabled: boolean().notNull().default(false),
    /** Order inside the route's group; lower first. */
    priority: integer().notNull().default(0),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (table) => [
    uniqueIndex('email_routes_one_fallback').on(table.connectorId).where(sql`${table.kind} = 'fallback'`),
    uniqueIndex('email_routes_outgoing_address').on(table.emailAddress).where(sql`${table.direction} = 'outgoing'`),
  ],
)
