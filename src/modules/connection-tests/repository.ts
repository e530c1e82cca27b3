import { and, desc, eq, inArray } from 'drizzle-orm'
import { connectionTests, type TestedResource } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'

export type ConnectionTestRow = typeof connectionTests.$inferSelect
export type NewConnectionTest = typeof connectionTests.$inferInsert

/** The stored tests every gated resource (integration, connector, outgoing route) shares. */
export class ConnectionTestRepository {
  async insert(executor: Db, row: NewConnectionTest): Promise<ConnectionTestRow> {
    const [created] = await executor.insert(connectionTests).values(row).returning()
    return created!
  }

  /** The newest test of each resource. */
  async latest(executor: Db, resourceType: TestedResource, resourceIds: string[]): Promise<Map<string, ConnectionTestRow>> {
    if (resourceIds.length === 0) return new Map()
    const rows = await executor
      .selectDistinctOn([connectionTests.resourceId])
      .from(connectionTests)
      .where(and(eq(connectionTests.resourceType, resourceType), inArray(connectionTests.resourceId, resourceIds)))
      .orderBy(connectionTests.resourceId, desc(connectionTests.id))
    return new Map(rows.map((row) => [row.resourceId, row]))
  }

  /** The newest test of exactly this configuration of a resource, candidate or not. */
  async latestOf(executor: Db, resourceType: TestedResource, resourceId: string, configHash: string) {
    const [row] = await executor
      .select()
      .from(connectionTests)
      .where(
        and(
          eq(connectionTests.resourceType, resourceType),
          eq(connectionTests.resourceId, resourceId),
          eq(connectionTests.configHash, configHash),
        ),
      )
      .orderBy(desc(connectionTests.id))
      .limit(1)
    return row
  }

  /** latestOf for many resources at once, keyed by resource id. */
  async latestOfEach(executor: Db, resourceType: TestedResource, pairs: { resourceId: string; configHash: string }[]) {
    if (pairs.length === 0) return new Map<string, ConnectionTestRow>()
    const rows = await executor
      .selectDistinctOn([connectionTests.resourceId, connectionTests.configHash])
      .from(connectionTests)
      .where(
        and(
          eq(connectionTests.resourceType, resourceType),
          inArray(connectionTests.resourceId, pairs.map((p) => p.resourceId)),
          inArray(connectionTests.configHash, pairs.map((p) => p.configHash)),
        ),
      )
      .orderBy(connectionTests.resourceId, connectionTests.configHash, desc(connectionTests.id))
    const wanted = new Map(pairs.map((p) => [p.resourceId, p.configHash]))
    return new Map(rows.filter((row) => wanted.get(row.resourceId) === row.configHash).map((row) => [row.resourceId, row]))
  }

  async deleteFor(executor: Db, resourceType: TestedResource, resourceId: string): Promise<void> {
    await executor
      .delete(connectionTests)
      .where(and(eq(connectionTests.resourceType, resourceType), eq(connectionTests.resourceId, resourceId)))
  }
}
