import type { EventType } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { newId } from '../../lib/ids.ts'
import type { FeedPosition } from './position.ts'
import { DomainEventRepository, type NewDomainEvent } from './repository.ts'

export interface DomainEvent {
  type: EventType
  subjectType: string
  subjectId: string
  payload: Record<string, unknown>
  occurredAt?: Date
}

/**
 * Records what happened for subscribers (the event feed and webhooks). Call it inside the
 * transaction that makes the change, so no event is lost and none describes a change that
 * was rolled back.
 */
export class EventLog {
  private readonly repository: DomainEventRepository

  constructor(repository: DomainEventRepository = new DomainEventRepository()) {
    this.repository = repository
  }

  async record(tx: Db, event: DomainEvent): Promise<void> {
    await this.recordAll(tx, [event])
  }

  /** Several events in one statement, in the order given. */
  async recordAll(tx: Db, events: DomainEvent[]): Promise<void> {
    await this.repository.insert(tx, this.rows(events))
  }

  /**
   * For a transaction that queues work on existing events (a webhook replay): the feed's
   * trimming waits until it ends, so an event it saw is not removed under it.
   */
  async holdTrimming(tx: Db): Promise<void> {
    await this.repository.holdTrimming(tx)
  }

  /** The last event the feed's trimming removed (everything up to it in feed order is gone), or null. */
  async removedThrough(executor: Db): Promise<FeedPosition | null> {
    return this.repository.removedThrough(executor)
  }

  /** The rows of these events, ids in their order, for a module that writes them in a statement of its own. */
  rows(events: DomainEvent[]): NewDomainEvent[] {
    return events.map((event) => ({ id: newId(), ...event, occurredAt: event.occurredAt ?? new Date() }))
  }
}
