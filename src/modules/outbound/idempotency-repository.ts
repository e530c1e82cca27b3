import { and, eq, gt, lt } from 'drizzle-orm'
import { idempotencyKeys } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'

export type IdempotencyRow = typeof idempotencyKeys.$inferSelect

/** First answers to Idempotency-Key requests, per API key. */
export class IdempotencyRepository {
  /**
   * Claims the key for this request. If another request holds it, this waits for that one
   * to commit (the primary key makes it) and returns what it stored.
   */
  async claim(executor: Db, row: typeof idempotencyKeys.$inferInsert, freshAfter: Date) {
    await executor
      .delete(idempotencyKeys)
      .where(and(eq(idempotencyKeys.apiKeyId, row.apiKeyId), eq(idempotencyKeys.key, row.key), lt(idempotencyKeys.createdAt, freshAfter)))
    const inserted = await executor.insert(idempotencyKeys).values(row).onConflictDoNothing().returning()
    if (inserted.length > 0) return { claimed: true as const }
    const [existing] = await executor
      .select()
      .from(idempotencyKeys)
      .where(and(eq(idempotencyKeys.apiKeyId, row.apiKeyId), eq(idempotencyKeys.key, row.key), gt(idempotencyKeys.createdAt, freshAfter)))
      .limit(1)
    return { claimed: false as const, existing }
  }

  async storeResponse(executor: Db, apiKeyId: string, key: string, status: number, body: Record<string, unknown>) {
    await executor
      .update(idempotencyKeys)
      .set({ responseStatus: status, responseBody: body })
      .where(and(eq(idempotencyKeys.apiKeyId, apiKeyId), eq(idempotencyKeys.key, key)))
  }

  async removeOlderThan(executor: Db, before: Date): Promise<number> {
    const removed = await executor.delete(idempotencyKeys).where(lt(idempotencyKeys.createdAt, before)).returning({ key: idempotencyKeys.key })
    return removed.length
  }
}
