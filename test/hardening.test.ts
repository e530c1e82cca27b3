import { connect } from 'node:net'
import { Writable } from 'node:stream'
import { sql } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createLogger } from '../src/logger.ts'
import { bearer, buildTestApp, graphql, type TestApp } from './support/app.ts'
import { FakeMicrosoft } from './support/fake-microsoft.ts'
import { stateFingerprint } from './support/fuzz.ts'

/** Each input that once reached PostgreSQL or the stack and came back as a 500. */
const fake = new FakeMicrosoft()
let t: TestApp
let integrationId: string
let connectorId: string
let routeId: string

beforeAll(async () => {
  fake.start()
  t = await buildTestApp()
  integrationId = (await call('POST', '/v1/integrations', { name: 'i', tenant: 'contoso.onmicrosoft.com', clientId: '11111111-2222-3333-4444-555555555555', authMethod: 'clientSecret', clientSecret: 's3cret-value' })).json().id
  connectorId = (
    await call('POST', '/v1/connectors', { integrationId, name: 'in', direction: 'incoming', primaryAddress: 'in@contoso.com', fallbackRoute: { workItemType: 'ticket', processId: 'p' } })
  ).json().id
  const route = await call('POST', '/v1/routes', { connectorId, name: 'r', emailAddress: 'sales@contoso.com', workItemType: 'ticket', processId: 'p2' })
  expect(route.statusCode, route.body).toBe(201)
  routeId = route.json().id
})
afterAll(async () => {
  await t.close()
  fake.stop()
})

function call(method: 'GET' | 'POST' | 'PATCH', url: string, payload?: unknown, headers: Record<string, string> = {}) {
  return t.app.inject({ method, url, headers: { ...bearer(t.adminKey), ...headers }, ...(payload !== undefined ? { payload: payload as object } : {}) })
}

async function expectRefused(response: Awaited<ReturnType<typeof call>>, field: string, status = 400) {
  expect(response.statusCode, response.body).toBe(status)
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
  expect(response.json().errors.map((error: { field: string }) => error.field)).toContain(field)
}

describe('text fields', () => {
  const bodies: [string, string, Record<string, unknown>, string][] = [
    ['POST', '/v1/api-keys', { name: 'a\u0000b', scopes: ['mail:read'] }, 'name'],
    ['POST', '/v1/integrations', { name: 'a\u0000b', tenant: 'contoso.com', clientId: '11111111-2222-3333-4444-555555555555', authMethod: 'clientSecret', clientSecret: 'x' }, 'name'],
    ['PATCH', '/v1/connectors/CID', { name: 'in\u0000' }, 'name'],
    ['PATCH', '/v1/routes/RID', { name: 'x\u0000' }, 'name'],
    ['PATCH', '/v1/routes/RID', { processId: 'p\u0000' }, 'processId'],
    ['PATCH', '/v1/routes/RID', { rules: { subjectKeywords: ['ok', 'x\ud800y'] } }, 'rules.subjectKeywords.1'],
    ['PATCH', '/v1/routes/RID', { name: 'two\r\nlines' }, 'name'],
    ['PATCH', '/v1/connectors/CID', { name: 'bell\u0007' }, 'name'],
    ['PATCH', '/v1/connectors/CID', { name: 'c1\u0085control' }, 'name'],
    ['PATCH', '/v1/routes/RID', { name: 'invoice\u202Efdp.exe' }, 'name'],
    ['PATCH', '/v1/routes/RID', { name: 'line\u2028separator' }, 'name'],
    ['POST', '/v1/connectors/CID/disable', { reason: 'a\u0000' }, 'reason'],
  ]
  it.each(bodies)('%s %s refuses NUL, unpaired surrogates and control characters, naming the field', async (method, url, payload, field) => {
    const before = await stateFingerprint(t.db.database)
    const response = await call(method as 'POST', url.replace('CID', connectorId).replace('RID', routeId), payload)
    await expectRefused(response, field)
    expect(response.json().errors.find((error: { field: string }) => error.field === field).message).toMatch(/control characters|surrogates/)
    expect(await stateFingerprint(t.db.database)).toBe(before)
  })

  it('multi-line fields keep CR, LF and TAB, and emoji pass everywhere', async () => {
    const response = await call('PATCH', `/v1/routes/${routeId}`, { description: 'line one\r\n\tline two', name: 'Sales 😀' })
    expect(response.statusCode, response.body).toBe(200)
    expect(response.json()).toMatchObject({ description: 'line one\r\n\tline two', name: 'Sales 😀' })
  })

  it.each([
    ['/v1/audit?resourceType=a%00b', 'query.resourceType'],
    ['/v1/audit?resourceId=a%00b', 'query.resourceId'],
    ['/v1/audit?action=a%00b', 'query.action'],
    ['/v1/integrations?tenant=a%00b', 'query.tenant'],
    ['/v1/messages?workItemRef=a%00b', 'query.workItemRef'],
    ['/v1/audit?since=2020-12-31T23:59:60Z', 'query.since'],
    ['/v1/audit?since=0000-01-01T00:00:00Z', 'query.since'],
    ['/v1/audit?until=0001-01-01T00:00:00%2B01:00', 'query.until'],
  ])('%s is a 400 naming %s', async (url, field) => {
    await expectRefused(await call('GET', url), field)
  })

  it('GraphQL applies the same rules: stricter email, NUL, dates', async () => {
    const address = await graphql(t.app, t.adminKey, `mutation($i: CreateConnectorInput!) { createConnector(input: $i) { id } }`, {
      i: { integrationId, name: 'x', direction: 'outgoing', primaryAddress: '<script>@evil.x' },
    })
    expect(address.status).toBe(400)
    expect(address.body.errors![0].extensions).toMatchObject({ code: 'VALIDATION_FAILED', errors: [{ field: 'primaryAddress' }] })
    const weird = await graphql(t.app, t.adminKey, `mutation($i: CreateConnectorInput!) { createConnector(input: $i) { id } }`, {
      i: { integrationId, name: 'x', direction: 'outgoing', primaryAddress: 'a\u0001<>"(),;:[]b@contoso.com' },
    })
    expect(weird.body.errors![0].extensions.code).toBe('VALIDATION_FAILED')
    const key = await graphql(t.app, t.adminKey, `mutation { sendMessage(input: { from: "a@contoso.com", subject: "s", body: { contentType: text, content: "c" } }, idempotencyKey: "a\\u0000b") { id } }`)
    expect(key.status).toBe(400)
    expect(key.body.errors![0].extensions.errors[0].field).toBe('key')
    const since = await graphql(t.app, t.adminKey, `{ auditEvents(filter: { since: "2020-12-31T23:59:60Z" }) { items { id } } }`)
    expect(since.status).toBe(400)
    // A literal that no scalar accepts is refused while graphql-js validates the document.
    expect(since.body.errors![0]).toMatchObject({ extensions: { code: 'GRAPHQL_VALIDATION_FAILED' }, message: expect.stringContaining('leap second') })
    const sinceVariable = await graphql(t.app, t.adminKey, `query($s: DateTime) { auditEvents(filter: { since: $s }) { items { id } } }`, { s: '0000-01-01T00:00:00Z' })
    expect(sinceVariable.status).toBe(400)
  })
})

describe('request shapes', () => {
  it('JSON in a charset other than UTF-8 is a 415, not silently mangled', async () => {
    const response = await call('POST', '/v1/api-keys', Buffer.from('{"name":"caf\xe9","scopes":["mail:read"]}', 'latin1'), {
      'content-type': 'application/json; charset=latin1',
    })
    expect(response.statusCode).toBe(415)
    expect(response.json().code).toBe('UNSUPPORTED_MEDIA_TYPE')
    const utf8 = await call('POST', '/v1/api-keys', JSON.stringify({ name: 'café', scopes: ['mail:read'] }), { 'content-type': 'application/json; charset=UTF-8' })
    expect(utf8.statusCode).toBe(201)
    expect(utf8.json().name).toBe('café')
  })

  it('a mutation over GET is a 405', async () => {
    const response = await t.app.inject({ method: 'GET', url: `/graphql?query=${encodeURIComponent('mutation { revokeApiKey(id: "0190f5e0-0000-7000-8000-000000000000") }')}`, headers: bearer(t.adminKey) })
    expect(response.statusCode).toBe(405)
    expect(response.json().errors[0].extensions.code).toBe('METHOD_NOT_ALLOWED')
  })

  it('a refused GraphQL literal is not echoed back, secrets included', async () => {
    const response = await graphql(
      t.app,
      t.adminKey,
      `mutation { createIntegration(input: { name: "x", tenant: "contoso.com", clientId: "11111111-2222-3333-4444-555555555555", authMethod: clientSecret, clientSecret: "TOP-SECRET-VALUE", cloud: NOPE }) { id } }`,
    )
    expect(response.status).toBe(400)
    expect(JSON.stringify(response.body)).not.toContain('TOP-SECRET-VALUE')
  })
})

describe('nesting', () => {
  it('a JSON body nested deeper than 32 levels is refused before parsing', async () => {
    const deep = '{"a":'.repeat(40) + '1' + '}'.repeat(40)
    const response = await call('POST', '/v1/api-keys', deep, { 'content-type': 'application/json' })
    expect(response.statusCode).toBe(400)
    expect(response.json()).toMatchObject({ code: 'MALFORMED_BODY', detail: expect.stringContaining('32') })
  })

  it('a GraphQL JSON argument nested 3,000 deep is a 400, not a stack overflow', async () => {
    const headers = '{ a: '.repeat(3_000) + '1' + ' }'.repeat(3_000)
    const response = await graphql(t.app, t.adminKey, `mutation { sendMessage(input: { from: "a@contoso.com", subject: "s", body: { contentType: text, content: "c" }, headers: ${headers} }) { id } }`)
    expect(response.status).toBe(400)
    expect(response.body.errors![0].extensions.code).toBe('GRAPHQL_VALIDATION_FAILED')
  })
})

describe('actions without input', () => {
  it.each([
    ['application/json', '{"unexpected": true}', 400],
    ['application/json', '[1]', 400],
    ['application/json', '"enable"', 400],
    ['text/plain', 'please', 400],
    ['application/xml', '<a/>', 415],
  ])('route disable with %s %s is refused and changes nothing', async (contentType, payload, status) => {
    const before = await stateFingerprint(t.db.database)
    const response = await call('POST', `/v1/routes/${routeId}/disable`, payload, { 'content-type': contentType })
    expect(response.statusCode).toBe(status)
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
    expect(await stateFingerprint(t.db.database)).toBe(before)
  })

  it('takes no body or {} alike', async () => {
    expect((await call('POST', `/v1/routes/${routeId}/disable`)).json().enabled).toBe(false)
    expect((await call('POST', `/v1/routes/${routeId}/enable`, {})).json().enabled).toBe(true)
  })
})

describe('errors outside the router', () => {
  async function raw(request: string): Promise<string> {
    const address = t.app.server.address()
    const port = typeof address === 'object' && address ? address.port : 0
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.end(request))
      let answer = ''
      socket.on('data', (chunk) => (answer += chunk))
      socket.on('close', () => resolve(answer))
      socket.on('error', reject)
    })
  }

  beforeAll(async () => {
    await t.app.listen({ port: 0, host: '127.0.0.1' })
  })

  it('431 for headers over the limit is problem+json', async () => {
    const answer = await raw(`GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`)
    expect(answer).toMatch(/^HTTP\/1.1 431 /)
    expect(answer).toMatch(/content-type: application\/problem\+json/i)
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toMatchObject({ status: 431, code: 'HEADERS_TOO_LARGE' })
  })

  it('an HTTP/1.1 request without Host is a 400 problem+json', async () => {
    const answer = await raw('GET /health/live HTTP/1.1\r\nConnection: close\r\n\r\n')
    expect(answer).toMatch(/^HTTP\/1.1 400 /)
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toMatchObject({ status: 400, code: 'BAD_REQUEST', detail: expect.stringContaining('Host') })
  })

  it('a malformed request is a 400 problem+json', async () => {
    const answer = await raw('GET /health/live HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n')
    expect(answer).toMatch(/^HTTP\/1.1 400 /)
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toMatchObject({ status: 400, code: 'BAD_REQUEST' })
  })
})

describe('logs', () => {
  it('a failed query is logged without its parameters', async () => {
    const lines: string[] = []
    const log = createLogger('info', new Writable({ write: (chunk, _encoding, done) => (lines.push(String(chunk)), done()) }))
    const error = await t.db.database.db.execute(sql`select ${'sealed-canary-7731'}::int`).catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(Error)
    expect(String((error as Error).message)).toContain('sealed-canary-7731')
    log.error({ err: error }, 'unhandled error')
    expect(lines.join('')).toContain('Failed query: select $1::int')
    expect(lines.join('')).not.toContain('sealed-canary-7731')

    // A parameter that imitates a stack line must not end the redaction early.
    const tricky = await t.db.database.db.execute(sql`select ${'pem\n    at x'}::text, ${'sealed-canary-8842'}::int`).catch((caught: unknown) => caught)
    log.error({ err: tricky }, 'unhandled error')
    expect(lines.join('')).not.toContain('sealed-canary-8842')
  })
})
