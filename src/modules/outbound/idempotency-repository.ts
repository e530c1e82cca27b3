import { and, eq, gt, lt, sql } from 'drizzle-orm'
import { idempotencyKeys } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'

export type IdempotencyRow = typeof idempotencyKeys.$inferSelect

/** First answers to Idempotency-Key requests, per API key. */
export class IdempotencyRepository {
  /**
   * Claims the key for this request with the answer it will give, in one statement: a new key
   * is inserted, an expired one taken over. If another request holds the key, this waits for
   * that one to commit (the primary key makes it) and returns what it stored.
   */
  async claim(executor: Db, row: typeof idempotencyKeys.$inferInsert, freshAfter: Date) {
    const inserted = await executor
      .insert(idempotencyKeys)
      .values(row)
      .onConflictDoUpdate({
        target: [idempotencyKeys.apiKeyId, idempotencyKeys.key],
        set: { requestHash: row.requestHash, responseStatus: row.responseStatus, responseBody: row.responseBody, createdAt: sql`now()` },
        setWhere: lt(idempotencyKeys.createdAt, freshAfter),
      })
      .returning({ key: idempotencyKeys.key })
    if (inserted.length > 0) return { claimed: true as const }
    return { claimed: false as const, existing: await this.findFresh(executor, row.apiKeyId, row.key, freshAfter) }
  }

  /** The answer a key holds, if it was recorded after `freshAfter`. */
  async findFresh(executor: Db, apiKeyId: string, key: string, freshAfter: Date): Promise<IdempotencyRow | undefined> {
    const [existing] = await executor
      .select()
      .from(idempotencyKeys)
      .where(and(eq(idempotencyKeys.apiKeyId, apiKeyId), eq(idempotencyKeys.key, key), gt(idempotencyKeys.createdAt, freshAfter)))
      .limit(1)
    return existing
  }

  async removeOlderThan(executor: Db, before: Date): Promise<number> {
    const removed = await executor.delete(idempotencyKeys).where(lt(idempotencyKeys.createdAt, before)).returning({ key: idempotencyKeys.key })
    return removed.length
  }
}
