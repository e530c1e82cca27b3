import type { BlockAction } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { ConflictError, NotFoundError } from '../../lib/errors.ts'
import { newId } from '../../lib/ids.ts'
import { decodeCursor, toPage, type PageResult } from '../../lib/schemas.ts'
import { withIsoDates } from '../../lib/serialize.ts'
import { CONFIG_CACHE_MAX_AGE_MS, TtlCache } from '../../lib/ttl-cache.ts'
import type { Actor, AuditService } from '../audit/service.ts'
import type { BlockedAddressRepository, BlockedAddressRow, NewBlockedAddress } from './repository.ts'
import type { BlockedAddress, CreateBlockedAddressInput, ListBlockedAddressesInput, UpdateBlockedAddressInput } from './schemas.ts'
import { databaseErrorCode } from '../../database/error-code.ts'

/** The block that applies to a sender. */
export interface BlockMatch {
  id: string
  pattern: string
  action: BlockAction
}

/**
 * The port the ingest pipeline asks about every sender: the block of its exact address, else
 * of its `*@domain`, else undefined. Runs on `executor`, so it sees the caller's transaction.
 */
export interface SenderBlocklist {
  match(executor: Db, address: string): Promise<BlockMatch | undefined>
}

export class BlockedAddressExistsError extends ConflictError {
  override readonly code = 'BLOCKED_ADDRESS_EXISTS'
  override readonly title = 'The pattern is already blocked'
}

export interface BlockedAddressServiceDeps {
  db: Db
  repository: BlockedAddressRepository
  audit: AuditService
}

const RESOURCE = 'blocked address'
/** Up to this many blocked addresses, intake matches senders against a copy in memory. */
const MATCHED_IN_MEMORY_UP_TO = 10_000

export class BlockedAddressService implements SenderBlocklist {
  private readonly deps: BlockedAddressServiceDeps
  private readonly matchPrepared: ReturnType<BlockedAddressRepository['prepareMatch']>
  private readonly allPrepared: ReturnType<BlockedAddressRepository['prepareAll']>
  /** By pattern; null when there are too many to hold (then each match is a read). */
  private readonly recent = new TtlCache<'all', Map<string, BlockMatch> | null>(CONFIG_CACHE_MAX_AGE_MS, 1)

  constructor(deps: BlockedAddressServiceDeps) {
    this.deps = deps
    this.matchPrepared = deps.repository.prepareMatch(deps.db)
    this.allPrepared = deps.repository.prepareAll(deps.db)
    deps.repository.changes.listen(() => this.recent.clear())
  }

  /** db.transaction, after which intake's caches forget what they read meanwhile (the change is committed now). */
  private transaction<T>(work: (tx: Db) => Promise<T>): Promise<T> {
    return this.deps.repository.changes.after(this.deps.db.transaction(work))
  }

  /**
   * The pattern's uniqueness is the table's: ON CONFLICT DO NOTHING, so of two racing creates
   * one stores it and the other is told which row holds it.
   */
  async create(actor: Actor, input: CreateBlockedAddressInput): Promise<BlockedAddress> {
    const pattern = input.pattern.toLowerCase()
    const row = await this.transaction(async (tx) => {
      // The holder of a taken pattern can be deleted before it is read; then the insert is tried again.
      for (let attempt = 0; attempt < 3; attempt++) {
        const created = await this.deps.repository.insertUnlessTaken(tx, {
          id: newId(),
          pattern,
          action: input.action,
          note: input.note ?? null,
        })
        if (created) {
          await this.deps.audit.record(tx, actor, { action: 'create', resourceType: 'blocked_address', resourceId: created.id, after: snapshot(created) })
          return created
        }
        const holder = await this.deps.repository.findByPattern(tx, pattern)
        if (holder) throw existsError(holder)
      }
      throw new ConflictError(`The pattern ${pattern} is being blocked and unblocked by other requests right now. Read the current state and retry.`)
    })
    return present(row)
  }

  async list(query: ListBlockedAddressesInput): Promise<PageResult<BlockedAddress>> {
    const rows = await this.deps.repository.list(this.deps.db, {
      action: query.action,
      contains: query.q?.toLowerCase(),
      beforeId: decodeCursor(query.cursor),
      limit: query.limit,
    })
    const page = toPage(rows, query.limit)
    return { items: page.items.map(present), nextCursor: page.nextCursor }
  }

  async get(id: string): Promise<BlockedAddress> {
    return present(await this.require(this.deps.db, id))
  }

  async update(actor: Actor, id: string, input: UpdateBlockedAddressInput): Promise<BlockedAddress> {
    const pattern = input.pattern?.toLowerCase()
    try {
      const row = await this.transaction(async (tx) => {
        const existing = await this.require(tx, id, { forUpdate: true })
        const changes: Partial<NewBlockedAddress> = { updatedAt: new Date() }
        if (pattern !== undefined) changes.pattern = pattern
        if (input.action !== undefined) changes.action = input.action
        if (input.note !== undefined) changes.note = input.note
        const updated = await this.deps.repository.update(tx, id, changes)
        await this.deps.audit.record(tx, actor, {
          action: 'update',
          resourceType: 'blocked_address',
          resourceId: id,
          before: snapshot(existing),
          after: snapshot(updated),
        })
        return updated
      })
      return present(row)
    } catch (error) {
      // The unique constraint refused the new pattern (the transaction is rolled back): name its holder.
      if (pattern !== undefined && isUniqueViolation(error)) {
        const holder = await this.deps.repository.findByPattern(this.deps.db, pattern)
        if (holder && holder.id !== id) throw existsError(holder)
      }
      throw error
    }
  }

  async delete(actor: Actor, id: string): Promise<void> {
    await this.transaction(async (tx) => {
      const existing = await this.require(tx, id, { forUpdate: true })
      await this.deps.repository.delete(tx, id)
      await this.deps.audit.record(tx, actor, { action: 'delete', resourceType: 'blocked_address', resourceId: id, before: snapshot(existing) })
    })
  }

  /**
   * The block of a sender: its exact address wins over its `*@domain` (the part after the last
   * @), compared lower case. Undefined when neither is blocked or the address has no domain.
   */
  async match(executor: Db, address: string): Promise<BlockMatch | undefined> {
    const lower = address.toLowerCase()
    const at = lower.lastIndexOf('@')
    if (at === -1 || at === lower.length - 1) return undefined
    const domainPattern = `*@${lower.slice(at + 1)}`
    // Inside a transaction the transaction's own query runs, and sees its writes.
    if (executor !== this.deps.db) return this.deps.repository.match(executor, lower, domainPattern)
    const all = await this.recent.get('all', () => this.readAll())
    if (!all) return this.matchPrepared(lower, domainPattern)
    return all.get(lower) ?? all.get(domainPattern)
  }

  /**
   * Every blocked address by pattern, read at most once per CONFIG_CACHE_MAX_AGE_MS (a block
   * added on another instance applies here within that time), or null when there are more
   * than MATCHED_IN_MEMORY_UP_TO.
   */
  private async readAll(): Promise<Map<string, BlockMatch> | null> {
    const rows = await this.allPrepared(MATCHED_IN_MEMORY_UP_TO + 1)
    return rows.length > MATCHED_IN_MEMORY_UP_TO ? null : new Map(rows.map((row) => [row.pattern, row]))
  }

  private async require(executor: Db, id: string, options: { forUpdate?: boolean } = {}): Promise<BlockedAddressRow> {
    const row = await this.deps.repository.findById(executor, id, options)
    if (!row) throw new NotFoundError(RESOURCE, id)
    return row
  }
}

function existsError(holder: BlockedAddressRow): BlockedAddressExistsError {
  return new BlockedAddressExistsError(
    `${holder.pattern} is already blocked (${holder.action}) by blocked address ${holder.id}; change that one with PATCH /v1/blocked-addresses/${holder.id}.`,
    { field: 'pattern', existingId: holder.id },
  )
}

function isUniqueViolation(error: unknown): boolean {
  return databaseErrorCode(error) === '23505'
}

function present(row: BlockedAddressRow): BlockedAddress {
  return withIsoDates(row)
}

function snapshot(row: BlockedAddressRow): Record<string, unknown> {
  const { createdAt: _c, updatedAt: _u, ...rest } = row
  return rest
}
