import { EVENT_TYPES, type EventType } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { ValidationError } from '../../lib/errors.ts'
import { CursorExpiredError } from './errors.ts'
import { FeedWatch } from './feed-watch.ts'
import { comparePositions, FEED_START, type FeedPosition } from './position.ts'
import { beforeHorizon, DomainEventRepository, type FeedRow } from './repository.ts'
import type { EventFeedPage, EventFeedQuery, FeedEvent } from './schemas.ts'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** An opaque position: base64url of `txId.id`. */
export function encodeCursor(position: FeedPosition): string {
  return Buffer.from(`${position.txId}.${position.id}`).toString('base64url')
}

export function decodeCursor(cursor: string, field = 'after'): FeedPosition {
  const [txId, id, extra] = Buffer.from(cursor, 'base64url').toString('latin1').split('.')
  if (extra === undefined && txId && /^\d{1,18}$/.test(txId) && id && UUID.test(id)) return { txId: Number(txId), id }
  throw new ValidationError([{ field, message: 'is not a cursor this feed gave out: pass a `next` or an event’s `cursor` as it came, or leave it out to read from the oldest event' }])
}

/**
 * Event types named by a list of patterns (`work_item.requested`, `message.*`, `*`). A
 * pattern that names no type is refused, naming the field and the types there are.
 */
export function matchEventTypes(patterns: readonly string[], field: string): EventType[] {
  const matched = new Set<EventType>()
  for (const pattern of patterns) {
    const family = pattern.endsWith('.*') ? pattern.slice(0, -1) : undefined
    const hits = EVENT_TYPES.filter((type) => pattern === '*' || type === pattern || (family !== undefined && type.startsWith(family)))
    if (hits.length === 0) throw new ValidationError([{ field, message: `"${pattern.slice(0, 64)}" names no event type: use one of ${EVENT_TYPES.join(', ')}, a family such as message.*, or *` }])
    for (const hit of hits) matched.add(hit)
  }
  return [...matched]
}

function waitSeconds(wait: string | undefined): number {
  return wait === undefined ? 0 : Number(wait.replace(/s$/, ''))
}

/**
 * The event feed: events in commit order after a cursor, optionally waiting for the next
 * ones (long poll). Reads are one prepared statement; a long poll reads again when the
 * process's shared watch (every `pollMs`) sees a newer event, the wait is over or the reader
 * has gone.
 */
export class EventFeed {
  private readonly db: Db
  private readonly repository: DomainEventRepository
  private readonly watch: FeedWatch

  constructor(db: Db, repository = new DomainEventRepository(), options: { pollMs?: number } = {}) {
    this.db = db
    this.repository = repository
    this.watch = new FeedWatch(db, repository, options.pollMs ?? 250)
  }

  async read(query: EventFeedQuery, signal?: AbortSignal): Promise<EventFeedPage> {
    let position = query.after === undefined ? FEED_START : decodeCursor(query.after)
    const types = query.types === undefined ? [...EVENT_TYPES] : matchEventTypes(query.types.split(',').map((type) => type.trim()), 'types')
    const deadline = Date.now() + waitSeconds(query.wait) * 1000
    for (let read = 0; ; read++) {
      const { rows, horizon, removedThrough } = await this.repository.feedPage(this.db, position, types, query.limit)
      // A position behind what was removed missed events: said so, on every read of a long poll
      // too. Only a reader without a cursor, on its first read, starts at the oldest event kept.
      if (removedThrough && comparePositions(position, removedThrough) < 0) {
        if (query.after !== undefined || read > 0) throw new CursorExpiredError()
        position = removedThrough
      }
      const last = rows.at(-1)
      if (last) position = { txId: last.txId, id: last.id }
      // A short page read everything of its types below the horizon: the reader moves up to it,
      // so a filtered reader does not scan the same other events again and again.
      if (rows.length < query.limit && horizon - 1 >= position.txId) position = beforeHorizon(horizon)
      if (rows.length > 0 || Date.now() >= deadline || signal?.aborted) return { items: rows.map(present), next: encodeCursor(position) }
      await this.watch.wait(position, deadline, signal)
    }
  }
}

function present(row: FeedRow): FeedEvent {
  return {
    id: row.id,
    type: row.type,
    occurredAt: row.occurredAt.toISOString(),
    subject: { type: row.subjectType, id: row.subjectId },
    data: row.payload,
    cursor: encodeCursor({ txId: row.txId, id: row.id }),
  }
}
