import { and, count, desc, eq, inArray, lt, sql, type SQL } from 'drizzle-orm'
import { connectors } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'

export type ConnectorRow = typeof connectors.$inferSelect
export type NewConnector = typeof connectors.$inferInsert

export class ConnectorRepository {
  async insert(executor: Db, row: NewConnector): Promise<ConnectorRow> {
    const [created] = await executor.insert(connectors).values(row).returning()
    return created!
  }

  async findById(executor: Db, id: string, options: { forUpdate?: boolean } = {}): Promise<ConnectorRow | undefined> {
    const query = executor.select().from(connectors).where(eq(connectors.id, id)).limit(1)
    const [row] = options.forUpdate ? await query.for('update') : await query
    return row
  }

  async findMany(executor: Db, ids: string[]): Promise<ConnectorRow[]> {
    if (ids.length === 0) return []
    return executor.select().from(connectors).where(inArray(connectors.id, ids))
  }

  async findByAddress(executor: Db, direction: ConnectorRow['direction'], address: string) {
    const [row] = await executor
      .select()
      .from(connectors)
      .where(and(eq(connectors.direction, direction), eq(connectors.primaryAddress, address)))
      .limit(1)
    return row
  }

  async list(
    executor: Db,
    filter: { integrationId?: string; direction?: ConnectorRow['direction']; enabled?: boolean; beforeId?: string; limit: number },
  ) {
    const conditions: SQL[] = []
    if (filter.integrationId) conditions.push(eq(connectors.integrationId, filter.integrationId))
    if (filter.direction) conditions.push(eq(connectors.direction, filter.direction))
    if (filter.enabled !== undefined) conditions.push(eq(connectors.enabled, filter.enabled))
    if (filter.beforeId) conditions.push(lt(connectors.id, filter.beforeId))
    return executor
      .select()
      .from(connectors)
      .where(and(...conditions))
      .orderBy(desc(connectors.id))
      .limit(filter.limit + 1)
  }

  async update(executor: Db, id: string, changes: Partial<NewConnector>): Promise<ConnectorRow> {
    const [row] = await executor.update(connectors).set(changes).where(eq(connectors.id, id)).returning()
    return row!
  }

  async delete(executor: Db, id: string): Promise<void> {
    await executor.delete(connectors).where(eq(connectors.id, id))
  }

  async countByIntegration(executor: Db, integrationId: string): Promise<{ total: number; enabled: number }> {
    const [row] = await executor
      .select({
        total: count(),
        enabled: sql<number>`count(*) filter (where ${connectors.enabled})::int`,
      })
      .from(connectors)
      .where(eq(connectors.integrationId, integrationId))
    return { total: row?.total ?? 0, enabled: row?.enabled ?? 0 }
  }

  /** Atomic, so failures reported by several workers at once all count. */
  async incrementFailures(executor: Db, id: string): Promise<ConnectorRow | undefined> {
    const [row] = await executor
      .update(connectors)
      .set({ consecutiveFailures: sql`${connectors.consecutiveFailures} + 1` })
      .where(eq(connectors.id, id))
      .returning()
    return row
  }
}
