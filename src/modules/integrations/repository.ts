import { and, desc, eq, ilike, inArray, lt, or, sql, type SQL } from 'drizzle-orm'
import { integrations, integrationTests } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'

export type IntegrationRow = typeof integrations.$inferSelect
export type NewIntegration = typeof integrations.$inferInsert
export type IntegrationTestRow = typeof integrationTests.$inferSelect
export type NewIntegrationTest = typeof integrationTests.$inferInsert

export class IntegrationRepository {
  async insert(executor: Db, row: NewIntegration): Promise<IntegrationRow> {
    const [created] = await executor.insert(integrations).values(row).returning()
    return created!
  }

  async findById(executor: Db, id: string, options: { forUpdate?: boolean } = {}): Promise<IntegrationRow | undefined> {
    const query = executor.select().from(integrations).where(eq(integrations.id, id)).limit(1)
    const [row] = options.forUpdate ? await query.for('update') : await query
    return row
  }

  async list(executor: Db, filter: { cloud?: string; tenant?: string; beforeId?: string; limit: number }) {
    const conditions: SQL[] = []
    if (filter.cloud) conditions.push(eq(integrations.cloud, filter.cloud as IntegrationRow['cloud']))
    if (filter.tenant) conditions.push(ilike(integrations.tenant, filter.tenant))
    if (filter.beforeId) conditions.push(lt(integrations.id, filter.beforeId))
    return executor
      .select()
      .from(integrations)
      .where(and(...conditions))
      .orderBy(desc(integrations.id))
      .limit(filter.limit + 1)
  }

  async update(executor: Db, id: string, changes: Partial<NewIntegration>): Promise<IntegrationRow> {
    const [row] = await executor.update(integrations).set(changes).where(eq(integrations.id, id)).returning()
    return row!
  }

  async delete(executor: Db, id: string): Promise<void> {
    await executor.delete(integrations).where(eq(integrations.id, id))
  }

  async insertTest(executor: Db, row: NewIntegrationTest): Promise<IntegrationTestRow> {
    const [created] = await executor.insert(integrationTests).values(row).returning()
    return created!
  }

  /** The newest test of each integration. */
  async latestTests(executor: Db, integrationIds: string[]): Promise<Map<string, IntegrationTestRow>> {
    if (integrationIds.length === 0) return new Map()
    const rows = await executor
      .selectDistinctOn([integrationTests.integrationId])
      .from(integrationTests)
      .where(inArray(integrationTests.integrationId, integrationIds))
      .orderBy(integrationTests.integrationId, desc(integrationTests.id))
    return new Map(rows.map((row) => [row.integrationId, row]))
  }

  /** The newest test of exactly this configuration, candidate or not. */
  async latestTestOf(executor: Db, integrationId: string, configHash: string): Promise<IntegrationTestRow | undefined> {
    const [row] = await executor
      .select()
      .from(integrationTests)
      .where(and(eq(integrationTests.integrationId, integrationId), eq(integrationTests.configHash, configHash)))
      .orderBy(desc(integrationTests.id))
      .limit(1)
    return row
  }

  async latestTestsOf(executor: Db, pairs: { integrationId: string; configHash: string }[]) {
    if (pairs.length === 0) return new Map<string, IntegrationTestRow>()
    const rows = await executor
      .selectDistinctOn([integrationTests.integrationId, integrationTests.configHash])
      .from(integrationTests)
      .where(
        and(
          inArray(integrationTests.integrationId, pairs.map((p) => p.integrationId)),
          inArray(integrationTests.configHash, pairs.map((p) => p.configHash)),
        ),
      )
      .orderBy(integrationTests.integrationId, integrationTests.configHash, desc(integrationTests.id))
    const wanted = new Map(pairs.map((p) => [p.integrationId, p.configHash]))
    return new Map(rows.filter((row) => wanted.get(row.integrationId) === row.configHash).map((row) => [row.integrationId, row]))
  }

  /** Rows holding a sealed value that another key than `currentKeyId` sealed. */
  async sealedWithOtherKeys(executor: Db, currentKeyId: string): Promise<IntegrationRow[]> {
    return executor
      .select()
      .from(integrations)
      .where(
        or(
          sql`split_part(${integrations.clientSecretSealed}, '.', 2) <> ${currentKeyId}`,
          sql`split_part(${integrations.privateKeySealed}, '.', 2) <> ${currentKeyId}`,
        ),
      )
  }
}
