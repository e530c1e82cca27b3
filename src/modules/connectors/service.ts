import { hash } from 'node:crypto'
import type { EventLog } from '../events/service.ts'
import type { Direction } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import type { MailboxError } from '../../graph/errors.ts'
import { NotFoundError, ValidationError } from '../../lib/errors.ts'
import { newId } from '../../lib/ids.ts'
import { decodeCursor, toPage, type PageResult } from '../../lib/schemas.ts'
import { CONFIG_CACHE_MAX_AGE_MS, TtlCache } from '../../lib/ttl-cache.ts'
import { systemActor, type Actor, type AuditService } from '../audit/service.ts'
import type { TestsOf } from '../connection-tests/service.ts'
import { presentTest, type TestResult } from '../connection-tests/schemas.ts'
import { CandidateTestRequiredError, EnableGateError, type ConnectionTests } from '../connection-tests/service.ts'
import { testSending } from '../connection-tests/test-message.ts'
import type { Mailboxes } from '../integrations/mailbox-access.ts'
import { AddressInUseError, DirectionImmutableError, UnknownIntegrationError } from './errors.ts'
import { testIncoming } from './incoming-test.ts'
import { prepareConnectorViews, type ConnectorRepository, type ConnectorRow, type ConnectorView, type NewConnector } from './repository.ts'
import {
  INCOMING_ONLY_FIELDS,
  type Connector,
  type CreateConnectorInput,
  type EnableConnectorInput,
  type ListConnectorsInput,
  type TestConnectorInput,
  type UpdateConnectorInput,
} from './schemas.ts'

/** What connectors need to know of an integration. */
export interface IntegrationStates {
  exists(executor: Db, integrationId: string): Promise<boolean>
  /** `forShare` holds the integration against concurrent change until the transaction ends. */
  state(executor: Db, integrationId: string, options?: { forShare?: boolean }): Promise<{ verified: boolean; identityHash: string } | undefined>
  /** Which app in which tenant and cloud, as a hash: what a connector's tests depend on. */
  identityHashOf(connection: IntegrationConnection): string
  /** The hash of the connection an integration test proves. */
  configHashOf(connection: IntegrationConnection): string
}

/** The connection settings of an integration, as a connector is shown with them. */
export type IntegrationConnection = ConnectorView['integration']

/** The connector's own route as its creator describes it. */
export interface OwnRouteSpec {
  connectorId: string
  direction: Direction
  /** The connector's name, from which the route's is made. */
  connectorName: string
  address: string
  /** Incoming only: the process unrouted mail becomes. */
  fallback?: NonNullable<CreateConnectorInput['fallbackRoute']>
}

/** What connectors need of the mailbox sync: an enabled incoming connector's folders are read from then on. */
export interface IncomingSync {
  /** In the enable's transaction: the folders (ids from the test) due now, mail from now on or from `importSince`. */
  startConnector(tx: Db, connectorId: string, folderIds: Record<string, string>, importSince?: Date): Promise<void>
  /** After the enable committed. */
  connectorStarted(): void
}

/** What connectors need of their routes (the email-routes module). */
export interface ConnectorRoutes {
  /** Creates the fallback (incoming) or default (outgoing) route, in the connector's transaction. */
  createOwnRoute(tx: Db, actor: Actor, spec: OwnRouteSpec): Promise<void>
  /** The connector's own route follows its new address. */
  followAddress(tx: Db, connectorId: string, address: string): Promise<void>
  /** Removes the connector's routes and their tests; returns how many there were. */
  removeAllOf(tx: Db, connectorId: string): Promise<number>
  /** Aliases were proven for the old mailbox or app: they must be tested again. */
  disableAliasesOf(tx: Db, actor: Actor, connectorId: string, reason: string): Promise<void>
  /** The alias (outgoing route) that sends as `address`, if there is one. */
  aliasSendingAs(executor: Db, address: string): Promise<{ id: string; connectorId: string } | undefined>
}

/** The settings a connection test proves; anything else may change while enabled. */
interface ConnectorConnection {
  integrationId: string
  direction: Direction
  primaryAddress: string
  folderPaths: string[] | null
  afterProcessing: string | null
}

type ConnectionField = 'integrationId' | 'primaryAddress' | 'folderPaths' | 'afterProcessing'

/**
 * The integration enters through its identity (tenant, app, cloud): moving to another app
 * needs a new test, rotating the app's secret does not.
 */
export function connectorConfigHash(connection: ConnectorConnection, integrationIdentity: string): string {
  return hash(
    'sha256',
    JSON.stringify([
      integrationIdentity,
      connection.direction,
      connection.primaryAddress.toLowerCase(),
      connection.folderPaths?.map((path) => path.toLowerCase()) ?? null,
      connection.afterProcessing?.toLowerCase() ?? null,
    ]),
  )
}

function connectionOf(row: ConnectorRow): ConnectorConnection {
  return {
    integrationId: row.integrationId,
    direction: row.direction,
    primaryAddress: row.primaryAddress,
    folderPaths: row.folderPaths,
    afterProcessing: row.afterProcessing,
  }
}

export interface ConnectorServiceDeps {
  db: Db
  repository: ConnectorRepository
  routes: ConnectorRoutes
  tests: ConnectionTests
  audit: AuditService
  integrations: IntegrationStates
  mailboxes: Pick<Mailboxes, 'open'>
  /** Authentication or unreachable-mailbox failures in a row before automatic disable. */
  failureThreshold: number
  sync: IncomingSync
  /** Where `connector.disabled` is recorded, in the disabling transaction. */
  events: Pick<EventLog, 'record'>
  /** Webhook endpoints that deliver only this connector's events go with it (the webhooks module answers). */
  webhooks: { removeAllFor(tx: Db, connectorId: string): Promise<number> }
}

export class ConnectorService {
  private readonly deps: ConnectorServiceDeps
  private readonly views: ReturnType<typeof prepareConnectorViews>
  private readonly findPrepared: ReturnType<ConnectorRepository['prepareFindById']>
  private readonly recent = new TtlCache<string, ConnectorRow | undefined>(CONFIG_CACHE_MAX_AGE_MS)

  constructor(deps: ConnectorServiceDeps) {
    this.deps = deps
    this.views = prepareConnectorViews(deps.db)
    this.findPrepared = deps.repository.prepareFindById(deps.db)
    deps.repository.changes.listen(() => this.recent.clear())
  }

  /** db.transaction, after which intake's caches forget what they read meanwhile (the change is committed now). */
  private transaction<T>(work: (tx: Db) => Promise<T>): Promise<T> {
    return this.deps.repository.changes.after(this.deps.db.transaction(work))
  }

  async create(actor: Actor, input: CreateConnectorInput): Promise<Connector> {
    const incoming = input.direction === 'incoming'
    if (!incoming) rejectIncomingFields(input)
    if (incoming && !input.fallbackRoute) {
      throw new ValidationError([
        { field: 'fallbackRoute', message: 'is required for an incoming connector: name the process unrouted mail becomes' },
      ])
    }
    if (!incoming && input.fallbackRoute) {
      throw new ValidationError([{ field: 'fallbackRoute', message: 'is only for incoming connectors; remove it' }])
    }
    const id = newId()
    const address = input.primaryAddress.toLowerCase()
    const row = await this.transaction(async (tx) => {
      await this.requireIntegration(tx, input.integrationId)
      await this.requireFreeAddress(tx, input.direction, address)
      const created = await this.deps.repository.insert(tx, {
        id,
        integrationId: input.integrationId,
        name: input.name,
        direction: input.direction,
        primaryAddress: address,
        enabled: false,
        ...(incoming
          ? {
              folderPaths: input.folderPaths ?? ['Inbox'],
              afterProcessing: input.afterProcessing ?? 'markRead',
              sendAutomatedEmails: input.sendAutomatedEmails ?? true,
              testModeOnly: input.testModeOnly ?? false,
              emailClassification: input.emailClassification ?? false,
              sentimentAnalysis: input.sentimentAnalysis ?? false,
              emailDataExtraction: input.emailDataExtraction ?? false,
              thankYouEvaluation: input.thankYouEvaluation ?? false,
            }
          : { sendAutomatedEmails: false }),
      })
      await this.deps.audit.record(tx, actor, { action: 'create', resourceType: 'connector', resourceId: id, after: auditSnapshot(created) })
      // The connector's own route is created with it, so a connector never exists without one.
      await this.deps.routes.createOwnRoute(tx, actor, {
        connectorId: id,
        direction: input.direction,
        connectorName: input.name,
        address,
        ...(incoming ? { fallback: input.fallbackRoute! } : {}),
      })
      return created
    })
    return this.get(row.id)
  }

  async list(query: ListConnectorsInput): Promise<PageResult<Connector>> {
    const { integrationId, direction, enabled, limit } = query
    const rows = await this.views.page({ integrationId, direction, enabled, beforeId: decodeCursor(query.cursor), limit })
    const page = toPage(rows, limit)
    return { items: await this.present(page.items), nextCursor: page.nextCursor }
  }

  /** A connector row, for modules that work with connectors (routes). */
  async find(executor: Db, id: string, options: { forUpdate?: boolean } = {}): Promise<ConnectorRow | undefined> {
    // A prepared statement belongs to `db`'s pool; inside a transaction the transaction's own query runs.
    if (executor === this.deps.db && !options.forUpdate) return this.findPrepared(id)
    return this.deps.repository.findById(executor, id, options)
  }

  /**
   * find for intake, which asks for every received email: outside a transaction the row may be
   * up to CONFIG_CACHE_MAX_AGE_MS old (a change on this instance applies at once).
   */
  async findRecent(executor: Db, id: string): Promise<ConnectorRow | undefined> {
    if (executor !== this.deps.db) return this.find(executor, id)
    return this.recent.get(id, () => this.findPrepared(id))
  }

  async findMany(executor: Db, ids: string[]): Promise<ConnectorRow[]> {
    return this.deps.repository.findMany(executor, ids)
  }

  async get(id: string): Promise<Connector> {
    const view = await this.views.one(id)
    if (!view) throw new NotFoundError('connector', id)
    const [connector] = await this.present([view])
    return connector!
  }

  async update(actor: Actor, id: string, input: UpdateConnectorInput): Promise<Connector> {
    const row = await this.transaction(async (tx) => {
      const existing = await this.require(tx, id, { forUpdate: true })
      if (input.direction !== undefined && input.direction !== existing.direction) {
        throw new DirectionImmutableError(
          `This connector is ${existing.direction}; direction is fixed at creation. Create a new ${input.direction} connector instead.`,
          { field: 'direction' },
        )
      }
      if (existing.direction === 'outgoing') rejectIncomingFields(input)
      const changes: Partial<NewConnector> = { updatedAt: new Date() }
      for (const field of ['name', ...INCOMING_ONLY_FIELDS] as const) {
        if (input[field] !== undefined) Object.assign(changes, { [field]: input[field] })
      }
      const next = this.applyConnection(existing, input)
      const current = await this.hashOf(tx, connectionOf(existing))
      const target = await this.hashOf(tx, next, { forShare: true })
      const movesIntegration = next.integrationId !== existing.integrationId
      if (existing.enabled && movesIntegration && !target.verified) {
        throw new EnableGateError(
          'INTEGRATION_NOT_VERIFIED',
          `The connector is enabled and integration ${next.integrationId} is not verified. Test that integration first.`,
        )
      }
      if (target.hash !== current.hash) {
        if (next.primaryAddress !== existing.primaryAddress) await this.requireFreeAddress(tx, existing.direction, next.primaryAddress)
        const test = await this.deps.tests.latestOf(tx, 'connector', id, target.hash)
        if (existing.enabled && !test?.ok) {
          throw new CandidateTestRequiredError(
            `The connector is enabled. Run POST /v1/connectors/${id}/test with exactly these changes; once it succeeds, send this change again.`,
            { lastCandidateTestOk: test ? test.ok : null },
          )
        }
        changes.folderIds = test?.ok ? ((test.result.facts?.folderIds as Record<string, string>) ?? null) : null
        if (next.primaryAddress !== existing.primaryAddress) await this.deps.routes.followAddress(tx, id, next.primaryAddress)
        if (existing.direction === 'outgoing' && (next.primaryAddress !== existing.primaryAddress || target.identityHash !== current.identityHash)) {
          await this.deps.routes.disableAliasesOf(tx, actor, id, "The connector's address or app changed: test the alias again, then enable it.")
        }
      }
      if (movesIntegration || target.hash !== current.hash) {
        Object.assign(changes, {
          integrationId: next.integrationId,
          primaryAddress: next.primaryAddress,
          folderPaths: next.folderPaths,
          afterProcessing: next.afterProcessing,
        })
      }
      const updated = await this.deps.repository.update(tx, id, changes)
      await this.deps.audit.record(tx, actor, {
        action: 'update',
        resourceType: 'connector',
        resourceId: id,
        before: auditSnapshot(existing),
        after: auditSnapshot(updated),
      })
      return updated
    })
    return this.get(row.id)
  }

  async delete(actor: Actor, id: string): Promise<void> {
    await this.transaction(async (tx) => {
      const existing = await this.require(tx, id, { forUpdate: true })
      const routesDeleted = await this.deps.routes.removeAllOf(tx, id)
      const webhooksDeleted = await this.deps.webhooks.removeAllFor(tx, id)
      await this.deps.repository.delete(tx, id)
      await this.deps.tests.deleteFor(tx, 'connector', id)
      await this.deps.audit.record(tx, actor, {
        action: 'delete',
        resourceType: 'connector',
        resourceId: id,
        before: auditSnapshot(existing),
        details: { routesDeleted, webhooksDeleted },
      })
    })
  }

  /**
   * Tests the saved connection settings, or candidate changes (not saved): incoming reads
   * the mailbox and resolves every folder; outgoing sends a real, marked test message.
   */
  async test(actor: Actor, id: string, input: TestConnectorInput = {}): Promise<TestResult> {
    const row = await this.require(this.deps.db, id)
    if (row.direction === 'outgoing' && (input.folderPaths || input.afterProcessing)) rejectIncomingFields(input)
    if (row.direction === 'incoming' && input.testRecipient) {
      throw new ValidationError([{ field: 'testRecipient', message: 'is only for outgoing connectors; remove it' }])
    }
    const connection = this.applyConnection(row, input)
    const configHash = (await this.hashOf(this.deps.db, connection)).hash
    const currentHash = (await this.hashOf(this.deps.db, connectionOf(row))).hash
    const candidate = configHash !== currentHash
    const testId = newId()
    const open = () => this.deps.mailboxes.open(connection.integrationId, { fresh: true })
    const outcome =
      connection.direction === 'incoming'
        ? await testIncoming(open, connection)
        : await testSending({
            open,
            mailbox: connection.primaryAddress,
            from: connection.primaryAddress,
            to: input.testRecipient?.toLowerCase() ?? connection.primaryAddress,
            testId,
          })

    const stored = await this.transaction(async (tx) => {
      const test = await this.deps.tests.record(tx, actor, { id: testId, resourceType: 'connector', resourceId: id, configHash, candidate, outcome })
      if (outcome.ok && !candidate) {
        const fresh = await this.require(tx, id, { forUpdate: true })
        if ((await this.hashOf(tx, connectionOf(fresh))).hash === configHash && connection.direction === 'incoming') {
          await this.deps.repository.update(tx, id, { folderIds: outcome.facts?.folderIds as Record<string, string> })
        }
      }
      return test
    })
    return presentTest(stored, currentHash)
  }

  /** The enable gate: a verified integration and a successful test of exactly this configuration. */
  /**
   * An incoming connector's folders are synced from then on: mail received from now, or with
   * `importExisting` from `importSince` (all existing mail when that is not given).
   */
  async enable(actor: Actor, id: string, input: EnableConnectorInput = {}): Promise<Connector> {
    const row = await this.transaction(async (tx) => {
      const existing = await this.require(tx, id, { forUpdate: true })
      if (existing.direction === 'outgoing' && (input.importExisting !== undefined || input.importSince !== undefined)) {
        throw new ValidationError([{ field: 'importExisting', message: 'only an incoming connector imports existing mail; leave it out' }])
      }
      if (input.importSince !== undefined && !input.importExisting) {
        throw new ValidationError([{ field: 'importSince', message: 'set importExisting: true to import mail received since this date' }])
      }
      if (existing.enabled) {
        // Already enabled: an import asked for now still happens.
        if (input.importExisting && existing.direction === 'incoming') await this.startSync(tx, existing, input)
        return existing
      }
      const { hash, verified } = await this.hashOf(tx, connectionOf(existing), { forShare: true })
      if (!verified) {
        throw new EnableGateError(
          'INTEGRATION_NOT_VERIFIED',
          `Integration ${existing.integrationId} has no successful test of its current settings. Run POST /v1/integrations/${existing.integrationId}/test, then enable this connector.`,
        )
      }
      const test = await this.deps.tests.requirePassed(tx, 'connector', id, hash, `/v1/connectors/${id}/test`)
      const enabled = await this.deps.repository.update(tx, id, {
        enabled: true,
        consecutiveFailures: 0,
        disabledReason: null,
        disabledAt: null,
        updatedAt: new Date(),
      })
      await this.deps.audit.record(tx, actor, {
        action: 'enable',
        resourceType: 'connector',
        resourceId: id,
        before: { enabled: false },
        after: { enabled: true },
        details: { testId: test.id, ...(input.importExisting ? { importSince: input.importSince ?? 'all' } : {}) },
      })
      if (enabled.direction === 'incoming') await this.startSync(tx, enabled, input)
      return enabled
    })
    if (row.direction === 'incoming') this.deps.sync.connectorStarted()
    return this.get(row.id)
  }

  /** The folders read (not the move target of after-processing, which the test also resolves). */
  private async startSync(tx: Db, connector: ConnectorRow, input: EnableConnectorInput): Promise<void> {
    const read = Object.fromEntries(Object.entries(connector.folderIds ?? {}).filter(([path]) => connector.folderPaths?.includes(path)))
    await this.deps.sync.startConnector(tx, connector.id, read, input.importExisting ? new Date(input.importSince ?? 0) : undefined)
  }

  async disable(actor: Actor, id: string, reason?: string): Promise<Connector> {
    const row = await this.transaction(async (tx) => {
      const existing = await this.require(tx, id, { forUpdate: true })
      if (!existing.enabled) return existing
      return this.disableLocked(tx, actor, existing, reason ?? 'Disabled by an operator', {})
    })
    return this.get(row.id)
  }

  /**
   * Workers report every mailbox failure here. Authentication and unreachable-mailbox
   * failures count; after `failureThreshold` in a row the connector is disabled, with the
   * reason stored and audited. Other failures (throttling, outages) neither count nor reset.
   */
  async recordMailboxFailure(id: string, error: MailboxError): Promise<{ disabled: boolean; consecutiveFailures: number }> {
    if (!error.countsTowardDisable) {
      const row = await this.deps.repository.findById(this.deps.db, id)
      return { disabled: false, consecutiveFailures: row?.consecutiveFailures ?? 0 }
    }
    return this.transaction(async (tx) => {
      const row = await this.deps.repository.incrementFailures(tx, id)
      if (!row) throw new NotFoundError('connector', id)
      if (!row.enabled || row.consecutiveFailures < this.deps.failureThreshold) {
        return { disabled: false, consecutiveFailures: row.consecutiveFailures }
      }
      const locked = await this.require(tx, id, { forUpdate: true })
      if (!locked.enabled) return { disabled: false, consecutiveFailures: locked.consecutiveFailures }
      await this.disableLocked(
        tx,
        systemActor,
        locked,
        `Disabled automatically after ${locked.consecutiveFailures} failures in a row; last: ${error.code}: ${error.message}`,
        { automatic: true, code: error.code, consecutiveFailures: locked.consecutiveFailures },
      )
      return { disabled: true, consecutiveFailures: locked.consecutiveFailures }
    })
  }

  async recordMailboxSuccess(id: string): Promise<void> {
    const row = await this.deps.repository.findById(this.deps.db, id)
    if (row && row.consecutiveFailures > 0) await this.deps.repository.update(this.deps.db, id, { consecutiveFailures: 0 })
  }

  private async disableLocked(tx: Db, actor: Actor, existing: ConnectorRow, reason: string, details: Record<string, unknown>) {
    const now = new Date()
    const disabled = await this.deps.repository.update(tx, existing.id, {
      enabled: false,
      disabledReason: reason,
      disabledAt: now,
      updatedAt: now,
    })
    await this.deps.audit.record(tx, actor, {
      action: 'disable',
      resourceType: 'connector',
      resourceId: existing.id,
      before: { enabled: true },
      after: { enabled: false, disabledReason: reason },
      details,
    })
    await this.deps.events.record(tx, {
      type: 'connector.disabled',
      subjectType: 'connector',
      subjectId: existing.id,
      payload: { connectorId: existing.id, name: existing.name, reason, automatic: details.automatic === true },
      occurredAt: now,
    })
    return disabled
  }

  /** The configuration hash of a connection, with its integration's state. */
  private async hashOf(executor: Db, connection: ConnectorConnection, options: { forShare?: boolean } = {}) {
    const state = await this.deps.integrations.state(executor, connection.integrationId, options)
    if (!state) {
      throw new UnknownIntegrationError(`No integration with id ${connection.integrationId}. Create it first with POST /v1/integrations.`, {
        field: 'integrationId',
      })
    }
    return { hash: connectorConfigHash(connection, state.identityHash), ...state }
  }

  private applyConnection(row: ConnectorRow, changes: Partial<Record<ConnectionField, unknown>>): ConnectorConnection {
    return {
      integrationId: (changes.integrationId as string | undefined) ?? row.integrationId,
      direction: row.direction,
      primaryAddress: ((changes.primaryAddress as string | undefined) ?? row.primaryAddress).toLowerCase(),
      folderPaths: (changes.folderPaths as string[] | undefined) ?? row.folderPaths,
      afterProcessing: (changes.afterProcessing as string | undefined) ?? row.afterProcessing,
    }
  }

  private async require(executor: Db, id: string, options: { forUpdate?: boolean } = {}): Promise<ConnectorRow> {
    const row = await this.deps.repository.findById(executor, id, options)
    if (!row) throw new NotFoundError('connector', id)
    return row
  }

  private async requireIntegration(executor: Db, integrationId: string): Promise<void> {
    const exists = await this.deps.integrations.exists(executor, integrationId)
    if (!exists) {
      throw new UnknownIntegrationError(`No integration with id ${integrationId}. Create it first with POST /v1/integrations.`, {
        field: 'integrationId',
      })
    }
  }

  private async requireFreeAddress(executor: Db, direction: Direction, address: string): Promise<void> {
    const taken = await this.deps.repository.findByAddress(executor, direction, address)
    if (taken) {
      throw new AddressInUseError(`The ${direction} connector ${taken.id} already uses ${address}.`, {
        field: 'primaryAddress',
        connectorId: taken.id,
      })
    }
    // An outgoing address must name one sender: no alias of another connector may hold it.
    const alias = direction === 'outgoing' ? await this.deps.routes.aliasSendingAs(executor, address) : undefined
    if (alias) {
      throw new AddressInUseError(`Route ${alias.id} of connector ${alias.connectorId} already sends as ${address}.`, {
        field: 'primaryAddress',
        routeId: alias.id,
      })
    }
  }

  /** Two statements in all: the views, then every test they show (the integrations' too). */
  private async present(views: ConnectorView[]): Promise<Connector[]> {
    const integrations = this.deps.integrations
    const byIntegration = new Map(views.map((view) => [view.integrationId, view.integration]))
    const identities = new Map([...byIntegration].map(([id, connection]) => [id, integrations.identityHashOf(connection)]))
    const integrationHashes = new Map([...byIntegration].map(([id, connection]) => [id, integrations.configHashOf(connection)]))
    const hashes = new Map(views.map((view) => [view.id, connectorConfigHash(connectionOf(view), identities.get(view.integrationId)!)]))
    const tests = await this.deps.tests.shown([
      ...views.map((view) => ({ resourceType: 'connector' as const, resourceId: view.id, configHash: hashes.get(view.id)!, latest: true })),
      ...[...integrationHashes].map(([resourceId, configHash]) => ({ resourceType: 'integration' as const, resourceId, configHash, latest: false })),
    ])
    return views.map((view) => {
      const shown = tests.get(`connector:${view.id}`)
      const integrationVerified = tests.get(`integration:${view.integrationId}`)?.ofCurrent?.ok === true
      return presentConnector(view, hashes.get(view.id)!, shown?.latest, shown?.ofCurrent, integrationVerified)
    })
  }
}

function rejectIncomingFields(input: Record<string, unknown>): void {
  const given = INCOMING_ONLY_FIELDS.filter((field) => input[field] !== undefined)
  if (given.length > 0) {
    throw new ValidationError(given.map((field) => ({ field, message: 'is only for incoming connectors; remove it' })))
  }
}

function presentConnector(
  row: ConnectorRow,
  hash: string,
  latestTest: TestsOf['latest'],
  latestTestOfCurrent: TestsOf['ofCurrent'],
  integrationVerified: boolean,
): Connector {
  return {
    id: row.id,
    integrationId: row.integrationId,
    name: row.name,
    direction: row.direction,
    primaryAddress: row.primaryAddress,
    enabled: row.enabled,
    folderPaths: row.folderPaths,
    folderIds: row.folderIds,
    afterProcessing: row.afterProcessing,
    sendAutomatedEmails: row.sendAutomatedEmails,
    testModeOnly: row.testModeOnly,
    emailClassification: row.emailClassification,
    sentimentAnalysis: row.sentimentAnalysis,
    emailDataExtraction: row.emailDataExtraction,
    thankYouEvaluation: row.thankYouEvaluation,
    verified: latestTestOfCurrent?.ok === true,
    integrationVerified,
    consecutiveFailures: row.consecutiveFailures,
    disabledReason: row.disabledReason,
    disabledAt: row.disabledAt?.toISOString() ?? null,
    lastTest: latestTest ? presentTest(latestTest, hash) : null,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  }
}

function auditSnapshot(row: ConnectorRow): Record<string, unknown> {
  const { createdAt: _c, updatedAt: _u, folderIds: _f, consecutiveFailures: _n, ...rest } = row
  return rest
}
