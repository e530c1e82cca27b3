import { sql } from 'drizzle-orm'
import { domainEvents } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'

export type DomainEventRow = typeof domainEvents.$inferSelect
export type NewDomainEvent = typeof domainEvents.$inferInsert

/** Where a reader of the feed stands: after the event (txId, id); (0, nil) is before the first. */
export interface FeedPosition {
  txId: number
  id: string
}

export const FEED_START: FeedPosition = { txId: 0, id: '00000000-0000-0000-0000-000000000000' }

export type FeedRow = Pick<DomainEventRow, 'id' | 'type' | 'subjectType' | 'subjectId' | 'payload' | 'occurredAt' | 'txId'>

const ph = (name: string) => sql.placeholder(name)

export class DomainEventRepository {
  async insert(executor: Db, events: NewDomainEvent[]): Promise<void> {
    if (events.length > 0) await executor.insert(domainEvents).values(events)
  }

  /**
   * The feed's page, prepared once per app: events after a position in (txId, id) order, of
   * transactions older than every one still running. A transaction that began earlier and
   * commits later holds the page back until it ends, and is then read before the ones after
   * it, so a reader's position never passes an event that is still to come.
   */
  prepareFeedPage(db: Db) {
    const e = domainEvents
    return db
      .select({ id: e.id, type: e.type, subjectType: e.subjectType, subjectId: e.subjectId, payload: e.payload, occurredAt: e.occurredAt, txId: e.txId })
      .from(e)
      .where(
        sql`(${e.txId}, ${e.id}) > (${ph('txId')}::bigint, ${ph('id')}::uuid)
          and ${e.txId} < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
          and ${e.type} = any(${ph('types')}::text[])`,
      )
      .orderBy(e.txId, e.id)
      .limit(ph('limit'))
      .prepare('event_feed_page')
  }
}
