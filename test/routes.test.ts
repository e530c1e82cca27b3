import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bearer, buildTestApp, graphql, type TestApp } from './support/app.ts'
import { FakeMicrosoft, type FakeMailbox, type FakeTenant } from './support/fake-microsoft.ts'

const fake = new FakeMicrosoft()
let t: TestApp
let tenant: FakeTenant
let mailbox: FakeMailbox
let incomingId: string
let fallbackId: string
let outgoingId: string

beforeAll(async () => {
  fake.start()
  tenant = fake.addTenant()
  const app = fake.registerApp(tenant, { secrets: [{ value: 'routes-secret', expiresAt: new Date(Date.now() + 86_400_000) }] })
  mailbox = fake.addMailbox(tenant, 'support@contoso.com', { aliases: ['help@contoso.com', 'billing@contoso.com'] })
  t = await buildTestApp()
  const integration = (
    await call('POST', '/v1/integrations', { name: 'c', tenant: tenant.id, clientId: app.clientId, authMethod: 'clientSecret', clientSecret: 'routes-secret' })
  ).body
  await call('POST', `/v1/integrations/${integration.id}/test`)
  incomingId = (
    await call('POST', '/v1/connectors', {
      integrationId: integration.id,
      name: 'in',
      direction: 'incoming',
      primaryAddress: 'support@contoso.com',
      fallbackRoute: { workItemType: 'ticket', processId: 'general' },
    })
  ).body.id
  outgoingId = (await call('POST', '/v1/connectors', { integrationId: integration.id, name: 'out', direction: 'outgoing', primaryAddress: 'support@contoso.com' })).body.id
  fallbackId = (await call('GET', `/v1/routes?connectorId=${incomingId}`)).body.items[0].id
})
afterAll(async () => {
  await t.close()
  fake.stop()
})

async function call(method: 'GET' | 'POST' | 'PATCH' | 'DELETE' | 'PUT', url: string, payload?: unknown) {
  const response = await t.app.inject({ method, url, headers: bearer(t.adminKey), payload: payload as object })
  return { status: response.statusCode, body: response.body ? response.json() : null }
}

function route(overrides: Record<string, unknown>) {
  return { connectorId: incomingId, name: 'r', workItemType: 'case', processId: 'p', ...overrides }
}

describe('incoming routes', () => {
  it('the fallback route exists, is last, enabled, bound to the primary address, and protected', async () => {
    const fallback = (await call('GET', `/v1/routes/${fallbackId}`)).body
    expect(fallback).toMatchObject({ kind: 'fallback', emailAddress: 'support@contoso.com', enabled: true, processId: 'general', verified: null })
    const deleted = await call('DELETE', `/v1/routes/${fallbackId}`)
    expect(deleted.status).toBe(409)
    expect(deleted.body.code).toBe('ROUTE_PROTECTED')
    expect((await call('POST', `/v1/routes/${fallbackId}/disable`)).body.code).toBe('ROUTE_PROTECTED')
    const moved = await call('PATCH', `/v1/routes/${fallbackId}`, { emailAddress: 'other@contoso.com' })
    expect(moved.status).toBe(422)
    expect(moved.body).toMatchObject({ code: 'FALLBACK_ROUTE_FIXED', field: 'emailAddress' })
    expect((await call('PATCH', `/v1/routes/${fallbackId}`, { processId: 'general-2' })).body.processId).toBe('general-2')
  })

  it('lists a connector\'s routes in evaluation order: specific, wildcard, fallback', async () => {
    const specificA = (await call('POST', '/v1/routes', route({ name: 'A', emailAddress: 'Invoices@Contoso.com', rules: { attachmentTypes: ['.PDF'], senderIncludes: ['*@Supplier.com'] } }))).body
    const wildcard = (await call('POST', '/v1/routes', route({ name: 'W', emailAddress: '*', rules: { senderIncludes: ['boss@contoso.com'] } }))).body
    await call('POST', '/v1/routes', route({ name: 'B', emailAddress: 'hr@contoso.com', rules: { subjectKeywords: ['payroll'], importantOnly: true } }))
    expect(specificA).toMatchObject({ kind: 'specific', emailAddress: 'invoices@contoso.com', enabled: true, rules: { attachmentTypes: ['pdf'], senderIncludes: ['*@supplier.com'] } })
    expect(wildcard.kind).toBe('wildcard')
    const order = (await call('GET', `/v1/routes?connectorId=${incomingId}`)).body.items.map((r: { name: string }) => r.name)
    expect(order).toEqual(['A', 'B', 'W', 'in fallback'])
  })

  it('enforces the routing rules with a 422 naming the rule', async () => {
    const cases: [Record<string, unknown>, number, string][] = [
      [route({ emailAddress: '*' }), 422, 'WILDCARD_NEEDS_SENDERS'],
      [route({ emailAddress: '*', rules: { senderIncludes: ['*@contoso.com'] } }), 422, 'WILDCARD_NEEDS_SENDERS'],
      [route({ emailAddress: 'a@contoso.com', rules: { subjectKeywords: [] , attachmentTypes: ['p d f'] } }), 400, 'VALIDATION_FAILED'],
      [route({ emailAddress: '*@contoso.com' }), 400, 'VALIDATION_FAILED'],
      [route({ emailAddress: 'a@contoso.com', processId: undefined }), 400, 'VALIDATION_FAILED'],
      [route({ emailAddress: 'a@contoso.com', connectorId: '0190f5e0-0000-7000-8000-000000000000' }), 422, 'UNKNOWN_CONNECTOR'],
    ]
    for (const [payload, status, code] of cases) {
      const response = await call('POST', '/v1/routes', payload)
      expect(response.status, JSON.stringify(payload)).toBe(status)
      expect(response.body.code).toBe(code)
    }
  })

  it('a route cannot switch between wildcard and specific', async () => {
    const specific = (await call('POST', '/v1/routes', route({ emailAddress: 'switch@contoso.com' }))).body
    const toWildcard = await call('PATCH', `/v1/routes/${specific.id}`, { emailAddress: '*', rules: { senderIncludes: ['x@y.com'] } })
    expect(toWildcard.body).toMatchObject({ code: 'ROUTE_KIND_FIXED', field: 'emailAddress' })
    const wildcard = (await call('POST', '/v1/routes', route({ emailAddress: '*', rules: { senderIncludes: ['x@y.com'] } }))).body
    expect((await call('PATCH', `/v1/routes/${wildcard.id}`, { emailAddress: 'a@b.com' })).body.code).toBe('ROUTE_KIND_FIXED')
    expect((await call('PATCH', `/v1/routes/${wildcard.id}`, { rules: { senderIncludes: [] } })).body.code).toBe('WILDCARD_NEEDS_SENDERS')
    expect((await call('PATCH', `/v1/routes/${specific.id}`, { emailAddress: 'moved@contoso.com' })).body.emailAddress).toBe('moved@contoso.com')
  })

  it('reorders inside groups only', async () => {
    const current = (await call('GET', `/v1/routes?connectorId=${incomingId}&direction=incoming`)).body.items
    const specific = current.filter((r: { kind: string }) => r.kind === 'specific').map((r: { id: string }) => r.id)
    const wildcard = current.filter((r: { kind: string }) => r.kind === 'wildcard').map((r: { id: string }) => r.id)
    const reversed = [...specific].reverse()
    const ok = await call('PUT', `/v1/connectors/${incomingId}/routes/order`, { routeIds: [...reversed, ...wildcard.reverse(), fallbackId] })
    expect(ok.status).toBe(200)
    expect(ok.body.items.map((r: { id: string }) => r.id)).toEqual([...reversed, ...wildcard, fallbackId])

    const mixed = await call('PUT', `/v1/connectors/${incomingId}/routes/order`, { routeIds: [wildcard[0], ...reversed, ...wildcard.slice(1)] })
    expect(mixed.status).toBe(422)
    expect(mixed.body).toMatchObject({ code: 'ROUTE_ORDER_INVALID', detail: expect.stringContaining('cannot follow wildcard routes') })
    const fallbackFirst = await call('PUT', `/v1/connectors/${incomingId}/routes/order`, { routeIds: [fallbackId, ...reversed, ...wildcard] })
    expect(fallbackFirst.body.detail).toContain('always last')
    const incomplete = await call('PUT', `/v1/connectors/${incomingId}/routes/order`, { routeIds: reversed })
    expect(incomplete.body.detail).toContain('missing')
    expect((await call('GET', `/v1/routes?connectorId=${incomingId}`)).body.items.map((r: { id: string }) => r.id)).toEqual([...reversed, ...wildcard, fallbackId])
  })

  it('incoming routes are enabled and disabled without a test', async () => {
    const specific = (await call('POST', '/v1/routes', route({ emailAddress: 'toggle@contoso.com', enabled: false }))).body
    expect(specific.enabled).toBe(false)
    expect((await call('POST', `/v1/routes/${specific.id}/enable`)).body.enabled).toBe(true)
    expect((await call('POST', `/v1/routes/${specific.id}/test`)).body.code).toBe('ROUTE_NOT_TESTABLE')
    expect((await call('POST', `/v1/routes/${specific.id}/disable`)).body.enabled).toBe(false)
    expect((await call('DELETE', `/v1/routes/${specific.id}`)).status).toBe(204)
  })
})

describe('outgoing routes (aliases)', () => {
  it('the default route carries the connector address and is protected', async () => {
    const items = (await call('GET', `/v1/routes?connectorId=${outgoingId}`)).body.items
    expect(items).toEqual([expect.objectContaining({ kind: 'default', emailAddress: 'support@contoso.com', enabled: true })])
    expect((await call('DELETE', `/v1/routes/${items[0].id}`)).body.code).toBe('ROUTE_PROTECTED')
  })

  it('an alias is enabled only after a real message was sent from it', async () => {
    const alias = (await call('POST', '/v1/routes', { connectorId: outgoingId, name: 'Help', emailAddress: 'help@contoso.com' })).body
    expect(alias).toMatchObject({ kind: 'alias', enabled: false, verified: false })
    expect((await call('POST', `/v1/routes/${alias.id}/enable`)).body.code).toBe('CONNECTION_TEST_REQUIRED')
    const tested = (await call('POST', `/v1/routes/${alias.id}/test`)).body
    expect(tested.steps.map((s: { name: string; ok: boolean }) => `${s.name}:${s.ok}`)).toEqual(['token_acquired:true', 'send_permission:true', 'test_message_sent:true'])
    expect(mailbox.received.at(-1)).toMatchObject({ from: 'help@contoso.com', sender: 'support@contoso.com', headers: [{ name: 'x-mailgate-test', value: tested.id }] })
    const enabled = (await call('POST', `/v1/routes/${alias.id}/enable`)).body
    expect(enabled).toMatchObject({ enabled: true, verified: true })
  })

  it('an alias without Send As rights fails its test and stays disabled', async () => {
    const alias = (await call('POST', '/v1/routes', { connectorId: outgoingId, name: 'CEO', emailAddress: 'ceo@contoso.com' })).body
    const tested = (await call('POST', `/v1/routes/${alias.id}/test`)).body
    expect(tested.steps[2]).toMatchObject({ ok: false, code: 'SEND_AS_DENIED', hint: expect.stringContaining('Send As') })
    expect((await call('POST', `/v1/routes/${alias.id}/enable`)).body.code).toBe('CONNECTION_TEST_FAILED')
  })

  it('an enabled alias changes address only after a test of the new one; addresses are unique', async () => {
    const alias = (await call('POST', '/v1/routes', { connectorId: outgoingId, name: 'Billing', emailAddress: 'billing-old@contoso.com' })).body
    mailbox.sendAs.add('billing-old@contoso.com')
    await call('POST', `/v1/routes/${alias.id}/test`)
    await call('POST', `/v1/routes/${alias.id}/enable`)
    const refused = await call('PATCH', `/v1/routes/${alias.id}`, { emailAddress: 'billing@contoso.com' })
    expect(refused.body.code).toBe('CANDIDATE_TEST_REQUIRED')
    const candidate = (await call('POST', `/v1/routes/${alias.id}/test`, { emailAddress: 'billing@contoso.com' })).body
    expect(candidate).toMatchObject({ ok: true, candidate: true })
    const moved = (await call('PATCH', `/v1/routes/${alias.id}`, { emailAddress: 'billing@contoso.com' })).body
    expect(moved).toMatchObject({ emailAddress: 'billing@contoso.com', enabled: true, verified: true })
    const duplicate = await call('POST', '/v1/routes', { connectorId: outgoingId, name: 'dup', emailAddress: 'help@contoso.com' })
    expect(duplicate.status).toBe(409)
    expect(duplicate.body).toMatchObject({ code: 'ADDRESS_IN_USE', field: 'emailAddress' })
    const connectorOnAlias = await call('POST', '/v1/connectors', {
      integrationId: (await call('GET', `/v1/connectors/${outgoingId}`)).body.integrationId,
      name: 'clash',
      direction: 'outgoing',
      primaryAddress: 'help@contoso.com',
    })
    expect(connectorOnAlias.status).toBe(409)
    expect(connectorOnAlias.body).toMatchObject({ code: 'ADDRESS_IN_USE', field: 'primaryAddress' })
    const incomingFields = await call('POST', '/v1/routes', { connectorId: outgoingId, name: 'x', emailAddress: 'x@contoso.com', processId: 'p' })
    expect(incomingFields.status).toBe(400)
  })
})

describe('GraphQL', () => {
  it('creates, reorders and protects routes like REST', async () => {
    const created = await graphql(
      t.app,
      t.adminKey,
      `mutation($input: CreateRouteInput!) { createRoute(input: $input) { id kind rules { senderIncludes } } }`,
      { input: { connectorId: incomingId, name: 'gql', emailAddress: '*', workItemType: 'ticket', processId: 'g', rules: { senderIncludes: ['VIP@x.com'] } } },
    )
    expect(created.body.data.createRoute).toMatchObject({ kind: 'wildcard', rules: { senderIncludes: ['vip@x.com'] } })
    const list = await graphql(t.app, t.adminKey, `query($c: ID) { routes(connectorId: $c) { items { id kind } } }`, { c: incomingId })
    const items = list.body.data.routes.items as { id: string; kind: string }[]
    expect(items.at(-1)!.kind).toBe('fallback')
    const wrong = await graphql(t.app, t.adminKey, `mutation($c: ID!, $ids: [ID!]!) { reorderRoutes(connectorId: $c, routeIds: $ids) { id } }`, {
      c: incomingId,
      ids: [...items].reverse().map((r) => r.id),
    })
    expect(wrong.body.errors![0].extensions.code).toBe('ROUTE_ORDER_INVALID')
    const protectedRoute = await graphql(t.app, t.adminKey, `mutation($id: ID!) { deleteRoute(id: $id) }`, { id: fallbackId })
    expect(protectedRoute.body.errors![0].extensions.code).toBe('ROUTE_PROTECTED')
  })

  it('a page of connectors brings the integration and routes of each, in the order REST lists them', async () => {
    const { status, body } = await graphql(t.app, t.adminKey, '{ connectors(limit: 50) { items { id integrationId integration { id verified } routes { id kind emailAddress } } } }')
    expect(status).toBe(200)
    const items = body.data.connectors.items as { id: string; integrationId: string; integration: { id: string; verified: boolean }; routes: { id: string }[] }[]
    expect(items.map((item) => item.id).sort()).toEqual([incomingId, outgoingId].sort())
    for (const item of items) {
      expect(item.integration).toEqual({ id: item.integrationId, verified: true })
      const rest = (await call('GET', `/v1/routes?connectorId=${item.id}`)).body.items.map((r: { id: string }) => r.id)
      expect(item.routes.map((r) => r.id)).toEqual(rest)
    }
    expect(items.find((item) => item.id === incomingId)!.routes.at(-1)).toMatchObject({ id: fallbackId, kind: 'fallback' })
  })
})
