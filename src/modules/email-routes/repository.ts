import { and, asc, desc, eq, lt, max, sql, type Placeholder, type SQL } from 'drizzle-orm'
import { connectors, emailRoutes } from '../../../db/schema.ts'
import { idIn } from '../../database/id-in.ts'
import type { Db } from '../../database/index.ts'
import { ChangeSignal } from '../../lib/change-signal.ts'

export type EmailRouteRow = typeof emailRoutes.$inferSelect
export type NewEmailRoute = typeof emailRoutes.$inferInsert

/** Who sends as an address: its outgoing route (default or alias) and that route's connector. */
/** Who sends as an address: its outgoing route and that route's connector (at most one row). */
export function senderQuery(executor: Db, address: string | Placeholder) {
  // Named apart, as the submit statement selects them from a CTE.
  return executor
    .select({
      routeId: sql<string>`${emailRoutes.id}`.as('route_id'),
      routeEnabled: sql<boolean>`${emailRoutes.enabled}`.as('route_enabled'),
      connectorId: sql<string>`${connectors.id}`.as('connector_id'),
      connectorEnabled: sql<boolean>`${connectors.enabled}`.as('connector_enabled'),
      integrationId: sql<string>`${connectors.integrationId}`.as('integration_id'),
    })
    .from(emailRoutes)
    .innerJoin(connectors, eq(connectors.id, emailRoutes.connectorId))
    .where(and(eq(emailRoutes.direction, 'outgoing'), eq(emailRoutes.emailAddress, address)))
    .limit(1)
}

export class EmailRouteRepository {
  /** Emitted on every write: intake's caches of configuration listen (one signal for connectors, routes and blocked addresses). */
  readonly changes: ChangeSignal

  constructor(changes = new ChangeSignal()) {
    this.changes = changes
  }

  async insert(executor: Db, row: NewEmailRoute): Promise<EmailRouteRow> {
    const [created] = await executor.insert(emailRoutes).values(row).returning()
    this.changes.emit()
    return created!
  }

  async listForConnector(executor: Db, connectorId: string): Promise<EmailRouteRow[]> {
    return this.listForConnectors(executor, [connectorId])
  }

  /** The routes of each connector in evaluation order, the connectors one after another. */
  async listForConnectors(executor: Db, connectorIds: string[]): Promise<EmailRouteRow[]> {
    if (connectorIds.length === 0) return []
    return executor
      .select()
      .from(emailRoutes)
      .where(idIn(emailRoutes.connectorId, connectorIds))
      .orderBy(
        asc(emailRoutes.connectorId),
        sql`case ${emailRoutes.kind} when 'default' then 0 when 'specific' then 1 when 'wildcard' then 2 when 'alias' then 3 else 4 end`,
        asc(emailRoutes.priority),
        asc(emailRoutes.id),
      )
  }

  /** What the submit path needs about a sending address, in one query (it runs for every message). */
  async findSender(executor: Db, address: string) {
    const [row] = await senderQuery(executor, address)
    return row
  }

  /** A connector's enabled incoming routes in evaluation order, prepared once for `db` (ingest reads them per mail). */
  prepareIncomingOf(db: Db) {
    const query = db
      .select()
      .from(emailRoutes)
      .where(and(eq(emailRoutes.connectorId, sql.placeholder('connectorId')), eq(emailRoutes.direction, 'incoming'), eq(emailRoutes.enabled, true)))
      .orderBy(sql`case ${emailRoutes.kind} when 'specific' then 1 when 'wildcard' then 2 else 4 end`, asc(emailRoutes.priority), asc(emailRoutes.id))
      .prepare('incoming_routes_of')
    return (connectorId: string): Promise<EmailRouteRow[]> => query.execute({ connectorId })
  }

  /** findSender as a statement prepared once for `db`, for the submit path outside a transaction. */
  prepareFindSender(db: Db) {
    const query = senderQuery(db, sql.placeholder('address')).prepare('find_sender')
    return async (address: string) => (await query.execute({ address }))[0]
  }

  async findById(executor: Db, id: string, options: { forUpdate?: boolean } = {}): Promise<EmailRouteRow | undefined> {
    const query = executor.select().from(emailRoutes).where(eq(emailRoutes.id, id)).limit(1)
    const [row] = options.forUpdate ? await query.for('update') : await query
    return row
  }

  async findOutgoingByAddress(executor: Db, address: string): Promise<EmailRouteRow | undefined> {
    const [row] = await executor
      .select()
      .from(emailRoutes)
      .where(and(eq(emailRoutes.direction, 'outgoing'), eq(emailRoutes.emailAddress, address)))
      .limit(1)
    return row
  }

  async list(executor: Db, filter: { direction?: EmailRouteRow['direction']; beforeId?: string; limit: number }) {
    const conditions: SQL[] = []
    if (filter.direction) conditions.push(eq(emailRoutes.direction, filter.direction))
    if (filter.beforeId) conditions.push(lt(emailRoutes.id, filter.beforeId))
    return executor
      .select()
      .from(emailRoutes)
      .where(and(...conditions))
      .orderBy(desc(emailRoutes.id))
      .limit(filter.limit + 1)
  }

  async nextPriority(executor: Db, connectorId: string, kind: EmailRouteRow['kind']): Promise<number> {
    const [row] = await executor
      .select({ highest: max(emailRoutes.priority) })
      .from(emailRoutes)
      .where(and(eq(emailRoutes.connectorId, connectorId), eq(emailRoutes.kind, kind)))
    return row?.highest === null || row?.highest === undefined ? 0 : row.highest + 1
  }

  async update(executor: Db, id: string, changes: Partial<NewEmailRoute>): Promise<EmailRouteRow> {
    const [row] = await executor.update(emailRoutes).set(changes).where(eq(emailRoutes.id, id)).returning()
    this.changes.emit()
    return row!
  }

  async delete(executor: Db, id: string): Promise<void> {
    await executor.delete(emailRoutes).where(eq(emailRoutes.id, id))
    this.changes.emit()
  }

  async deleteForConnector(executor: Db, connectorId: string): Promise<void> {
    await executor.delete(emailRoutes).where(eq(emailRoutes.connectorId, connectorId))
    this.changes.emit()
  }

  /** The routes that carry the connector's own address (fallback or default) follow it. */
  async moveConnectorAddress(executor: Db, connectorId: string, address: string): Promise<void> {
    await executor
      .update(emailRoutes)
      .set({ emailAddress: address, updatedAt: new Date() })
      .where(and(eq(emailRoutes.connectorId, connectorId), sql`${emailRoutes.kind} in ('fallback', 'default')`))
    this.changes.emit()
  }
}
