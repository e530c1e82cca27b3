import { sql } from 'drizzle-orm'
import { bigint, boolean, index, integer, jsonb, pgTable, smallint, text, timestamp, uuid } from 'drizzle-orm/pg-core'
import { connectors } from './connectors.ts'

/**
 * A consumer's HTTPS endpoint for events (Standard Webhooks). The signing secret is made by
 * the server, shown once and stored sealed; after a rotation the previous one signs too
 * until `previousSecretUntil`.
 */
export const webhookEndpoints = pgTable('webhook_endpoints', {
  id: uuid().primaryKey(),
  url: text().notNull(),
  description: text(),
  /** Event types, `family.*` or `*`. */
  eventTypes: text().array().notNull(),
  /** Only events about this connector (their data's connectorId). */
  connectorId: uuid().references(() => connectors.id, { onDelete: 'cascade' }),
  enabled: boolean().notNull().default(true),
  /** Deliver events side by side instead of one after another in feed order. */
  parallel: boolean().notNull().default(false),
  secretSealed: text().notNull(),
  previousSecretSealed: text(),
  previousSecretUntil: timestamp({ withTimezone: true }),
  disabledReason: text(),
  disabledAt: timestamp({ withTimezone: true }),
  /** Since when every attempt has failed (null: the last one succeeded). */
  failingSince: timestamp({ withTimezone: true }),
  createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  /** The creating transaction's id: the endpoint gets the feed's events of later transactions. */
  createdTxId: bigint({ mode: 'number' })
    .notNull()
    .default(sql`(pg_current_xact_id()::text::bigint)`),
})

/** Where the fan-out of events to endpoints stands in the feed: one row. */
export const webhookFanout = pgTable('webhook_fanout', {
  id: smallint().primaryKey(),
  txId: bigint({ mode: 'number' }).notNull(),
  eventId: uuid().notNull(),
})

export type DeliveryState = 'pending' | 'delivered' | 'failed'

/** One event for one endpoint, until delivered or given up; a replay makes a new one. */
export const webhookDeliveries = pgTable(
  'webhook_deliveries',
  {
    id: uuid().primaryKey(),
    endpointId: uuid()
      .notNull()
      .references(() => webhookEndpoints.id, { onDelete: 'cascade' }),
    eventId: uuid().notNull(),
    /** The event's place in the feed: deliveries of an endpoint go out in this order. */
    eventTxId: bigint({ mode: 'number' }).notNull(),
    state: text().$type<DeliveryState>().notNull().default('pending'),
    attempts: integer().notNull().default(0),
    nextAttemptAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    leaseOwner: text(),
    leaseExpiresAt: timestamp({ withTimezone: true }),
    lastStatus: integer(),
    lastError: text(),
    firstAttemptAt: timestamp({ withTimezone: true }),
    deliveredAt: timestamp({ withTimezone: true }),
    /** When it was delivered or ended as failed: kept EVENT_RETENTION_DAYS from then. */
    endedAt: timestamp({ withTimezone: true }),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (table) => [
    index('webhook_deliveries_endpoint_idx').on(table.endpointId, table.id),
    index('webhook_deliveries_pending_idx').on(table.endpointId, table.eventTxId, table.eventId, table.id).where(sql`${table.state} = 'pending'`),
    // The few deliveries in flight: an ordered endpoint's claim looks here for one held.
    index('webhook_deliveries_leased_idx').on(table.endpointId).where(sql`${table.state} = 'pending' and ${table.leaseOwner} is not null`),
    // Housekeeping removes ended deliveries by age.
    index('webhook_deliveries_ended_idx').on(table.endedAt).where(sql`${table.state} <> 'pending'`),
  ],
)

/** Each HTTP attempt of a delivery: what the receiver answered (the first 4 KB of it). */
export const webhookAttempts = pgTable(
  'webhook_attempts',
  {
    id: uuid().primaryKey(),
    deliveryId: uuid()
      .notNull()
      .references(() => webhookDeliveries.id, { onDelete: 'cascade' }),
    at: timestamp({ withTimezone: true }).notNull(),
    status: integer(),
    durationMs: integer().notNull(),
    responseHeaders: jsonb().$type<Record<string, string>>(),
    responseBody: text(),
    error: text(),
  },
  (table) => [index('webhook_attempts_delivery_idx').on(table.deliveryId, table.at)],
)
