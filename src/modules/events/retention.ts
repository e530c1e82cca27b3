import type { Db } from '../../database/index.ts'
import { removeInBatches } from '../../workers/housekeeping.ts'
import { comparePositions, type FeedPosition } from './position.ts'
import type { DomainEventRepository } from './repository.ts'

/**
 * A module's claim on events it has not finished with: the first feed position it may still
 * need, kept with everything after it (null: none). Webhooks hold the events still to fan out
 * or to deliver.
 */
export type EventHold = (executor: Db) => Promise<FeedPosition | null>

/**
 * Trims the feed (EVENT_RETENTION_DAYS): events that occurred before a cutoff are removed,
 * oldest first in feed order, up to the first one that is younger or still held. A reader
 * whose cursor points into what was removed is told so (CURSOR_EXPIRED) instead of silently
 * missing events.
 */
export class EventRetention {
  private readonly db: Db
  private readonly repository: DomainEventRepository
  private readonly holds: EventHold[]

  constructor(deps: { db: Db; repository: DomainEventRepository; holds: EventHold[] }) {
    this.db = deps.db
    this.repository = deps.repository
    this.holds = deps.holds
  }

  async removeOlderThan(cutoff: Date): Promise<number> {
    return removeInBatches((batch) => this.repository.removeOldest(this.db, cutoff, (tx) => this.keepFrom(tx), batch))
  }

  private async keepFrom(tx: Db): Promise<FeedPosition | null> {
    let first: FeedPosition | null = null
    for (const hold of this.holds) {
      const position = await hold(tx)
      if (position && (first === null || comparePositions(position, first) < 0)) first = position
    }
    return first
  }
}
