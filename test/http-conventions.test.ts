import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bearer, buildTestApp, type TestApp } from './support/app.ts'

let t: TestApp

beforeAll(async () => {
  t = await buildTestApp({
    bodyLimit: 2048,
    extend(app) {
      app.get('/boom', async () => {
        throw new Error('connection to db failed: password=hunter2 at /srv/app/internal.ts:12')
      })
    },
  })
})
afterAll(() => t.close())

function expectProblem(response: { statusCode: number; headers: Record<string, unknown>; json(): any }, status: number, code: string) {
  expect(response.statusCode).toBe(status)
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
  const body = response.json()
  expect(body).toMatchObject({ status, code, type: expect.stringMatching(/^urn:mailgate:problem:/) })
  expect(body.title).toEqual(expect.any(String))
  expect(body.detail).toEqual(expect.any(String))
  expect(body.requestId).toBe(response.headers['x-request-id'])
  return body
}

describe('problem+json for every error', () => {
  it('404 for an unknown route names the method and path', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/v1/nope?x=1' })
    const body = expectProblem(response, 404, 'ROUTE_NOT_FOUND')
    expect(body.detail).toContain('GET /v1/nope')
    expect(body.instance).toBe('/v1/nope')
  })

  it('400 names every invalid field and changes nothing', async () => {
    const before = await t.app.inject({ method: 'GET', url: '/v1/api-keys', headers: bearer(t.adminKey) })
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/api-keys',
      headers: bearer(t.adminKey),
      payload: { scopes: ['config:read', 'root'], nmae: 'typo' },
    })
    const body = expectProblem(response, 400, 'VALIDATION_FAILED')
    const fields = body.errors.map((e: { field: string }) => e.field)
    expect(fields).toEqual(expect.arrayContaining(['name', 'nmae', 'scopes.1']))
    expect(body.errors.find((e: any) => e.field === 'name').message).toBe('is required')
    expect(body.errors.find((e: any) => e.field === 'nmae').message).toMatch(/not a known field/)
    const after = await t.app.inject({ method: 'GET', url: '/v1/api-keys', headers: bearer(t.adminKey) })
    expect(after.json().items).toHaveLength(before.json().items.length)
  })

  it('400 for a wrongly typed body value instead of coercing it', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/api-keys',
      headers: bearer(t.adminKey),
      payload: { name: 42, scopes: ['admin'] },
    })
    const body = expectProblem(response, 400, 'VALIDATION_FAILED')
    expect(body.errors).toEqual([{ field: 'name', message: expect.stringContaining('string') }])
  })

  it('400 for invalid query and path parameters', async () => {
    const query = await t.app.inject({ method: 'GET', url: '/v1/api-keys?limit=0', headers: bearer(t.adminKey) })
    expect(expectProblem(query, 400, 'VALIDATION_FAILED').errors[0].field).toBe('query.limit')
    const path = await t.app.inject({ method: 'GET', url: '/v1/api-keys/not-a-uuid', headers: bearer(t.adminKey) })
    expect(expectProblem(path, 400, 'VALIDATION_FAILED').errors[0].field).toBe('path.id')
    const cursor = await t.app.inject({ method: 'GET', url: '/v1/api-keys?cursor=garbage', headers: bearer(t.adminKey) })
    expect(expectProblem(cursor, 400, 'VALIDATION_FAILED').errors[0].field).toBe('query.cursor')
  })

  it('400 for malformed JSON', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/api-keys',
      headers: { ...bearer(t.adminKey), 'content-type': 'application/json' },
      payload: '{"name": "x", ',
    })
    expectProblem(response, 400, 'MALFORMED_BODY')
  })

  it('413 for a body over the limit', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/api-keys',
      headers: bearer(t.adminKey),
      payload: { name: 'x'.repeat(5000), scopes: ['admin'] },
    })
    expectProblem(response, 413, 'PAYLOAD_TOO_LARGE')
  })

  it('415 for a content type the API does not take', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/api-keys',
      headers: { ...bearer(t.adminKey), 'content-type': 'text/csv' },
      payload: 'name,scopes',
    })
    expectProblem(response, 415, 'UNSUPPORTED_MEDIA_TYPE')
  })

  it('400 problem+json for a URL Fastify cannot decode', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/v1/api-keys/%zz', headers: bearer(t.adminKey) })
    expectProblem(response, 400, 'BAD_REQUEST')
  })

  it('404 for a missing resource names it', async () => {
    const id = '0190f5e0-0000-7000-8000-000000000000'
    const response = await t.app.inject({ method: 'GET', url: `/v1/api-keys/${id}`, headers: bearer(t.adminKey) })
    const body = expectProblem(response, 404, 'NOT_FOUND')
    expect(body.detail).toContain(id)
  })

  it('500 hides internals but keeps them in the log with the request id', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/boom', headers: { 'x-request-id': 'trace-500' } })
    const body = expectProblem(response, 500, 'INTERNAL')
    expect(JSON.stringify(body)).not.toMatch(/hunter2|internal\.ts|connection to db/)
    expect(body.requestId).toBe('trace-500')
    const logged = t.logs.filter((line) => line.includes('"requestId":"trace-500"'))
    expect(logged.some((line) => line.includes('connection to db failed'))).toBe(true)
  })
})

describe('request ids', () => {
  it('echoes a well-formed caller id and logs it on every line of the request', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/health/live', headers: { 'x-request-id': 'abc-123' } })
    expect(response.headers['x-request-id']).toBe('abc-123')
    const generated = await t.app.inject({ method: 'GET', url: '/v1/nope', headers: { 'x-request-id': 'bad id\n' } })
    expect(generated.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/)
    const lines = t.logs.filter((line) => line.includes(String(generated.headers['x-request-id'])))
    expect(lines.length).toBeGreaterThanOrEqual(2)
  })

  it('never logs the API key', async () => {
    await t.app.inject({ method: 'GET', url: '/v1/api-keys', headers: bearer(t.adminKey) })
    await t.app.inject({ method: 'GET', url: '/v1/api-keys', headers: bearer('mgk_wrong-key-value') })
    expect(t.logs.join('\n')).not.toContain(t.adminKey)
    expect(t.logs.join('\n')).not.toContain('mgk_wrong-key-value')
  })
})
