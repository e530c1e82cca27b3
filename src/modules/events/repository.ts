import { sql } from 'drizzle-orm'
import { domainEvents } from '../../../db/schema.ts'
import { rowsOf, type Db } from '../../database/index.ts'

export type DomainEventRow = typeof domainEvents.$inferSelect
export type NewDomainEvent = typeof domainEvents.$inferInsert

/** Where a reader of the feed stands: after the event (txId, id); (0, nil) is before the first. */
export interface FeedPosition {
  txId: number
  id: string
}

export const FEED_START: FeedPosition = { txId: 0, id: '00000000-0000-0000-0000-000000000000' }

/** Past every event of transaction ids below `horizon`: no event still to come sorts before it. */
export function beforeHorizon(horizon: number): FeedPosition {
  return { txId: horizon - 1, id: 'ffffffff-ffff-ffff-ffff-ffffffffffff' }
}

export type FeedRow = Pick<DomainEventRow, 'id' | 'type' | 'subjectType' | 'subjectId' | 'payload' | 'occurredAt' | 'txId'>


export class DomainEventRepository {
  async insert(executor: Db, events: NewDomainEvent[]): Promise<void> {
    if (events.length > 0) await executor.insert(domainEvents).values(events)
  }

  /**
   * The feed's page: events after a position in (txId, id) order, of transactions older than
   * every one still running (the snapshot's xmin). A transaction that began earlier and
   * commits later holds the page back until it ends, and is then read before the ones after
   * it, so a reader's position never passes an event that is still to come. The horizon comes
   * back with the rows, read in the same snapshot: a short page may move the reader up to it.
   * (postgres.js prepares the statement on first use and reuses it.)
   */
  async feedPage(executor: Db, after: FeedPosition, types: readonly string[], limit: number): Promise<{ rows: FeedRow[]; horizon: number }> {
    const result = rowsOf<{ horizon: string | number; id: string | null; type: string; subject_type: string; subject_id: string; payload: Record<string, unknown>; occurred_at: string | Date; tx_id: string | number }>(
      await executor.execute(sql`
        with horizon as materialized (select pg_snapshot_xmin(pg_current_snapshot())::text::bigint as xmin)
        select h.xmin as horizon, e.id, e.type, e.subject_type, e.subject_id, e.payload, e.occurred_at, e.tx_id
        from horizon h left join lateral (
          select id, type, subject_type, subject_id, payload, occurred_at, tx_id from ${domainEvents}
          where (tx_id, id) > (${after.txId}::bigint, ${after.id}::uuid) and tx_id < h.xmin and type = any(${`{${types.join(',')}}`}::text[])
          order by tx_id, id limit ${limit}
        ) e on true`),
    )
    const rows: FeedRow[] = result
      .filter((row) => row.id !== null)
      .map((row) => ({
        id: row.id!,
        type: row.type as FeedRow['type'],
        subjectType: row.subject_type,
        subjectId: row.subject_id,
        payload: row.payload,
        occurredAt: new Date(row.occurred_at),
        txId: Number(row.tx_id),
      }))
    return { rows, horizon: Number(result[0]?.horizon ?? 0) }
  }
}
