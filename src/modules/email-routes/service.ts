import { hash } from 'node:crypto'
import type { RouteRules } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { ConflictError, NotFoundError, UnprocessableError, ValidationError } from '../../lib/errors.ts'
import { newId } from '../../lib/ids.ts'
import { decodeCursor, toPage, type PageResult } from '../../lib/schemas.ts'
import type { Actor, AuditService } from '../audit/service.ts'
import type { TestsOf } from '../connection-tests/service.ts'
import { presentTest, type TestResult } from '../connection-tests/schemas.ts'
import { CandidateTestRequiredError, type ConnectionTests } from '../connection-tests/service.ts'
import { testSending } from '../connection-tests/test-message.ts'
import { AddressInUseError } from '../connectors/errors.ts'
import type { Mailboxes } from '../integrations/mailbox-access.ts'
import type { EmailRouteRepository, EmailRouteRow, NewEmailRoute } from './repository.ts'
import type { CreateRouteInput, EmailRoute, ListRoutesInput, TestRouteInput, UpdateRouteInput } from './schemas.ts'

/** What routes need to know of their connector. */
export interface RouteConnector {
  id: string
  direction: 'incoming' | 'outgoing'
  primaryAddress: string
  integrationId: string
}

export interface RouteConnectors {
  find(executor: Db, id: string, options?: { forUpdate?: boolean }): Promise<RouteConnector | undefined>
  /** Several connectors in one statement (absent ones are left out). */
  findMany(executor: Db, ids: string[]): Promise<RouteConnector[]>
}

/** What routes need to know of an integration: which app it is. */
export interface IntegrationIdentities {
  state(executor: Db, integrationId: string, options?: { forShare?: boolean }): Promise<{ identityHash: string } | undefined>
  states(executor: Db, integrationIds: string[]): Promise<Map<string, { identityHash: string }>>
}

export class RouteRuleError extends UnprocessableError {
  override readonly code: string
  override readonly title = 'The route breaks a routing rule'

  constructor(code: string, field: string, detail: string) {
    super(detail, { field })
    this.code = code
  }
}

export class ProtectedRouteError extends ConflictError {
  override readonly code = 'ROUTE_PROTECTED'
  override readonly title = "A connector's own route cannot be removed or disabled"
}

const INCOMING_ONLY = ['workItemType', 'processId', 'ticketCategory', 'rules', 'sendAutomatedEmails', 'forAttention', 'testModeOnly'] as const

/** An alias is proven for one mailbox reached through one app (the integration's identity). */
function aliasConfigHash(route: { connectorId: string; emailAddress: string }, connector: RouteConnector, integrationIdentity: string): string {
  return hash('sha256', JSON.stringify([route.connectorId, integrationIdentity, connector.primaryAddress, route.emailAddress.toLowerCase()]))
}

function normaliseRules(rules: RouteRules | undefined): RouteRules {
  if (!rules) return {}
  const lower = (values: string[] | undefined) => values?.map((value) => value.toLowerCase())
  return {
    ...(rules.importantOnly !== undefined ? { importantOnly: rules.importantOnly } : {}),
    ...(rules.attachmentTypes ? { attachmentTypes: rules.attachmentTypes.map((type) => type.replace(/^\./, '').toLowerCase()) } : {}),
    ...(rules.subjectKeywords ? { subjectKeywords: rules.subjectKeywords } : {}),
    ...(rules.recipientIncludes ? { recipientIncludes: lower(rules.recipientIncludes) } : {}),
    ...(rules.senderIncludes ? { senderIncludes: lower(rules.senderIncludes) } : {}),
  }
}

export interface EmailRouteServiceDeps {
  db: Db
  repository: EmailRouteRepository
  connectors: RouteConnectors
  tests: ConnectionTests
  audit: AuditService
  integrations: IntegrationIdentities
  mailboxes: Pick<Mailboxes, 'open'>
}

export class EmailRouteService {
  private readonly deps: EmailRouteServiceDeps

  constructor(deps: EmailRouteServiceDeps) {
    this.deps = deps
  }

  /** db.transaction, after which intake's caches forget what they read meanwhile (the change is committed now). */
  private transaction<T>(work: (tx: Db) => Promise<T>): Promise<T> {
    return this.deps.repository.changes.after(this.deps.db.transaction(work))
  }

  async create(actor: Actor, input: CreateRouteInput): Promise<EmailRoute> {
    const row = await this.transaction(async (tx) => {
      const connector = await this.requireConnector(tx, input.connectorId)
      const address = input.emailAddress.toLowerCase()
      let values: NewEmailRoute
      if (connector.direction === 'incoming') {
        const missing = (['workItemType', 'processId'] as const).filter((field) => input[field] === undefined)
        if (missing.length > 0) {
          throw new ValidationError(missing.map((field) => ({ field, message: 'is required for an incoming route' })))
        }
        const kind = address === '*' ? 'wildcard' : 'specific'
        const rules = normaliseRules(input.rules)
        checkRules(kind, rules)
        values = {
          id: newId(),
          connectorId: connector.id,
          direction: 'incoming',
          kind,
          name: input.name,
          description: input.description ?? null,
          emailAddress: address,
          workItemType: input.workItemType!,
          processId: input.processId!,
          ticketCategory: input.ticketCategory ?? null,
          rules,
          sendAutomatedEmails: input.sendAutomatedEmails ?? true,
          forAttention: input.forAttention ?? false,
          testModeOnly: input.testModeOnly ?? false,
          enabled: input.enabled ?? true,
          priority: await this.deps.repository.nextPriority(tx, connector.id, kind),
        }
      } else {
        const given = INCOMING_ONLY.filter((field) => input[field] !== undefined)
        if (given.length > 0) {
          throw new ValidationError(given.map((field) => ({ field, message: 'is only for incoming routes; remove it' })))
        }
        if (input.enabled) {
          throw new ValidationError([{ field: 'enabled', message: 'an alias is enabled with POST /v1/routes/{id}/enable after a successful test' }])
        }
        if (address === '*') throw new ValidationError([{ field: 'emailAddress', message: 'an outgoing route needs a real address, not *' }])
        await this.requireFreeAlias(tx, address)
        values = {
          id: newId(),
          connectorId: connector.id,
          direction: 'outgoing',
          kind: 'alias',
          name: input.name,
          description: input.description ?? null,
          emailAddress: address,
          sendAutomatedEmails: false,
          enabled: false,
          priority: await this.deps.repository.nextPriority(tx, connector.id, 'alias'),
        }
      }
      const created = await this.deps.repository.insert(tx, values)
      await this.deps.audit.record(tx, actor, { action: 'create', resourceType: 'route', resourceId: created.id, after: snapshot(created) })
      return created
    })
    return this.presentOne(this.deps.db, row)
  }

  async list(query: ListRoutesInput): Promise<PageResult<EmailRoute>> {
    if (query.connectorId) {
      await this.requireConnector(this.deps.db, query.connectorId)
      const rows = (await this.deps.repository.listForConnector(this.deps.db, query.connectorId)).filter(
        (row) => !query.direction || row.direction === query.direction,
      )
      return { items: await this.present(this.deps.db, rows), nextCursor: null }
    }
    const rows = await this.deps.repository.list(this.deps.db, { direction: query.direction, beforeId: decodeCursor(query.cursor), limit: query.limit })
    const page = toPage(rows, query.limit)
    return { items: await this.present(this.deps.db, page.items), nextCursor: page.nextCursor }
  }

  /** The routes of several connectors, each list in evaluation order, in a constant number of statements. */
  async listOf(connectorIds: string[]): Promise<Map<string, EmailRoute[]>> {
    const routes = await this.present(this.deps.db, await this.deps.repository.listForConnectors(this.deps.db, connectorIds))
    const byConnector = new Map(connectorIds.map((id) => [id, [] as EmailRoute[]]))
    for (const route of routes) byConnector.get(route.connectorId)?.push(route)
    return byConnector
  }

  async get(id: string): Promise<EmailRoute> {
    return this.presentOne(this.deps.db, await this.require(this.deps.db, id))
  }

  async update(actor: Actor, id: string, input: UpdateRouteInput): Promise<EmailRoute> {
    const row = await this.transaction(async (tx) => {
      const existing = await this.require(tx, id, { forUpdate: true })
      const changes: Partial<NewEmailRoute> = { updatedAt: new Date() }
      if (input.name !== undefined) changes.name = input.name
      if (input.description !== undefined) changes.description = input.description
      const address = input.emailAddress?.toLowerCase()

      if (existing.direction === 'incoming') {
        if (existing.kind === 'fallback' && ((address !== undefined && address !== existing.emailAddress) || input.rules !== undefined)) {
          throw new RouteRuleError(
            'FALLBACK_ROUTE_FIXED',
            address !== undefined ? 'emailAddress' : 'rules',
            "The fallback route catches whatever no other route does, at the connector's own address: its address and rules cannot change. Change its process, or add other routes.",
          )
        }
        const kind = address === undefined || existing.kind === 'fallback' ? existing.kind : address === '*' ? 'wildcard' : 'specific'
        if (kind !== existing.kind) {
          throw new RouteRuleError(
            'ROUTE_KIND_FIXED',
            'emailAddress',
            `A ${existing.kind} route cannot become a ${kind} route. Create a new ${kind} route and delete this one.`,
          )
        }
        const rules = input.rules !== undefined ? normaliseRules(input.rules) : existing.rules
        checkRules(kind, rules)
        if (address !== undefined) changes.emailAddress = address
        if (input.rules !== undefined) changes.rules = rules
        for (const field of ['workItemType', 'processId', 'ticketCategory', 'sendAutomatedEmails', 'forAttention', 'testModeOnly'] as const) {
          if (input[field] !== undefined) Object.assign(changes, { [field]: input[field] })
        }
      } else {
        const given = INCOMING_ONLY.filter((field) => input[field] !== undefined)
        if (given.length > 0) {
          throw new ValidationError(given.map((field) => ({ field, message: 'is only for incoming routes; remove it' })))
        }
        if (address !== undefined && address !== existing.emailAddress) {
          if (existing.kind === 'default') {
            throw new RouteRuleError('DEFAULT_ROUTE_FIXED', 'emailAddress', "The default route is the connector's own address; change the connector's primaryAddress instead.")
          }
          await this.requireFreeAlias(tx, address)
          if (existing.enabled) {
            const connector = await this.requireConnector(tx, existing.connectorId)
            const hash = aliasConfigHash({ connectorId: existing.connectorId, emailAddress: address }, connector, await this.identityOf(tx, connector))
            const test = await this.deps.tests.latestOf(tx, 'route', id, hash)
            if (!test?.ok) {
              throw new CandidateTestRequiredError(
                `The alias is enabled. Run POST /v1/routes/${id}/test with {"emailAddress": "${address}"}; once it succeeds, send this change again.`,
              )
            }
          }
          changes.emailAddress = address
        }
      }
      const updated = await this.deps.repository.update(tx, id, changes)
      await this.deps.audit.record(tx, actor, { action: 'update', resourceType: 'route', resourceId: id, before: snapshot(existing), after: snapshot(updated) })
      return updated
    })
    return this.presentOne(this.deps.db, row)
  }

  async delete(actor: Actor, id: string): Promise<void> {
    await this.transaction(async (tx) => {
      const existing = await this.require(tx, id, { forUpdate: true })
      if (existing.kind === 'fallback' || existing.kind === 'default') {
        throw new ProtectedRouteError(
          `This is the ${existing.kind} route of connector ${existing.connectorId}; it goes when the connector is deleted.`,
        )
      }
      await this.deps.repository.delete(tx, id)
      await this.deps.tests.deleteFor(tx, 'route', id)
      await this.deps.audit.record(tx, actor, { action: 'delete', resourceType: 'route', resourceId: id, before: snapshot(existing) })
    })
  }

  /** Aliases only: sends a real message from the alias through the connector's mailbox. */
  async test(actor: Actor, id: string, input: TestRouteInput = {}): Promise<TestResult> {
    const route = await this.require(this.deps.db, id)
    if (route.kind !== 'alias') {
      throw new RouteRuleError(
        'ROUTE_NOT_TESTABLE',
        'id',
        route.direction === 'incoming'
          ? 'Incoming routes have no connection of their own; test their connector.'
          : "The default route is the connector's own address; test the connector.",
      )
    }
    const connector = await this.requireConnector(this.deps.db, route.connectorId)
    const address = input.emailAddress?.toLowerCase() ?? route.emailAddress
    if (address !== route.emailAddress) await this.requireFreeAlias(this.deps.db, address, id)
    const identity = await this.identityOf(this.deps.db, connector)
    const configHash = aliasConfigHash({ connectorId: route.connectorId, emailAddress: address }, connector, identity)
    const currentHash = aliasConfigHash(route, connector, identity)
    const testId = newId()
    const outcome = await testSending({
      open: () => this.deps.mailboxes.open(connector.integrationId, { fresh: true }),
      mailbox: connector.primaryAddress,
      from: address,
      to: input.testRecipient?.toLowerCase() ?? connector.primaryAddress,
      testId,
    })
    const stored = await this.transaction(async (tx) => {
      return this.deps.tests.record(tx, actor, {
        id: testId,
        resourceType: 'route',
        resourceId: id,
        configHash,
        candidate: configHash !== currentHash,
        outcome,
      })
    })
    return presentTest(stored, currentHash)
  }

  async enable(actor: Actor, id: string): Promise<EmailRoute> {
    const row = await this.transaction(async (tx) => {
      const existing = await this.require(tx, id, { forUpdate: true })
      if (existing.enabled) return existing
      if (existing.kind === 'alias') {
        const connector = await this.requireConnector(tx, existing.connectorId)
        const hash = aliasConfigHash(existing, connector, await this.identityOf(tx, connector, { forShare: true }))
        await this.deps.tests.requirePassed(tx, 'route', id, hash, `/v1/routes/${id}/test`)
      }
      return this.setEnabled(tx, actor, existing, true)
    })
    return this.presentOne(this.deps.db, row)
  }

  async disable(actor: Actor, id: string): Promise<EmailRoute> {
    const row = await this.transaction(async (tx) => {
      const existing = await this.require(tx, id, { forUpdate: true })
      if (existing.kind === 'fallback' || existing.kind === 'default') {
        throw new ProtectedRouteError(`The ${existing.kind} route is always enabled; disable the connector instead.`)
      }
      if (!existing.enabled) return existing
      return this.setEnabled(tx, actor, existing, false)
    })
    return this.presentOne(this.deps.db, row)
  }

  /**
   * Sets the evaluation order of a connector's incoming routes. Specific routes come before
   * wildcard routes and the fallback is always last, so the order moves routes only inside
   * their group.
   */
  async reorder(actor: Actor, connectorId: string, routeIds: string[]): Promise<EmailRoute[]> {
    const rows = await this.transaction(async (tx) => {
      const connector = await this.requireConnector(tx, connectorId, { forUpdate: true })
      if (connector.direction !== 'incoming') {
        throw new RouteRuleError('ROUTE_ORDER_INVALID', 'connectorId', 'Only incoming routes have an order.')
      }
      const routes = await this.deps.repository.listForConnector(tx, connectorId)
      const byId = new Map(routes.map((route) => [route.id, route]))
      const fallback = routes.find((route) => route.kind === 'fallback')
      const ordered = routeIds.filter((routeId) => routeId !== fallback?.id || routeIds.at(-1) !== routeId)
      if (fallback && routeIds.includes(fallback.id) && routeIds.at(-1) !== fallback.id) {
        throw new RouteRuleError('ROUTE_ORDER_INVALID', 'routeIds', `The fallback route ${fallback.id} is always last.`)
      }
      for (const routeId of ordered) {
        if (!byId.has(routeId)) {
          throw new RouteRuleError('ROUTE_ORDER_INVALID', 'routeIds', `Route ${routeId} is not an incoming route of connector ${connectorId}.`)
        }
      }
      const expected = routes.filter((route) => route.kind !== 'fallback')
      const missing = expected.filter((route) => !ordered.includes(route.id))
      if (missing.length > 0) {
        throw new RouteRuleError('ROUTE_ORDER_INVALID', 'routeIds', `List every route of the connector; missing: ${missing.map((route) => route.id).join(', ')}.`)
      }
      const firstWildcard = ordered.findIndex((routeId) => byId.get(routeId)!.kind === 'wildcard')
      const strayed = firstWildcard === -1 ? undefined : ordered.slice(firstWildcard).find((routeId) => byId.get(routeId)!.kind === 'specific')
      if (strayed) {
        throw new RouteRuleError(
          'ROUTE_ORDER_INVALID',
          'routeIds',
          `Route ${strayed} is a specific route and cannot follow wildcard routes: specific routes are evaluated first, then wildcard routes, then the fallback.`,
        )
      }
      const before = Object.fromEntries(routes.map((route) => [route.id, route.priority]))
      const counters = { specific: 0, wildcard: 0 }
      for (const routeId of ordered) {
        const route = byId.get(routeId)!
        const group = route.kind as 'specific' | 'wildcard'
        await this.deps.repository.update(tx, routeId, { priority: counters[group]++ })
      }
      const after = await this.deps.repository.listForConnector(tx, connectorId)
      await this.deps.audit.record(tx, actor, {
        action: 'update',
        resourceType: 'connector',
        resourceId: connectorId,
        before: { routeOrder: Object.keys(before).filter((routeId) => routeId !== fallback?.id) },
        after: { routeOrder: after.filter((route) => route.kind !== 'fallback').map((route) => route.id) },
      })
      return after
    })
    return this.present(this.deps.db, rows)
  }

  private async setEnabled(tx: Db, actor: Actor, existing: EmailRouteRow, enabled: boolean) {
    const updated = await this.deps.repository.update(tx, existing.id, { enabled, updatedAt: new Date() })
    await this.deps.audit.record(tx, actor, {
      action: enabled ? 'enable' : 'disable',
      resourceType: 'route',
      resourceId: existing.id,
      before: { enabled: existing.enabled },
      after: { enabled },
    })
    return updated
  }

  private async identityOf(executor: Db, connector: RouteConnector, options: { forShare?: boolean } = {}): Promise<string> {
    return (await this.deps.integrations.state(executor, connector.integrationId, options))?.identityHash ?? ''
  }

  private async require(executor: Db, id: string, options: { forUpdate?: boolean } = {}): Promise<EmailRouteRow> {
    const row = await this.deps.repository.findById(executor, id, options)
    if (!row) throw new NotFoundError('route', id)
    return row
  }

  private async requireConnector(executor: Db, id: string, options: { forUpdate?: boolean } = {}): Promise<RouteConnector> {
    const row = await this.deps.connectors.find(executor, id, options)
    if (!row) {
      throw new RouteRuleError('UNKNOWN_CONNECTOR', 'connectorId', `No connector with id ${id}. Create it first with POST /v1/connectors.`)
    }
    return row
  }

  private async requireFreeAlias(executor: Db, address: string, exceptRouteId?: string): Promise<void> {
    const taken = await this.deps.repository.findOutgoingByAddress(executor, address)
    if (taken && taken.id !== exceptRouteId) {
      throw new AddressInUseError(`Route ${taken.id} of connector ${taken.connectorId} already sends as ${address}.`, { field: 'emailAddress', routeId: taken.id })
    }
  }

  private async presentOne(executor: Db, row: EmailRouteRow): Promise<EmailRoute> {
    const [route] = await this.present(executor, [row])
    return route!
  }

  private async present(executor: Db, rows: EmailRouteRow[]): Promise<EmailRoute[]> {
    const aliases = rows.filter((row) => row.kind === 'alias')
    const found = aliases.length > 0 ? await this.deps.connectors.findMany(executor, [...new Set(aliases.map((row) => row.connectorId))]) : []
    const connectors = new Map(found.map((connector) => [connector.id, connector]))
    const states = await this.deps.integrations.states(executor, [...new Set(found.map((connector) => connector.integrationId))])
    const identities = new Map(found.map((connector) => [connector.id, states.get(connector.integrationId)?.identityHash ?? '']))
    const hashes = new Map(
      aliases
        .filter((row) => connectors.has(row.connectorId))
        .map((row) => [row.id, aliasConfigHash(row, connectors.get(row.connectorId)!, identities.get(row.connectorId)!)]),
    )
    const tests = await this.deps.tests.testsOf('route', [...hashes].map(([resourceId, configHash]) => ({ resourceId, configHash })))
    return rows.map((row) => presentRoute(row, hashes.get(row.id), tests.get(row.id)?.latest, tests.get(row.id)?.ofCurrent))
  }
}

/** Rules of the routing model that a schema cannot express. */
function checkRules(kind: EmailRouteRow['kind'], rules: RouteRules): void {
  if (kind === 'wildcard') {
    const senders = rules.senderIncludes ?? []
    if (senders.length === 0) {
      throw new RouteRuleError(
        'WILDCARD_NEEDS_SENDERS',
        'rules.senderIncludes',
        'A wildcard route catches mail to any address (such as BCC mail), so it must name the senders it is for: give rules.senderIncludes.',
      )
    }
    const wildcard = senders.find((sender) => sender.startsWith('*@'))
    if (wildcard) {
      throw new RouteRuleError(
        'WILDCARD_NEEDS_SENDERS',
        'rules.senderIncludes',
        `A wildcard route needs exact sender addresses; "${wildcard}" is a domain wildcard. List the senders one by one.`,
      )
    }
  }
}

function presentRoute(
  row: EmailRouteRow,
  hash: string | undefined,
  latestTest: TestsOf['latest'],
  latestTestOfCurrent: TestsOf['ofCurrent'],
): EmailRoute {
  return {
    id: row.id,
    connectorId: row.connectorId,
    direction: row.direction,
    kind: row.kind,
    name: row.name,
    description: row.description,
    emailAddress: row.emailAddress,
    workItemType: row.workItemType,
    processId: row.processId,
    ticketCategory: row.ticketCategory,
    rules: row.rules,
    sendAutomatedEmails: row.sendAutomatedEmails,
    forAttention: row.forAttention,
    testModeOnly: row.testModeOnly,
    enabled: row.enabled,
    priority: row.priority,
    verified: row.kind === 'alias' ? latestTestOfCurrent?.ok === true : null,
    lastTest: latestTest && hash ? presentTest(latestTest, hash) : null,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  }
}

function snapshot(row: EmailRouteRow): Record<string, unknown> {
  const { createdAt: _c, updatedAt: _u, ...rest } = row
  return rest
}
