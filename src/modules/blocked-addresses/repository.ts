import { and, desc, eq, lt, or, sql, type Placeholder, type SQL } from 'drizzle-orm'
import { blockedAddresses, type BlockAction } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { ChangeSignal } from '../../lib/change-signal.ts'

export type BlockedAddressRow = typeof blockedAddresses.$inferSelect
export type NewBlockedAddress = typeof blockedAddresses.$inferInsert

/**
 * The block of a sender, in one query: its exact address, else its `*@domain` (at most one
 * row). A pattern holds `*` only as the whole local part, so the exact address sorts first.
 */
export function matchQuery(executor: Db, address: string | Placeholder, domainPattern: string | Placeholder) {
  return executor
    .select({ id: blockedAddresses.id, pattern: blockedAddresses.pattern, action: blockedAddresses.action })
    .from(blockedAddresses)
    .where(or(eq(blockedAddresses.pattern, address), eq(blockedAddresses.pattern, domainPattern)))
    .orderBy(sql`${blockedAddresses.pattern} like '*@%'`)
    .limit(1)
}

export class BlockedAddressRepository {
  /** Emitted on every write: intake's caches of configuration listen (one signal for connectors, routes and blocked addresses). */
  readonly changes: ChangeSignal

  constructor(changes = new ChangeSignal()) {
    this.changes = changes
  }

  /** Inserts unless the pattern is taken (the unique constraint decides, also between racing requests). */
  async insertUnlessTaken(executor: Db, row: NewBlockedAddress): Promise<BlockedAddressRow | undefined> {
    const [created] = await executor.insert(blockedAddresses).values(row).onConflictDoNothing({ target: blockedAddresses.pattern }).returning()
    this.changes.emit()
    return created
  }

  async findById(executor: Db, id: string, options: { forUpdate?: boolean } = {}): Promise<BlockedAddressRow | undefined> {
    const query = executor.select().from(blockedAddresses).where(eq(blockedAddresses.id, id)).limit(1)
    const [row] = options.forUpdate ? await query.for('update') : await query
    return row
  }

  async findByPattern(executor: Db, pattern: string): Promise<BlockedAddressRow | undefined> {
    const [row] = await executor.select().from(blockedAddresses).where(eq(blockedAddresses.pattern, pattern)).limit(1)
    return row
  }

  /** Newest first (UUIDv7 ids), keyset-paged; `contains` is lower case, matched as plain text. */
  async list(executor: Db, filter: { action?: BlockAction; contains?: string; beforeId?: string; limit: number }) {
    const conditions: SQL[] = []
    if (filter.action) conditions.push(eq(blockedAddresses.action, filter.action))
    if (filter.contains) conditions.push(sql`strpos(${blockedAddresses.pattern}, ${filter.contains}) > 0`)
    if (filter.beforeId) conditions.push(lt(blockedAddresses.id, filter.beforeId))
    return executor
      .select()
      .from(blockedAddresses)
      .where(and(...conditions))
      .orderBy(desc(blockedAddresses.id))
      .limit(filter.limit + 1)
  }

  async match(executor: Db, address: string, domainPattern: string) {
    const [row] = await matchQuery(executor, address, domainPattern)
    return row
  }

  /** Every blocked address (at most `limit`), prepared once for `db`: intake keeps a short-lived copy. */
  prepareAll(db: Db) {
    const query = db
      .select({ id: blockedAddresses.id, pattern: blockedAddresses.pattern, action: blockedAddresses.action })
      .from(blockedAddresses)
      .limit(sql.placeholder('limit'))
      .prepare('all_blocked_addresses')
    return (limit: number) => query.execute({ limit })
  }

  /** match as a statement prepared once for `db`: the ingest pipeline asks it for every email. */
  prepareMatch(db: Db) {
    const query = matchQuery(db, sql.placeholder('address'), sql.placeholder('domainPattern')).prepare('match_blocked_address')
    return async (address: string, domainPattern: string) => (await query.execute({ address, domainPattern }))[0]
  }

  async update(executor: Db, id: string, changes: Partial<NewBlockedAddress>): Promise<BlockedAddressRow> {
    const [row] = await executor.update(blockedAddresses).set(changes).where(eq(blockedAddresses.id, id)).returning()
    this.changes.emit()
    return row!
  }

  async delete(executor: Db, id: string): Promise<void> {
    await executor.delete(blockedAddresses).where(eq(blockedAddresses.id, id))
    this.changes.emit()
  }
}
