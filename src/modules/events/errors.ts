import { DomainError } from '../../lib/errors.ts'

/** The reader's cursor points into events the feed no longer keeps (EVENT_RETENTION_DAYS). */
export class CursorExpiredError extends DomainError {
  readonly code = 'CURSOR_EXPIRED'
  readonly status = 410
  readonly title = 'The cursor points at events no longer kept'

  constructor() {
    super(
      'Events after this cursor were removed (EVENT_RETENTION_DAYS) before they were read: leave `after` out to read on from the oldest event kept, and fetch what you missed from the API (received emails, messages).',
      { field: 'after' },
    )
  }
}
