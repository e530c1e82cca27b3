import { and, asc, eq, sql } from 'drizzle-orm'
import { emailRoutes } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'

export type EmailRouteRow = typeof emailRoutes.$inferSelect
export type NewEmailRoute = typeof emailRoutes.$inferInsert

export class EmailRouteRepository {
  async insert(executor: Db, row: NewEmailRoute): Promise<EmailRouteRow> {
    const [created] = await executor.insert(emailRoutes).values(row).returning()
    return created!
  }

  async listForConnector(executor: Db, connectorId: string): Promise<EmailRouteRow[]> {
    return executor
      .select()
      .from(emailRoutes)
      .where(eq(emailRoutes.connectorId, connectorId))
      .orderBy(
        sql`case ${emailRoutes.kind} when 'default' then 0 when 'specific' then 1 when 'wildcard' then 2 when 'alias' then 3 else 4 end`,
        asc(emailRoutes.priority),
        asc(emailRoutes.id),
      )
  }

  /** The routes that carry the connector's own address (fallback or default) follow it. */
  async moveConnectorAddress(executor: Db, connectorId: string, address: string): Promise<void> {
    await executor
      .update(emailRoutes)
      .set({ emailAddress: address, updatedAt: new Date() })
      .where(and(eq(emailRoutes.connectorId, connectorId), sql`${emailRoutes.kind} in ('fallback', 'default')`))
  }
}
