import { createHash } from 'node:crypto'
import type { ConnectionTestResult, Direction, TestStep } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { MailboxClient, MailboxError, toMailboxError } from '../../graph/mailbox-client.ts'
import { TokenError, type AppRegistration, type TokenProvider } from '../../graph/token-provider.ts'
import { ConflictError, NotFoundError, UnprocessableError, ValidationError } from '../../lib/errors.ts'
import { newId } from '../../lib/ids.ts'
import { decodeCursor, toPage, type PageResult } from '../../lib/schemas.ts'
import { SecretUnreadableError } from '../../lib/secret-box.ts'
import { systemActor, type Actor, type AuditService } from '../audit/service.ts'
import type { ConnectionTestRepository, ConnectionTestRow } from '../connection-tests/repository.ts'
import { presentTest, type TestResult } from '../connection-tests/schemas.ts'
import { EnableGateError, type ConnectionTests } from '../connection-tests/service.ts'
import type { IntegrationService, IntegrationState } from '../integrations/service.ts'
import type { ConnectorRepository, ConnectorRow, NewConnector } from './repository.ts'
import type { EmailRouteRepository } from '../email-routes/repository.ts'
import {
  INCOMING_ONLY_FIELDS,
  type Connector,
  type CreateConnectorInput,
  type ListConnectorsInput,
  type TestConnectorInput,
  type UpdateConnectorInput,
} from './schemas.ts'

export class CandidateTestRequiredError extends ConflictError {
  override readonly code = 'CANDIDATE_TEST_REQUIRED'
  override readonly title = 'Test the new connection settings first'
}

export class AddressInUseError extends ConflictError {
  override readonly code = 'ADDRESS_IN_USE'
  override readonly title = 'Another connector already uses this address'
}

export class DirectionImmutableError extends UnprocessableError {
  override readonly code = 'DIRECTION_IMMUTABLE'
  override readonly title = 'A connector cannot change direction'
}

export class UnknownIntegrationError extends UnprocessableError {
  override readonly code = 'UNKNOWN_INTEGRATION'
  override readonly title = 'No such integration'
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
export const TEST_MESSAGE_HEADER = 'x-mailgate-test'

/**
 * The integration enters through its identity (tenant, app, cloud): moving to another app
 * needs a new test, rotating the app's secret does not.
 */
export function connectorConfigHash(connection: ConnectorConnection, integrationIdentity: string): string {
  return createHash('sha256')
    .update(
      JSON.stringify([
        integrationIdentity,
        connection.direction,
        connection.primaryAddress.toLowerCase(),
        connection.folderPaths?.map((path) => path.toLowerCase()) ?? null,
        connection.afterProcessing?.toLowerCase() ?? null,
      ]),
    )
    .digest('hex')
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

function moveTarget(afterProcessing: string | null): string | null {
  return afterProcessing?.startsWith('move:') ? afterProcessing.slice('move:'.length) : null
}

export interface ConnectorServiceDeps {
  db: Db
  repository: ConnectorRepository
  routes: EmailRouteRepository
  tests: ConnectionTestRepository
  testRecords: ConnectionTests
  audit: AuditService
  integrations: IntegrationService
  tokens: TokenProvider
  /** Authentication or unreachable-mailbox failures in a row before automatic disable. */
  failureThreshold: number
  graphTimeoutMs?: number
}

export class ConnectorService {
  private readonly deps: ConnectorServiceDeps

  constructor(deps: ConnectorServiceDeps) {
    this.deps = deps
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
    const row = await this.deps.db.transaction(async (tx) => {
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
      // The connector's own route is created with it, so a connector never exists without one.
      const route = await this.deps.routes.insert(tx, {
        id: newId(),
        connectorId: id,
        direction: input.direction,
        kind: incoming ? 'fallback' : 'default',
        name: incoming ? (input.fallbackRoute!.name ?? `${input.name} fallback`) : input.name,
        emailAddress: address,
        workItemType: incoming ? input.fallbackRoute!.workItemType : null,
        processId: incoming ? input.fallbackRoute!.processId : null,
        ticketCategory: incoming ? (input.fallbackRoute!.ticketCategory ?? null) : null,
        enabled: true,
        priority: 0,
      })
      await this.deps.audit.record(tx, actor, { action: 'create', resourceType: 'connector', resourceId: id, after: auditSnapshot(created) })
      await this.deps.audit.record(tx, actor, {
        action: 'create',
        resourceType: 'route',
        resourceId: route.id,
        after: { kind: route.kind, connectorId: id, emailAddress: route.emailAddress, processId: route.processId },
      })
      return created
    })
    return this.presentOne(this.deps.db, row)
  }

  async list(query: ListConnectorsInput): Promise<PageResult<Connector>> {
    const rows = await this.deps.repository.list(this.deps.db, { ...query, beforeId: decodeCursor(query.cursor) })
    const page = toPage(rows, query.limit)
    return { items: await this.present(this.deps.db, page.items), nextCursor: page.nextCursor }
  }

  async get(id: string): Promise<Connector> {
    return this.presentOne(this.deps.db, await this.require(this.deps.db, id))
  }

  async update(actor: Actor, id: string, input: UpdateConnectorInput): Promise<Connector> {
    const row = await this.deps.db.transaction(async (tx) => {
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
        if (next.primaryAddress !== existing.primaryAddress) {
          await this.deps.routes.moveConnectorAddress(tx, id, next.primaryAddress)
        }
        if (existing.direction === 'outgoing' && (next.primaryAddress !== existing.primaryAddress || target.identityHash !== current.identityHash)) {
          await this.disableAliases(tx, actor, id)
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
    return this.presentOne(this.deps.db, row)
  }

  async delete(actor: Actor, id: string): Promise<void> {
    await this.deps.db.transaction(async (tx) => {
      const existing = await this.require(tx, id, { forUpdate: true })
      const routes = await this.deps.routes.listForConnector(tx, id)
      await this.deps.repository.delete(tx, id)
      await this.deps.tests.deleteFor(tx, 'connector', id)
      for (const route of routes) await this.deps.tests.deleteFor(tx, 'route', route.id)
      await this.deps.audit.record(tx, actor, {
        action: 'delete',
        resourceType: 'connector',
        resourceId: id,
        before: auditSnapshot(existing),
        details: { routesDeleted: routes.length },
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
    const outcome =
      connection.direction === 'incoming'
        ? await this.testIncoming(connection)
        : await this.testOutgoing(connection, input.testRecipient?.toLowerCase() ?? connection.primaryAddress, testId)

    const stored = await this.deps.db.transaction(async (tx) => {
      const test = await this.deps.testRecords.record(tx, actor, { id: testId, resourceType: 'connector', resourceId: id, configHash, candidate, outcome })
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
  async enable(actor: Actor, id: string): Promise<Connector> {
    const row = await this.deps.db.transaction(async (tx) => {
      const existing = await this.require(tx, id, { forUpdate: true })
      if (existing.enabled) return existing
      const { hash, verified } = await this.hashOf(tx, connectionOf(existing), { forShare: true })
      if (!verified) {
        throw new EnableGateError(
          'INTEGRATION_NOT_VERIFIED',
          `Integration ${existing.integrationId} has no successful test of its current settings. Run POST /v1/integrations/${existing.integrationId}/test, then enable this connector.`,
        )
      }
      const test = await this.deps.testRecords.requirePassed(tx, 'connector', id, hash, `/v1/connectors/${id}/test`)
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
        details: { testId: test.id },
      })
      return enabled
    })
    return this.presentOne(this.deps.db, row)
  }

  async disable(actor: Actor, id: string, reason?: string): Promise<Connector> {
    const row = await this.deps.db.transaction(async (tx) => {
      const existing = await this.require(tx, id, { forUpdate: true })
      if (!existing.enabled) return existing
      return this.disableLocked(tx, actor, existing, reason ?? 'Disabled by an operator', {})
    })
    return this.presentOne(this.deps.db, row)
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
    return this.deps.db.transaction(async (tx) => {
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
    return disabled
  }

  private async testIncoming(connection: ConnectorConnection): Promise<ConnectionTestResult> {
    const run = new StepRunner()
    const access = await this.acquire(run, connection.integrationId)
    if (!access) return run.finish(['mail_permission', 'mailbox_reachable', 'folders_resolved'])
    const canRead = access.roles.some((role) => role === 'Mail.ReadWrite' || role === 'Mail.Read')
    if (!canRead) {
      run.fail('mail_permission', new MailboxError('PERMISSION_MISSING', 'The app holds neither Mail.ReadWrite nor Mail.Read.', {
        hint: 'Add the Microsoft Graph application permission Mail.ReadWrite and grant admin consent; an incoming connector also marks, moves or deletes mail.',
      }))
      return run.finish(['mailbox_reachable', 'folders_resolved'])
    }
    run.pass('mail_permission', access.roles.includes('Mail.ReadWrite') ? 'Mail.ReadWrite is granted.' : 'Mail.Read is granted (read only: marking, moving and deleting will fail).')
    const client = access.client
    try {
      await client.folder(connection.primaryAddress, 'inbox')
      run.pass('mailbox_reachable', `The mailbox ${connection.primaryAddress} answers.`)
    } catch (error) {
      run.fail('mailbox_reachable', toMailboxError(error))
      return run.finish(['folders_resolved'])
    }
    const folderIds: Record<string, string> = {}
    const paths = [...(connection.folderPaths ?? ['Inbox'])]
    const target = moveTarget(connection.afterProcessing)
    for (const path of target ? [...paths, target] : paths) {
      try {
        folderIds[path] = (await client.resolveFolderPath(connection.primaryAddress, path)).id
      } catch (error) {
        run.fail(path === target && !paths.includes(path) ? 'move_target_resolved' : 'folders_resolved', toMailboxError(error), `"${path}": `)
        return run.finish([])
      }
    }
    run.pass('folders_resolved', `Resolved ${paths.join(', ')}.`)
    if (target) run.pass('move_target_resolved', `Processed mail will move to ${target}.`)
    return run.finish([], { folderIds })
  }

  private async testOutgoing(connection: ConnectorConnection, recipient: string, testId: string): Promise<ConnectionTestResult> {
    const run = new StepRunner()
    const access = await this.acquire(run, connection.integrationId)
    if (!access) return run.finish(['send_permission', 'test_message_sent'])
    if (!access.roles.includes('Mail.Send')) {
      run.fail('send_permission', new MailboxError('PERMISSION_MISSING', 'The app does not hold Mail.Send.', {
        hint: 'Add the Microsoft Graph application permission Mail.Send and grant admin consent.',
      }))
      return run.finish(['test_message_sent'])
    }
    run.pass('send_permission', 'Mail.Send is granted.')
    try {
      await access.client.sendMail(connection.primaryAddress, testMessage(connection.primaryAddress, recipient, testId), false)
      run.pass('test_message_sent', `A test message went from ${connection.primaryAddress} to ${recipient}.`)
    } catch (error) {
      run.fail('test_message_sent', toMailboxError(error))
    }
    return run.finish([])
  }

  /** Token (fresh, so the test proves today's credential) and a Graph client for the integration. */
  private async acquire(run: StepRunner, integrationId: string) {
    let registration: AppRegistration
    try {
      registration = (await this.deps.integrations.connectionFor(this.deps.db, integrationId)).registration
    } catch (error) {
      if (!(error instanceof SecretUnreadableError)) throw error
      run.failWith('token_acquired', 'SECRETS_UNREADABLE', `The integration's credential cannot be read (key ${error.keyId}).`,
        'Start the server with the key that sealed it in SECRETS_KEY_PREVIOUS, or enter the credential again.')
      return null
    }
    try {
      const token = await this.deps.tokens.acquire(registration, { fresh: true })
      run.pass('token_acquired', 'Entra ID issued an app-only token for Microsoft Graph.')
      const client = new MailboxClient(this.deps.tokens, registration, { timeoutMs: this.deps.graphTimeoutMs })
      return { roles: token.roles, client }
    } catch (error) {
      if (!(error instanceof TokenError)) throw error
      run.failWith('token_acquired', error.code, error.message, error.hint)
      return null
    }
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

  /** A connector that now sends through another mailbox or app invalidates its aliases' tests. */
  private async disableAliases(tx: Db, actor: Actor, connectorId: string): Promise<void> {
    const routes = await this.deps.routes.listForConnector(tx, connectorId)
    for (const alias of routes.filter((route) => route.kind === 'alias' && route.enabled)) {
      await this.deps.routes.update(tx, alias.id, { enabled: false, updatedAt: new Date() })
      await this.deps.audit.record(tx, actor, {
        action: 'disable',
        resourceType: 'route',
        resourceId: alias.id,
        before: { enabled: true },
        after: { enabled: false },
        details: { reason: "The connector's address or app changed: test the alias again, then enable it." },
      })
    }
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
    const alias = direction === 'outgoing' ? await this.deps.routes.findOutgoingByAddress(executor, address) : undefined
    if (alias) {
      throw new AddressInUseError(`Route ${alias.id} of connector ${alias.connectorId} already sends as ${address}.`, {
        field: 'primaryAddress',
        routeId: alias.id,
      })
    }
  }

  private async presentOne(executor: Db, row: ConnectorRow): Promise<Connector> {
    const [item] = await this.present(executor, [row])
    return item!
  }

  private async present(executor: Db, rows: ConnectorRow[]): Promise<Connector[]> {
    const states = new Map<string, IntegrationState | undefined>()
    for (const integrationId of new Set(rows.map((row) => row.integrationId))) {
      states.set(integrationId, await this.deps.integrations.state(executor, integrationId))
    }
    const hashes = new Map(
      rows.map((row) => [row.id, connectorConfigHash(connectionOf(row), states.get(row.integrationId)?.identityHash ?? '')]),
    )
    const [latest, current] = await Promise.all([
      this.deps.tests.latest(executor, 'connector', rows.map((row) => row.id)),
      this.deps.tests.latestOfEach(executor, 'connector', rows.map((row) => ({ resourceId: row.id, configHash: hashes.get(row.id)! }))),
    ])
    return rows.map((row) =>
      presentConnector(row, hashes.get(row.id)!, latest.get(row.id), current.get(row.id), states.get(row.integrationId)?.verified ?? false),
    )
  }
}

/** Collects test steps; after the first failure the remaining ones are reported as skipped. */
class StepRunner {
  private readonly steps: TestStep[] = []

  pass(name: string, message: string): void {
    this.steps.push({ name, ok: true, message })
  }

  fail(name: string, error: MailboxError, prefix = ''): void {
    this.steps.push({ name, ok: false, code: error.code, message: prefix + error.message, hint: error.hint })
  }

  failWith(name: string, code: string, message: string, hint: string): void {
    this.steps.push({ name, ok: false, code, message, hint })
  }

  finish(skipped: string[], facts?: Record<string, unknown>): ConnectionTestResult {
    for (const name of skipped) this.steps.push({ name, ok: false, skipped: true, message: 'Not run: an earlier step failed.' })
    return { ok: this.steps.every((step) => step.ok), steps: this.steps, ...(facts ? { facts } : {}) }
  }
}

/** Marked with an x- header so ingest recognises and ignores it. */
export function testMessage(from: string, to: string, testId: string) {
  return {
    to: [to],
    subject: 'Mailgate connection test',
    body: {
      contentType: 'text' as const,
      content: `This message tests that Mailgate can send from ${from}. It can be deleted. Test ${testId}.`,
    },
    headers: { [TEST_MESSAGE_HEADER]: testId },
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
  latestTest: ConnectionTestRow | undefined,
  latestTestOfCurrent: ConnectionTestRow | undefined,
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
