import type { EventType } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { newId } from '../../lib/ids.ts'
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

  /** The rows of these events, ids in their order, for a module that writes them in a statement of its own. */
  rows(events: DomainEvent[]): NewDomainEvent[] {
    return events.map((event) => ({ id: newId(), ...event, occurredAt: event.occurredAt ?? new Date() }))
  }
}
