import type { AuditDiff } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { newId } from '../../lib/ids.ts'
import { decodeCursor, toPage, type PageResult } from '../../lib/schemas.ts'
import { withIsoDates, type Jsonified } from '../../lib/serialize.ts'
import type { AuditEventRow, AuditRepository } from './repository.ts'

export type AuditAction = 'create' | 'update' | 'delete' | 'test' | 'enable' | 'disable' | 'revoke' | 'confirm_work_item' | 'reprocess' | 'reapply' | 'rotate_secret' | 'replay'

/** Who did it: the API key, or the system itself (bootstrap, automatic disable). */
export interface Actor {
  keyId: string | null
  requestId?: string
}

export const systemActor: Actor = { keyId: null }

export interface AuditEntry {
  action: AuditAction
  resourceType: string
  resourceId: string
  before?: Record<string, unknown> | null
  after?: Record<string, unknown> | null
  /** Extra facts worth keeping, e.g. a test outcome. Must hold no secrets. */
  details?: Record<string, unknown>
}

const SECRET_FIELD = /secret|password|passphrase|privatekey|pfx|keyhash|accesstoken|assertion/i

type FieldChange = { from?: unknown; to?: unknown } | { changed: true; secret: true }

/**
 * Field-by-field difference between two versions of a resource. Secret fields are named
 * but never carry values, so the audit trail cannot leak them.
 */
export function diffRecords(
  before: Record<string, unknown> | null | undefined,
  after: Record<string, unknown> | null | undefined,
): Record<string, FieldChange> {
  const changes: Record<string, FieldChange> = {}
  const fields = new Set([...Object.keys(before ?? {}), ...Object.keys(after ?? {})])
  for (const field of fields) {
    const from = before?.[field]
    const to = after?.[field]
    if (JSON.stringify(normalise(from)) === JSON.stringify(normalise(to))) continue
    if (SECRET_FIELD.test(field)) {
      changes[field] = { changed: true, secret: true }
      continue
    }
    const change: { from?: unknown; to?: unknown } = {}
    if (before) change.from = normalise(from) ?? null
    if (after) change.to = normalise(to) ?? null
    changes[field] = change
  }
  return changes
}

function normalise(value: unknown): unknown {
  return value instanceof Date ? value.toISOString() : value
}

export interface AuditQuery {
  resourceType?: string
  resourceId?: string
  action?: string
  actorKeyId?: string
  since?: string
  until?: string
  limit: number
  cursor?: string
}

export class AuditService {
  private readonly db: Db
  private readonly repository: AuditRepository

  constructor(db: Db, repository: AuditRepository) {
    this.db = db
    this.repository = repository
  }

  /** Call inside the transaction that makes the change, so both land or neither does. */
  async record(executor: Db, actor: Actor, entry: AuditEntry): Promise<void> {
    const diff: AuditDiff = { changes: diffRecords(entry.before, entry.after) }
    if (entry.details) diff.details = stripSecrets(entry.details)
    await this.repository.insert(executor, {
      id: newId(),
      actorKeyId: actor.keyId,
      requestId: actor.requestId ?? null,
      action: entry.action,
      resourceType: entry.resourceType,
      resourceId: entry.resourceId,
      diff,
    })
  }

  async list(query: AuditQuery): Promise<PageResult<Jsonified<AuditEventRow>>> {
    const rows = await this.repository.list(this.db, {
      ...query,
      since: query.since ? new Date(query.since) : undefined,
      until: query.until ? new Date(query.until) : undefined,
      beforeId: decodeCursor(query.cursor),
    })
    const page = toPage(rows, query.limit)
    return { items: page.items.map(withIsoDates), nextCursor: page.nextCursor }
  }
}

function stripSecrets(details: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(details).map(([key, value]) => [key, SECRET_FIELD.test(key) ? '[redacted]' : value]),
  )
}
