import { domainEvents } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'

export type DomainEventRow = typeof domainEvents.$inferSelect
export type NewDomainEvent = typeof domainEvents.$inferInsert

export class DomainEventRepository {
  async insert(executor: Db, events: NewDomainEvent[]): Promise<void> {
    if (events.length > 0) await executor.insert(domainEvents).values(events)
  }
}
