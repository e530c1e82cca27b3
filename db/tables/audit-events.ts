import { index, jsonb, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core'

export interface AuditDiff {
  changes: Record<string, unknown>
  details?: Record<string, unknown>
}

export const auditEvents = pgTable(
  'audit_events',
  {
    /** UUIDv7, so ordering by id is ordering by time. */
    id: uuid().primaryKey(),
    occurredAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    actorKeyId: uuid(),
    action: text().notNull(),
    resourceType: text().notNull(),
    resourceId: text().notNull(),
    /** Field-level changes; secret fields are recorded as changed without their values. */
    diff: jsonb().$type<AuditDiff>().notNull(),
    requestId: text(),
  },
  (table) => [
    index('audit_events_resource_idx').on(table.resourceType, table.resourceId, table.id),
    index('audit_events_actor_idx').on(table.actorKeyId, table.id),
  ],
)
