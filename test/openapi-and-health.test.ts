import { readFile } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { renderOpenApi } from '../src/openapi.ts'
import { bearer, buildTestApp, type TestApp } from './support/app.ts'

let t: TestApp

beforeAll(async () => {
  t = await buildTestApp()
})
afterAll(() => t.close())

describe('OpenAPI', () => {
  it('the committed openapi/openapi.json is what the app serves (run `npm run openapi` when this fails)', async () => {
    const committed = await readFile(new URL('../openapi/openapi.json', import.meta.url), 'utf8')
    expect(renderOpenApi(t.app)).toBe(committed)
  })

  it('serves OpenAPI 3.1 at /docs/json with a bearer scheme and the UI at /docs', async () => {
    const json = await t.app.inject({ method: 'GET', url: '/docs/json' })
    expect(json.statusCode).toBe(200)
    const spec = json.json()
    expect(spec.openapi).toBe('3.1.0')
    expect(spec.components.securitySchemes.apiKey).toMatchObject({ type: 'http', scheme: 'bearer' })
    const ui = await t.app.inject({ method: 'GET', url: '/docs/' })
    expect(ui.statusCode).toBe(200)
    expect(ui.body).toContain('swagger')
  })

  it('every operation has an operationId, tag, summary and problem responses', async () => {
    const spec = (await t.app.inject({ method: 'GET', url: '/docs/json' })).json()
    const operations = Object.entries(spec.paths).flatMap(([path, item]) =>
      Object.entries(item as Record<string, any>).map(([method, op]) => ({ path, method, op })),
    )
    expect(operations.length).toBeGreaterThan(5)
    const ids = new Set<string>()
    for (const { path, method, op } of operations) {
      const where = `${method.toUpperCase()} ${path}`
      expect(op.operationId, where).toEqual(expect.any(String))
      expect(ids.has(op.operationId), `${where} duplicate operationId`).toBe(false)
      ids.add(op.operationId)
      expect(op.tags?.length, where).toBeGreaterThan(0)
      expect(op.summary, where).toEqual(expect.any(String))
      const protectedRoute = !(Array.isArray(op.security) && op.security.length === 0)
      if (protectedRoute) {
        for (const status of ['400', '401', '403', '500']) {
          expect(op.responses[status]?.content?.['application/problem+json'], `${where} ${status}`).toBeDefined()
        }
      }
      for (const [status, response] of Object.entries(op.responses as Record<string, any>)) {
        expect(response.description, `${where} ${status}`).not.toBe('Default Response')
      }
    }
  })
})

describe('health and metrics', () => {
  it('live and ready answer without a key', async () => {
    expect((await t.app.inject({ method: 'GET', url: '/health/live' })).json()).toEqual({ status: 'ok' })
    const ready = await t.app.inject({ method: 'GET', url: '/health/ready' })
    expect(ready.statusCode).toBe(200)
  })

  it('metrics need the metrics:read scope and count requests by route', async () => {
    expect((await t.app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(401)
    const noScope = await t.keyWith('config:read')
    expect((await t.app.inject({ method: 'GET', url: '/metrics', headers: bearer(noScope) })).statusCode).toBe(403)
    const key = await t.keyWith('metrics:read')
    await t.app.inject({ method: 'GET', url: '/health/live' })
    const response = await t.app.inject({ method: 'GET', url: '/metrics', headers: bearer(key) })
    expect(response.statusCode).toBe(200)
    expect(response.headers['content-type']).toMatch(/^text\/plain/)
    expect(response.body).toMatch(/mailgate_http_request_duration_seconds_count\{method="GET",route="\/health\/live",status_code="200"\} \d+/)
  })

  it('ready is 503 problem+json when the database is gone', async () => {
    const scratch = await buildTestApp()
    await scratch.db.database.close()
    const response = await scratch.app.inject({ method: 'GET', url: '/health/ready' })
    expect(response.statusCode).toBe(503)
    expect(response.headers['content-type']).toMatch(/problem\+json/)
    expect(response.json().code).toBe('SERVICE_UNAVAILABLE')
    await scratch.app.close()
    await scratch.db.drop().catch(() => {})
  })
})
