import type { Placeholder } from 'drizzle-orm'
import type { Db } from '../../database/index.ts'
import { newId } from '../../lib/ids.ts'
import { CONFIG_CACHE_MAX_AGE_MS, TtlCache } from '../../lib/ttl-cache.ts'
import type { Actor, AuditService } from '../audit/service.ts'
import type { ConnectionTests } from '../connection-tests/service.ts'
import type { ConnectorRoutes, OwnRouteSpec } from '../connectors/service.ts'
import type { Sender, SenderDirectory } from '../outbound/service.ts'
import type { SenderQuery } from '../outbound/message-repository.ts'
import type { IncomingRoute } from '../inbound/routing.ts'
import { senderQuery, type EmailRouteRepository, type EmailRouteRow } from './repository.ts'

/**
 * Routes as other modules need them: the connectors module (its own route, aliases that must
 * be tested again, removal), sending (who may send as an address) and ingest (where mail goes).
 */
export class RouteBook implements ConnectorRoutes, SenderDirectory {
  private readonly deps: { db: Db; repository: EmailRouteRepository; tests: ConnectionTests; audit: AuditService }
  private readonly findSenderPrepared: ReturnType<EmailRouteRepository['prepareFindSender']>
  private readonly incomingOfPrepared: ReturnType<EmailRouteRepository['prepareIncomingOf']>
  private readonly recentIncoming = new TtlCache<string, IncomingRoute[]>(CONFIG_CACHE_MAX_AGE_MS)

  constructor(deps: { db: Db; repository: EmailRouteRepository; tests: ConnectionTests; audit: AuditService }) {
    this.deps = deps
    this.findSenderPrepared = deps.repository.prepareFindSender(deps.db)
    this.incomingOfPrepared = deps.repository.prepareIncomingOf(deps.db)
    deps.repository.changes.listen(() => this.recentIncoming.clear())
  }

  async createOwnRoute(tx: Db, actor: Actor, spec: OwnRouteSpec): Promise<void> {
    const incoming = spec.direction === 'incoming'
    const route = await this.deps.repository.insert(tx, {
      id: newId(),
      connectorId: spec.connectorId,
      direction: spec.direction,
      kind: incoming ? 'fallback' : 'default',
      name: incoming ? (spec.fallback?.name ?? `${spec.connectorName} fallback`) : spec.connectorName,
      emailAddress: spec.address,
      workItemType: spec.fallback?.workItemType ?? null,
      processId: spec.fallback?.processId ?? null,
      ticketCategory: spec.fallback?.ticketCategory ?? null,
      enabled: true,
      priority: 0,
    })
    await this.deps.audit.record(tx, actor, {
      action: 'create',
      resourceType: 'route',
      resourceId: route.id,
      after: { kind: route.kind, connectorId: spec.connectorId, emailAddress: route.emailAddress, processId: route.processId },
    })
  }

  async followAddress(tx: Db, connectorId: string, address: string): Promise<void> {
    await this.deps.repository.moveConnectorAddress(tx, connectorId, address)
  }

  async removeAllOf(tx: Db, connectorId: string): Promise<number> {
    const routes = await this.deps.repository.listForConnector(tx, connectorId)
    for (const route of routes) await this.deps.tests.deleteFor(tx, 'route', route.id)
    await this.deps.repository.deleteForConnector(tx, connectorId)
    return routes.length
  }

  async disableAliasesOf(tx: Db, actor: Actor, connectorId: string, reason: string): Promise<void> {
    const routes = await this.deps.repository.listForConnector(tx, connectorId)
    for (const alias of routes.filter((route) => route.kind === 'alias' && route.enabled)) {
      await this.deps.repository.update(tx, alias.id, { enabled: false, updatedAt: new Date() })
      await this.deps.audit.record(tx, actor, {
        action: 'disable',
        resourceType: 'route',
        resourceId: alias.id,
        before: { enabled: true },
        after: { enabled: false },
        details: { reason },
      })
    }
  }

  async aliasSendingAs(executor: Db, address: string): Promise<{ id: string; connectorId: string } | undefined> {
    return this.deps.repository.findOutgoingByAddress(executor, address)
  }

  senderQuery(db: Db, address: Placeholder): SenderQuery {
    return senderQuery(db, address)
  }

  /**
   * A connector's enabled incoming routes in evaluation order (specific, wildcard, fallback; by
   * priority). Intake asks for every email: outside a transaction the list may be up to
   * CONFIG_CACHE_MAX_AGE_MS old (a change on this instance applies at once).
   */
  async incomingOf(executor: Db, connectorId: string): Promise<IncomingRoute[]> {
    if (executor === this.deps.db) return this.recentIncoming.get(connectorId, async () => incomingRoutes(await this.incomingOfPrepared(connectorId)))
    return incomingRoutes((await this.deps.repository.listForConnector(executor, connectorId)).filter((row) => row.direction === 'incoming' && row.enabled))
  }

  /** What submitting a message needs to know about a sending address, in one query. */
  async findSender(executor: Db, address: string): Promise<Sender | undefined> {
    // A prepared statement belongs to `db`'s pool; inside a transaction the transaction's own query runs.
    return executor === this.deps.db ? this.findSenderPrepared(address) : this.deps.repository.findSender(executor, address)
  }
}

function incomingRoutes(rows: EmailRouteRow[]): IncomingRoute[] {
  return rows.map((row) => ({
    id: row.id,
    kind: row.kind as IncomingRoute['kind'],
    name: row.name,
    emailAddress: row.emailAddress,
    workItemType: row.workItemType,
    processId: row.processId,
    ticketCategory: row.ticketCategory,
    rules: row.rules,
    testModeOnly: row.testModeOnly,
    sendAutomatedEmails: row.sendAutomatedEmails,
    forAttention: row.forAttention,
  }))
}
