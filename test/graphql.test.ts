import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, graphql, type TestApp } from './support/app.ts'

let t: TestApp

beforeAll(async () => {
  t = await buildTestApp()
})
afterAll(() => t.close())

describe('GraphQL', () => {
  it('viewer returns the calling key and its scopes', async () => {
    const key = await t.keyWith('config:read', 'mail:send')
    const { status, body } = await graphql(t.app, key, '{ viewer { keyId name scopes } }')
    expect(status).toBe(200)
    const principal = await t.app.services.apiKeys.authenticate(`Bearer ${key}`)
    expect(body.data.viewer).toEqual({ keyId: principal.keyId, name: principal.name, scopes: ['CONFIG_READ', 'MAIL_SEND'] })
  })

  it('without a key: UNAUTHENTICATED, same code as REST', async () => {
    const { body } = await graphql(t.app, null, '{ viewer { keyId } }')
    expect(body.data).toBeNull()
    expect(body.errors![0].extensions).toMatchObject({ code: 'UNAUTHENTICATED' })
  })

  it('with a revoked or unknown key: UNAUTHENTICATED with the reason', async () => {
    const { body } = await graphql(t.app, 'mgk_nope', '{ viewer { keyId } }')
    expect(body.errors![0]).toMatchObject({ message: 'The API key is not valid.', extensions: { code: 'UNAUTHENTICATED' } })
  })

  it('missing scope: FORBIDDEN naming it', async () => {
    const key = await t.keyWith('mail:send')
    const { body } = await graphql(t.app, key, '{ apiKeys { items { id } } }')
    expect(body.errors![0].extensions).toMatchObject({ code: 'FORBIDDEN', missingScopes: ['admin'] })
  })

  it('creates, lists and revokes keys through the same service as REST, audited', async () => {
    const created = await graphql(
      t.app,
      t.adminKey,
      `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { key apiKey { id name scopes revokedAt } } }`,
      { input: { name: 'from graphql', scopes: ['MAIL_READ'] } },
    )
    expect(created.body.errors).toBeUndefined()
    const { key, apiKey } = created.body.data.createApiKey
    expect(apiKey).toMatchObject({ name: 'from graphql', scopes: ['MAIL_READ'], revokedAt: null })
    expect((await graphql(t.app, key, '{ viewer { scopes } }')).body.data.viewer.scopes).toEqual(['MAIL_READ'])

    const revoked = await graphql(t.app, t.adminKey, `mutation($id: ID!) { revokeApiKey(id: $id) }`, { id: apiKey.id })
    expect(revoked.body.data.revokeApiKey).toBe(true)
    expect((await graphql(t.app, key, '{ viewer { scopes } }')).body.errors![0].extensions.code).toBe('UNAUTHENTICATED')

    const rest = await t.app.inject({ method: 'GET', url: `/v1/audit?resourceId=${apiKey.id}`, headers: { authorization: `Bearer ${t.adminKey}` } })
    expect(rest.json().items.map((e: { action: string }) => e.action)).toEqual(['revoke', 'create'])
  })

  it('validates input with the REST rules and reports VALIDATION_FAILED with fields', async () => {
    const { body } = await graphql(
      t.app,
      t.adminKey,
      `mutation { createApiKey(input: { name: "", scopes: [] }) { key } }`,
    )
    expect(body.errors![0].extensions.code).toBe('VALIDATION_FAILED')
    expect(body.errors![0].extensions.errors.map((e: { field: string }) => e.field).sort()).toEqual(['name', 'scopes'])
  })

  it('NOT_FOUND and LAST_ADMIN_KEY map to the REST codes', async () => {
    const missing = await graphql(t.app, t.adminKey, `{ apiKey(id: "0190f5e0-0000-7000-8000-000000000000") { id } }`)
    expect(missing.body.errors![0].extensions.code).toBe('NOT_FOUND')
    const admin = await t.app.services.apiKeys.authenticate(`Bearer ${t.adminKey}`)
    const last = await graphql(t.app, t.adminKey, `mutation($id: ID!) { revokeApiKey(id: $id) }`, { id: admin.keyId })
    expect(last.body.errors![0].extensions.code).toBe('LAST_ADMIN_KEY')
  })

  it('a query that does not fit the schema is GRAPHQL_VALIDATION_FAILED', async () => {
    const { status, body } = await graphql(t.app, t.adminKey, '{ viewer { nope } }')
    expect(status).toBe(400)
    expect(body.errors![0].extensions.code).toBe('GRAPHQL_VALIDATION_FAILED')
  })

  it('client mistakes get the REST codes, and coercion errors never echo the submitted value', async () => {
    const post = (payload: string) =>
      t.app.inject({ method: 'POST', url: '/graphql', headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' }, payload })
    const malformed = await post('{"query": ')
    expect(malformed.json().errors[0].extensions.code).toBe('MALFORMED_BODY')
    const noQuery = await post('{}')
    expect(noQuery.json().errors[0].extensions.code).toBe('GRAPHQL_BAD_REQUEST')
    const leaky = await post(
      JSON.stringify({
        query: 'mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { key } }',
        variables: { i: { name: 'TopSecretValue-123', scopes: 'NOT-A-SCOPE-secret' } },
      }),
    )
    expect(leaky.statusCode).toBe(400)
    expect(leaky.json().errors[0].extensions.code).toBe('GRAPHQL_VALIDATION_FAILED')
    expect(leaky.json().errors[0].message).toContain('i.scopes')
    expect(leaky.body).not.toMatch(/TopSecretValue|NOT-A-SCOPE/)
    const logs = t.logs.join('\n')
    expect(logs).not.toMatch(/TopSecretValue|NOT-A-SCOPE/)
  })

  it('serves GraphiQL without a key and keeps GraphQL out of the OpenAPI document', async () => {
    const page = await t.app.inject({ method: 'GET', url: '/graphiql' })
    expect(page.statusCode).toBe(200)
    expect(page.headers['content-type']).toMatch(/text\/html/)
    const spec = t.app.swagger() as { paths: Record<string, unknown> }
    expect(Object.keys(spec.paths).filter((path) => /graph(ql|iql)/.test(path))).toEqual([])
  })
})
