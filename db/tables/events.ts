import { sql } from 'drizzle-orm'
import { bigint, index, jsonb, pgTable, smallint, text, timestamp, uuid } from 'drizzle-orm/pg-core'

export const EVENT_TYPES = [
  'message.sent',
  'message.failed',
  'message.uncertain',
  'message.bounced',
  'work_item.requested',
  'work_item.message_appended',
  'email.unhandled',
  'email.discarded',
  'email.duplicate',
  'connector.disabled',
  'webhook.disabled',
] as const
export type EventType = (typeof EVENT_TYPES)[number]

/**
 * Domain events for subscribers (webhooks), written in the same transaction as the change
 * they describe, so none is lost and none describes a change that was rolled back.
 */
export const domainEvents = pgTable(
  'domain_events',
  {
    /** UUIDv7: ordering by id is ordering by time. */
    id: uuid().primaryKey(),
    type: text().$type<EventType>().notNull(),
    subjectType: text().notNull(),
    subjectId: uuid().notNull(),
    payload: jsonb().$type<Record<string, unknown>>().notNull(),
    occurredAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    /**
     * The writing transaction's id (pg_current_xact_id). The feed reads in (txId, id) order and
     * only below the oldest transaction still running, so an event committed late by a slow
     * transaction is never skipped by a cursor that has moved past later ones.
     */
    txId: bigint({ mode: 'number' })
      .notNull()
      .default(sql`(pg_current_xact_id()::text::bigint)`),
  },
  (table) => [index('domain_events_subject_idx').on(table.subjectType, table.subjectId, table.id), index('domain_events_feed_idx').on(table.txId, table.id)],
)

/**
 * How far the feed has been trimmed (EVENT_RETENTION_DAYS): every event up to and including
 * (txId, eventId) in feed order is gone, every event after it is kept. One row.
 */
export const domainEventRetention = pgTable('domain_event_retention', {
  id: smallint().primaryKey(),
  txId: bigint({ mode: 'number' }).notNull(),
  eventId: uuid().notNull(),
  removedAt: timestamp({ withTimezone: true }).notNull(),
})
