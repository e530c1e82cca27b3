import { getIntrospectionQuery } from 'graphql'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { GRAPHQL_LIMITS } from '../src/plugins/graphql-limits.ts'
import { bearer, buildTestApp, graphql, type TestApp } from './support/app.ts'
import { FakeMicrosoft } from './support/fake-microsoft.ts'

const fake = new FakeMicrosoft()
let t: TestApp
let integrationId: string

beforeAll(async () => {
  fake.start()
  t = await buildTestApp()
  const tenant = fake.addTenant()
  const app = fake.registerApp(tenant, { secrets: [{ value: 'limits-secret', expiresAt: new Date(Date.now() + 86_400_000) }] })
  const created = await t.app.inject({
    method: 'POST',
    url: '/v1/integrations',
    headers: bearer(t.adminKey),
    payload: { name: 'limits', tenant: tenant.id, clientId: app.clientId, authMethod: 'clientSecret', clientSecret: 'limits-secret' },
  })
  integrationId = created.json().id
})
afterAll(async () => {
  await t.close()
  fake.stop()
})

async function refused(query: string, pattern: RegExp) {
  const response = await graphql(t.app, t.adminKey, query)
  expect(response.status, JSON.stringify(response.body)).toBe(400)
  expect(response.body.data).toBeNull()
  expect(response.body.errors![0].extensions.code).toBe('GRAPHQL_VALIDATION_FAILED')
  expect(JSON.stringify(response.body.errors)).toMatch(pattern)
}

describe('GraphQL limits, refused before execution with 400', () => {
  it(`depth over ${GRAPHQL_LIMITS.depth}`, async () => {
    await refused(`{ ${'connectors { items { integration { '.repeat(6)}id${' } } }'.repeat(6)} }`, /depth/i)
  })

  it(`more than ${GRAPHQL_LIMITS.aliases} aliases (1,000 aliased page queries once held the event loop for seconds)`, async () => {
    await refused(`{ ${Array.from({ length: 20 }, (_, i) => `a${i}: integrations(limit: 200) { items { id name } }`).join(' ')} }`, /aliases/i)
    // The 1,000-alias form is longer than the token limit and stops at the parser.
    await refused(`{ ${Array.from({ length: 1_000 }, (_, i) => `a${i}: integrations(limit: 200) { items { id name } }`).join(' ')} }`, /tokens/i)
  })

  it(`cost over ${GRAPHQL_LIMITS.complexity}, counting each page's items`, async () => {
    const page = `integrations(limit: 200) { items { id name tenant clientId cloud authMethod hasClientSecret secretExpiresAt verified createdAt updatedAt } }`
    await refused(`{ a: ${page} b: ${page} c: ${page} d: ${page} e: ${page} }`, /costs \d+, more than 10000/)
    const one = await graphql(t.app, t.adminKey, `{ connectors(limit: 200) { items { id name } } }`)
    expect(one.status).toBe(200)
  })

  it('prices every request by its own variables, though the query text was seen (and kept) before', async () => {
    const page = `integrations(limit: $limit) { items { id name tenant clientId cloud authMethod hasClientSecret secretExpiresAt verified createdAt updatedAt } }`
    const query = `query($limit: Int) { a: ${page} b: ${page} c: ${page} d: ${page} e: ${page} }`
    for (let i = 0; i < 2; i++) expect((await graphql(t.app, t.adminKey, query, { limit: 5 })).status).toBe(200)
    const expensive = await graphql(t.app, t.adminKey, query, { limit: 200 })
    expect(expensive.status).toBe(400)
    expect(expensive.body.data).toBeNull()
    expect(expensive.body.errors![0]).toMatchObject({ extensions: { code: 'GRAPHQL_VALIDATION_FAILED' }, message: expect.stringMatching(/costs \d+, more than 10000/) })
  })

  it(`more than ${GRAPHQL_LIMITS.directives} directives`, async () => {
    await refused(`{ viewer { keyId ${'@include(if: true) '.repeat(50)} } }`, /directives/i)
  })

  it(`more than ${GRAPHQL_LIMITS.tokens} tokens`, async () => {
    await refused(`{ viewer { ${'keyId '.repeat(GRAPHQL_LIMITS.tokens)} } }`, /tokens/i)
  })

  it('a second connection test in one request, and no call reaches Microsoft', async () => {
    const before = fake.tokenRequests.length
    await refused(`mutation { a: testIntegration(id: "${integrationId}") { ok } b: testIntegration(id: "${integrationId}") { ok } }`, /at most 1 connection test/)
    expect(fake.tokenRequests.length).toBe(before)
    await refused(
      `mutation { ...A ...B } fragment A on Mutation { a: testIntegration(id: "${integrationId}") { ok } } fragment B on Mutation { b: testIntegration(id: "${integrationId}") { ok } }`,
      /at most 1 connection test/,
    )
    expect(fake.tokenRequests.length).toBe(before)
    const one = await graphql(t.app, t.adminKey, `mutation { testIntegration(id: "${integrationId}") { ok } }`)
    expect(one.body.data.testIntegration.ok).toBe(true)
    // Two operations of one test each: only the one named runs.
    const named = await t.app.inject({
      method: 'POST',
      url: '/graphql',
      headers: bearer(t.adminKey),
      payload: { query: `mutation A { testIntegration(id: "${integrationId}") { ok } } mutation B { testIntegration(id: "${integrationId}") { ok } }`, operationName: 'A' },
    })
    expect(named.json().data.testIntegration.ok).toBe(true)
  })

  it('a JSON document in place of GraphQL text', async () => {
    await refused('{"kind":"Document","definitions":[]}', /GraphQL text/)
  })

  it('GraphiQL’s own introspection query fits every limit', async () => {
    const response = await graphql(t.app, t.adminKey, getIntrospectionQuery())
    expect(response.status).toBe(200)
    expect(response.body.data.__schema.queryType.name).toBe('Query')
  })
})

describe('statuses of GraphQL answers', () => {
  it('401 without a key, 403 without the scope, 404 for a missing resource', async () => {
    expect((await graphql(t.app, null, '{ viewer { keyId } }')).status).toBe(401)
    const reader = await t.keyWith('mail:read')
    expect((await graphql(t.app, reader, '{ integrations { items { id } } }')).status).toBe(403)
    expect((await graphql(t.app, t.adminKey, '{ integration(id: "0190f5e0-0000-7000-8000-000000000000") { id } }')).status).toBe(404)
    // Every root field is non-null, so one refused field nulls the whole answer: the status is the refusal's.
    const mixed = await graphql(t.app, reader, '{ viewer { keyId } integrations { items { id } } }')
    expect(mixed.status).toBe(403)
    expect(mixed.body.errors![0].extensions.code).toBe('FORBIDDEN')
  })
})

describe('GRAPHQL_INTROSPECTION=false', () => {
  it('refuses __schema and __type and still answers queries', async () => {
    const closed = await buildTestApp({ graphql: { introspection: false } })
    try {
      const introspection = await graphql(closed.app, closed.adminKey, '{ __schema { queryType { name } } }')
      expect(introspection.status).toBe(400)
      expect(introspection.body.errors![0].message).toMatch(/introspection/i)
      expect((await graphql(closed.app, closed.adminKey, '{ viewer { keyId } }')).status).toBe(200)
    } finally {
      await closed.close()
    }
  })
})
