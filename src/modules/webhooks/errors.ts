import { DomainError } from '../../lib/errors.ts'

/** A replay of a delivery whose event the feed no longer keeps (EVENT_RETENTION_DAYS). */
export class EventNotKeptError extends DomainError {
  readonly code = 'EVENT_NOT_KEPT'
  readonly status = 410
  readonly title = 'The event is no longer kept'

  constructor(eventId: string) {
    super(`Event ${eventId} was removed (EVENT_RETENTION_DAYS), so it cannot be delivered again; fetch the resource it was about from the API instead.`, { eventId })
  }
}
