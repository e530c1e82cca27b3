import { and, desc, eq, isNull, lt, sql, type SQL } from 'drizzle-orm'
import { apiKeys } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'

export type ApiKeyRow = typeof apiKeys.$inferSelect
export type NewApiKey = typeof apiKeys.$inferInsert

export class ApiKeyRepository {
  async insert(executor: Db, key: NewApiKey): Promise<ApiKeyRow> {
    const [row] = await executor.insert(apiKeys).values(key).returning()
    return row!
  }

  /** What authentication reads of a key, as a statement prepared once for `db`: it runs on every request. */
  prepareFindForAuth(db: Db) {
    const query = db
      .select({ id: apiKeys.id, name: apiKeys.name, scopes: apiKeys.scopes, revokedAt: apiKeys.revokedAt, lastUsedAt: apiKeys.lastUsedAt })
      .from(apiKeys)
      .where(eq(apiKeys.keyHash, sql.placeholder('keyHash')))
      .limit(1)
      .prepare('api_key_for_auth')
    return async (keyHash: string) => (await query.execute({ keyHash }))[0]
  }

  async findById(executor: Db, id: string): Promise<ApiKeyRow | undefined> {
    const [row] = await executor.select().from(apiKeys).where(eq(apiKeys.id, id)).limit(1)
    return row
  }

  async list(executor: Db, options: { includeRevoked: boolean; beforeId?: string; limit: number }) {
    const conditions: SQL[] = []
    if (!options.includeRevoked) conditions.push(isNull(apiKeys.revokedAt))
    if (options.beforeId) conditions.push(lt(apiKeys.id, options.beforeId))
    return executor
      .select()
      .from(apiKeys)
      .where(and(...conditions))
      .orderBy(desc(apiKeys.id))
      .limit(options.limit + 1)
  }

  async revoke(executor: Db, id: string, at: Date): Promise<ApiKeyRow | undefined> {
    const [row] = await executor
      .update(apiKeys)
      .set({ revokedAt: at })
      .where(and(eq(apiKeys.id, id), isNull(apiKeys.revokedAt)))
      .returning()
    return row
  }

  async touch(executor: Db, id: string, at: Date): Promise<void> {
    await executor.update(apiKeys).set({ lastUsedAt: at }).where(eq(apiKeys.id, id))
  }

  async countActiveAdmins(executor: Db): Promise<number> {
    const [row] = await executor
      .select({ count: sql<number>`count(*)::int` })
      .from(apiKeys)
      .where(and(isNull(apiKeys.revokedAt), sql`'admin' = any(${apiKeys.scopes})`))
    return row?.count ?? 0
  }

  async countAll(executor: Db): Promise<number> {
    const [row] = await executor.select({ count: sql<number>`count(*)::int` }).from(apiKeys)
    return row?.count ?? 0
  }

  /** Serialises bootstrap and last-admin checks across instances, until the transaction ends. */
  async lockKeyTable(executor: Db): Promise<void> {
    await executor.execute(sql`select pg_advisory_xact_lock(720451002)`)
  }
}
