import { eq, sql } from 'drizzle-orm'
import { domainEventRetention, domainEvents } from '../../../db/schema.ts'
import { rowsOf, type Db } from '../../database/index.ts'
import { comparePositions, FEED_START, type FeedPosition } from './position.ts'

export type DomainEventRow = typeof domainEvents.$inferSelect
export type NewDomainEvent = typeof domainEvents.$inferInsert

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
  async feedPage(executor: Db, after: FeedPosition, types: readonly string[], limit: number): Promise<{ rows: FeedRow[]; horizon: number; removedThrough: FeedPosition | null }> {
    const result = rowsOf<{
      horizon: string | number
      removed_tx_id: string | number | null
      removed_id: string | null
      id: string | null
      type: string
      subject_type: string
      subject_id: string
      payload: Record<string, unknown>
      occurred_at: string | Date
      tx_id: string | number
    }>(
      await executor.execute(sql`
        with horizon as materialized (select pg_snapshot_xmin(pg_current_snapshot())::text::bigint as xmin)
        select h.xmin as horizon, r.tx_id as removed_tx_id, r.event_id as removed_id, e.id, e.type, e.subject_type, e.subject_id, e.payload, e.occurred_at, e.tx_id
        from horizon h left join ${domainEventRetention} r on r.id = ${RETENTION_ROW} left join lateral (
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
    const first = result[0]
    const removedThrough = first?.removed_id ? { txId: Number(first.removed_tx_id), id: first.removed_id } : null
    return { rows, horizon: Number(first?.horizon ?? 0), removedThrough }
  }

  /** The newest event a reader may see now (below the horizon), or null. */
  async newestVisible(executor: Db): Promise<FeedPosition | null> {
    const [row] = rowsOf<{ tx_id: string | number; id: string }>(
      await executor.execute(sql`
        select tx_id, id from ${domainEvents} where tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
        order by tx_id desc, id desc limit 1`),
    )
    return row ? { txId: Number(row.tx_id), id: row.id } : null
  }

  /** Taken by a transaction that queues deliveries of existing events: the trimming waits for it, and it for the trimming. */
  async holdTrimming(tx: Db): Promise<void> {
    await tx.execute(sql`select pg_advisory_xact_lock_shared(${RETENTION_LOCK}::bigint)`)
  }

  /** The last event the trimming removed (every event up to it in feed order is gone), or null. */
  async removedThrough(executor: Db): Promise<FeedPosition | null> {
    const [mark] = await executor.select({ txId: domainEventRetention.txId, id: domainEventRetention.eventId }).from(domainEventRetention).where(eq(domainEventRetention.id, RETENTION_ROW))
    return mark ?? null
  }

  /**
   * Removes up to `batch` of the oldest events in feed order, stopping at the first one to
   * keep: it occurred at or after `cutoff`, or it is at or after the position `keepFrom`
   * names (someone still needs it), or it is not yet below the horizon (a transaction before it
   * may still commit). Moves the retention mark past what it removed, in the same
   * transaction; instances take turns through an advisory lock, which replays take shared.
   */
  async removeOldest(db: Db, cutoff: Date, keepFrom: (tx: Db) => Promise<FeedPosition | null>, batch: number): Promise<number> {
    return db.transaction(async (tx) => {
      // An advisory lock, not a row lock: it takes no transaction id, so it holds nobody's horizon back while the holds are read.
      await tx.execute(sql`select pg_advisory_xact_lock(${RETENTION_LOCK}::bigint)`)
      const [mark] = await tx.select().from(domainEventRetention).where(eq(domainEventRetention.id, RETENTION_ROW))
      const kept = (await keepFrom(tx)) ?? { txId: Number.MAX_SAFE_INTEGER, id: FEED_START.id }
      const after: FeedPosition = mark ? { txId: mark.txId, id: mark.eventId } : FEED_START
      const removed = rowsOf<{ tx_id: string | number; id: string }>(
        await tx.execute(sql`
          with batch as (
            select id, tx_id, occurred_at < ${cutoff.toISOString()}::timestamptz
              and (tx_id, id) < (${kept.txId}::bigint, ${kept.id}::uuid)
              and tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint as removable
            from ${domainEvents} where (tx_id, id) > (${after.txId}::bigint, ${after.id}::uuid)
            order by tx_id, id limit ${batch}
          ), stop as (select tx_id, id from batch where not removable order by tx_id, id limit 1)
          delete from ${domainEvents} e using batch b
          where e.id = b.id and b.removable and not exists (select 1 from stop s where (s.tx_id, s.id) < (b.tx_id, b.id))
          returning e.tx_id, e.id`),
      )
      if (removed.length === 0) return 0
      const last = removed.map((row) => ({ txId: Number(row.tx_id), id: row.id })).reduce((a, b) => (comparePositions(a, b) >= 0 ? a : b))
      await tx
        .insert(domainEventRetention)
        .values({ id: RETENTION_ROW, txId: last.txId, eventId: last.id, removedAt: new Date() })
        .onConflictDoUpdate({ target: domainEventRetention.id, set: { txId: last.txId, eventId: last.id, removedAt: new Date() } })
      return removed.length
    })
  }
}

const RETENTION_ROW = 1
/** pg_advisory_xact_lock key of trimming the feed; a replay takes it shared. */
const RETENTION_LOCK = 727_001
