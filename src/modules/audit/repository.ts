import { and, desc, eq, gte, lt, lte, type SQL } from 'drizzle-orm'
import { auditEvents } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'

export type AuditEventRow = typeof auditEvents.$inferSelect
export type NewAuditEvent = typeof auditEvents.$inferInsert

export interface AuditFilter {
  resourceType?: string
  resourceId?: string
  action?: string
  actorKeyId?: string
  since?: Date
  until?: Date
  beforeId?: string
  limit: number
}

export class AuditRepository {
  async insert(executor: Db, event: NewAuditEvent): Promise<void> {
    await executor.insert(auditEvents).values(event)
  }

  /** Newest first; fetches limit + 1 rows so the caller knows whether a next page exists. */
  async list(executor: Db, filter: AuditFilter): Promise<AuditEventRow[]> {
    const conditions: SQL[] = []
    if (filter.resourceType) conditions.push(eq(auditEvents.resourceType, filter.resourceType))
    if (filter.resourceId) conditions.push(eq(auditEvents.resourceId, filter.resourceId))
    if (filter.action) conditions.push(eq(auditEvents.action, filter.action))
    if (filter.actorKeyId) conditions.push(eq(auditEvents.actorKeyId, filter.actorKeyId))
    if (filter.since) conditions.push(gte(auditEvents.occurredAt, filter.since))
    if (filter.until) conditions.push(lte(auditEvents.occurredAt, filter.until))
    if (filter.beforeId) conditions.push(lt(auditEvents.id, filter.beforeId))
    return executor
      .select()
      .from(auditEvents)
      .where(and(...conditions))
      .orderBy(desc(auditEvents.id))
      .limit(filter.limit + 1)
  }
}
