import { and, count, desc, eq, getTableColumns, lt, sql } from 'drizzle-orm'
import { connectors, integrations } from '../../../db/schema.ts'
import { idIn } from '../../database/id-in.ts'
import { ChangeSignal } from '../../lib/change-signal.ts'
import type { Db } from '../../database/index.ts'

export type ConnectorRow = typeof connectors.$inferSelect
export type NewConnector = typeof connectors.$inferInsert

export interface ConnectorFilter {
  integrationId?: string
  direction?: ConnectorRow['direction']
  enabled?: boolean
  beforeId?: string
}

const FILTERS = ['integrationId', 'direction', 'enabled', 'beforeId'] as const

/**
 * A connector as it is shown: its row and the connection settings of its integration, which
 * its configuration hash (and so `verified`) depends on. Never the integration's secrets.
 */
function viewQuery(db: Db) {
  return db
    .select({
      ...getTableColumns(connectors),
      integration: {
        tenant: integrations.tenant,
        clientId: integrations.clientId,
        cloud: integrations.cloud,
        authMethod: integrations.authMethod,
        credentialFingerprint: integrations.credentialFingerprint,
      },
    })
    .from(connectors)
    .innerJoin(integrations, eq(integrations.id, connectors.integrationId))
}

export type ConnectorView = Awaited<ReturnType<ReturnType<typeof viewQuery>['execute']>>[number]

/**
 * The reads behind GET /v1/connectors/{id} and the list, each one statement prepared once
 * for `db`. A list is prepared per combination of filters it uses (at most 16), so that
 * each keeps a plan that walks the primary key.
 */
export function prepareConnectorViews(db: Db) {
  const one = viewQuery(db).where(eq(connectors.id, sql.placeholder('id'))).prepare('connector_view')
  const pages = new Map<number, ReturnType<typeof preparePage>>()
  const placeholders = {
    integrationId: () => eq(connectors.integrationId, sql.placeholder('integrationId')),
    direction: () => eq(connectors.direction, sql.placeholder('direction')),
    enabled: () => eq(connectors.enabled, sql.placeholder('enabled')),
    beforeId: () => lt(connectors.id, sql.placeholder('beforeId')),
  }
  function preparePage(shape: number) {
    const conditions = FILTERS.filter((_, bit) => shape & (1 << bit)).map((filter) => placeholders[filter]())
    return viewQuery(db)
      .where(and(...conditions))
      .orderBy(desc(connectors.id))
      .limit(sql.placeholder('limit'))
      .prepare(`connector_views_${shape}`)
  }
  return {
    async one(id: string): Promise<ConnectorView | undefined> {
      return (await one.execute({ id }))[0]
    },
    /** Up to `limit` + 1 rows, newest first, so the caller can tell whether a page follows. */
    async page(filter: ConnectorFilter & { limit: number }): Promise<ConnectorView[]> {
      const shape = FILTERS.reduce((bits, name, bit) => (filter[name] !== undefined ? bits | (1 << bit) : bits), 0)
      let page = pages.get(shape)
      if (!page) pages.set(shape, (page = preparePage(shape)))
      return page.execute({ ...filter, limit: filter.limit + 1 })
    },
  }
}

export class ConnectorRepository {
  /** Emitted on every write: intake's caches of configuration listen (one signal for connectors, routes and blocked addresses). */
  readonly changes: ChangeSignal

  constructor(changes = new ChangeSignal()) {
    this.changes = changes
  }

  async insert(executor: Db, row: NewConnector): Promise<ConnectorRow> {
    const [created] = await executor.insert(connectors).values(row).returning()
    this.changes.emit()
    return created!
  }

  /** findById as a statement prepared once for `db`, for reads outside a transaction (ingest reads it per mail). */
  prepareFindById(db: Db) {
    const query = db.select().from(connectors).where(eq(connectors.id, sql.placeholder('id'))).limit(1).prepare('connector_by_id')
    return async (id: string): Promise<ConnectorRow | undefined> => (await query.execute({ id }))[0]
  }

  async findById(executor: Db, id: string, options: { forUpdate?: boolean } = {}): Promise<ConnectorRow | undefined> {
    const query = executor.select().from(connectors).where(eq(connectors.id, id)).limit(1)
    const [row] = options.forUpdate ? await query.for('update') : await query
    return row
  }

  async findMany(executor: Db, ids: string[]): Promise<ConnectorRow[]> {
    if (ids.length === 0) return []
    return executor.select().from(connectors).where(idIn(connectors.id, ids))
  }

  async findByAddress(executor: Db, direction: ConnectorRow['direction'], address: string) {
    const [row] = await executor
      .select()
      .from(connectors)
      .where(and(eq(connectors.direction, direction), eq(connectors.primaryAddress, address)))
      .limit(1)
    return row
  }

  async update(executor: Db, id: string, changes: Partial<NewConnector>): Promise<ConnectorRow> {
    const [row] = await executor.update(connectors).set(changes).where(eq(connectors.id, id)).returning()
    this.changes.emit()
    return row!
  }

  async delete(executor: Db, id: string): Promise<void> {
    await executor.delete(connectors).where(eq(connectors.id, id))
    this.changes.emit()
  }

  async countByIntegration(executor: Db, integrationId: string): Promise<{ total: number; enabled: number }> {
    const [row] = await executor
      .select({
        total: count(),
        enabled: sql<number>`count(*) filter (where ${connectors.enabled})::int`,
      })
      .from(connectors)
      .where(eq(connectors.integrationId, integrationId))
    return { total: row?.total ?? 0, enabled: row?.enabled ?? 0 }
  }

  /** Atomic, so failures reported by several workers at once all count. */
  async incrementFailures(executor: Db, id: string): Promise<ConnectorRow | undefined> {
    const [row] = await executor
      .update(connectors)
      .set({ consecutiveFailures: sql`${connectors.consecutiveFailures} + 1` })
      .where(eq(connectors.id, id))
      .returning()
    return row
  }
}
