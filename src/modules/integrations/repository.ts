import { and, desc, eq, ilike, lt, or, sql, type SQL } from 'drizzle-orm'
import { integrations } from '../../../db/schema.ts'
import { idIn } from '../../database/id-in.ts'
import type { Db } from '../../database/index.ts'

export type IntegrationRow = typeof integrations.$inferSelect

/** What decides an integration's connection (and so its tests); never a secret. */
const CONNECTION_COLUMNS = {
  tenant: integrations.tenant,
  clientId: integrations.clientId,
  cloud: integrations.cloud,
  authMethod: integrations.authMethod,
  credentialFingerprint: integrations.credentialFingerprint,
}
export type NewIntegration = typeof integrations.$inferInsert

export class IntegrationRepository {
  async insert(executor: Db, row: NewIntegration): Promise<IntegrationRow> {
    const [created] = await executor.insert(integrations).values(row).returning()
    return created!
  }

  async findById(
    executor: Db,
    id: string,
    options: { forUpdate?: boolean; forShare?: boolean } = {},
  ): Promise<IntegrationRow | undefined> {
    const query = executor.select().from(integrations).where(eq(integrations.id, id)).limit(1)
    const [row] = options.forUpdate ? await query.for('update') : options.forShare ? await query.for('share') : await query
    return row
  }

  /**
   * The connection settings alone, which say whether a cached client is still the right one:
   * a statement prepared once for `db` (outside any transaction), as it runs for every send.
   */
  prepareFindConnection(db: Db) {
    const query = db
      .select(CONNECTION_COLUMNS)
      .from(integrations)
      .where(eq(integrations.id, sql.placeholder('id')))
      .limit(1)
      .prepare('integration_connection')
    return async (id: string) => (await query.execute({ id }))[0]
  }

  async findMany(executor: Db, ids: string[]): Promise<IntegrationRow[]> {
    if (ids.length === 0) return []
    return executor.select().from(integrations).where(idIn(integrations.id, ids))
  }

  /** The connection settings of several integrations in one statement; no secret is read. */
  async connectionsOf(executor: Db, ids: string[]) {
    if (ids.length === 0) return []
    return executor
      .select({ id: integrations.id, ...CONNECTION_COLUMNS })
      .from(integrations)
      .where(idIn(integrations.id, ids))
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
