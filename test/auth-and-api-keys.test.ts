import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bearer, buildTestApp, type TestApp } from './support/app.ts'

let t: TestApp

beforeAll(async () => {
  t = await buildTestApp()
})
afterAll(() => t.close())

describe('authentication', () => {
  it('401 without an Authorization header, telling how to send one', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/v1/audit' })
    expect(response.statusCode).toBe(401)
    expect(response.json()).toMatchObject({ code: 'UNAUTHENTICATED', detail: expect.stringContaining('Bearer') })
  })

  it('401 for a malformed header and for an unknown key', async () => {
    const malformed = await t.app.inject({ method: 'GET', url: '/v1/audit', headers: { authorization: t.adminKey } })
    expect(malformed.statusCode).toBe(401)
    expect(malformed.json().detail).toMatch(/Bearer <key>/)
    const unknown = await t.app.inject({ method: 'GET', url: '/v1/audit', headers: bearer('mgk_' + 'x'.repeat(43)) })
    expect(unknown.statusCode).toBe(401)
    expect(unknown.json().detail).toBe('The API key is not valid.')
  })

  it('401 for a revoked key, at once', async () => {
    const key = await t.keyWith('config:read')
    expect((await t.app.inject({ method: 'GET', url: '/v1/audit', headers: bearer(key) })).statusCode).toBe(200)
    const id = (await t.app.services.apiKeys.authenticate(`Bearer ${key}`)).keyId
    const revoke = await t.app.inject({ method: 'DELETE', url: `/v1/api-keys/${id}`, headers: bearer(t.adminKey) })
    expect(revoke.statusCode).toBe(204)
    const after = await t.app.inject({ method: 'GET', url: '/v1/audit', headers: bearer(key) })
    expect(after.statusCode).toBe(401)
    expect(after.json().detail).toBe('The API key has been revoked.')
  })

  it('403 names the missing scope', async () => {
    const key = await t.keyWith('mail:send')
    const response = await t.app.inject({ method: 'GET', url: '/v1/audit', headers: bearer(key) })
    expect(response.statusCode).toBe(403)
    expect(response.json()).toMatchObject({ code: 'FORBIDDEN', missingScopes: ['config:read'] })
  })

  it('config:write carries config:read; admin carries everything', async () => {
    const writer = await t.keyWith('config:write')
    expect((await t.app.inject({ method: 'GET', url: '/v1/audit', headers: bearer(writer) })).statusCode).toBe(200)
    expect((await t.app.inject({ method: 'GET', url: '/v1/api-keys', headers: bearer(writer) })).statusCode).toBe(403)
    expect((await t.app.inject({ method: 'GET', url: '/v1/audit', headers: bearer(t.adminKey) })).statusCode).toBe(200)
  })

  it('refuses at boot a route in the API-key scope that declares no scopes', async () => {
    const { buildApp } = await import('../src/app.ts')
    const { apiKeyScope } = await import('../src/plugins/auth.ts')
    const { SecretBox } = await import('../src/lib/secret-box.ts')
    const app = await buildApp({
      database: t.db.database,
      secretBox: new SecretBox(Buffer.alloc(32, 1).toString('base64')),
      collectDefaultMetrics: false,
    })
    app.register(async (scope) => {
      await apiKeyScope(scope)
      scope.get('/unguarded', async () => 'oops')
    })
    await expect(app.ready()).rejects.toThrow(/declares no config.scopes/)
    await app.close()
  })

  it('a key revoked on one instance stops working on another within 1 s, though that one remembers keys', async () => {
    const other = await buildTestApp({ database: t.db })
    try {
      const key = await t.keyWith('config:read')
      const id = (await t.app.services.apiKeys.authenticate(`Bearer ${key}`)).keyId
      // The other instance has just read the key, so it is remembered there.
      expect((await other.app.inject({ method: 'GET', url: '/v1/audit?limit=1', headers: bearer(key) })).statusCode).toBe(200)
      const revokedAt = performance.now()
      expect((await t.app.inject({ method: 'DELETE', url: `/v1/api-keys/${id}`, headers: bearer(t.adminKey) })).statusCode).toBe(204)
      expect((await t.app.inject({ method: 'GET', url: '/v1/audit?limit=1', headers: bearer(key) })).statusCode).toBe(401)
      let status = 200
      while (status === 200 && performance.now() - revokedAt < 3_000) {
        status = (await other.app.inject({ method: 'GET', url: '/v1/audit?limit=1', headers: bearer(key) })).statusCode
      }
      expect(status).toBe(401)
      expect(performance.now() - revokedAt).toBeLessThan(1_000)
    } finally {
      await other.app.close()
    }
  })
})

describe('API keys', () => {
  it('creates a key shown once, stores only its hash, and the key works with its scopes', async () => {
    const created = await t.app.inject({
      method: 'POST',
      url: '/v1/api-keys',
      headers: bearer(t.adminKey),
      payload: { name: 'sender service', scopes: ['mail:send'] },
    })
    expect(created.statusCode).toBe(201)
    const body = created.json()
    expect(body).toMatchObject({ name: 'sender service', scopes: ['mail:send'], revokedAt: null, lastUsedAt: null })
    expect(body.key).toMatch(/^mgk_[A-Za-z0-9_-]{43}$/)
    expect(body.prefix).toBe(body.key.slice(0, 12))
    expect(body).not.toHaveProperty('keyHash')

    const fetched = await t.app.inject({ method: 'GET', url: `/v1/api-keys/${body.id}`, headers: bearer(t.adminKey) })
    expect(fetched.json()).not.toHaveProperty('key')
    expect(fetched.json()).not.toHaveProperty('keyHash')

    const stored = await t.db.database.db.query.apiKeys.findFirst({ where: (k, { eq }) => eq(k.id, body.id) })
    expect(JSON.stringify(stored)).not.toContain(body.key)

    const principal = await t.app.services.apiKeys.authenticate(`Bearer ${body.key}`)
    expect(principal).toMatchObject({ keyId: body.id, scopes: ['mail:send'] })
  })

  it('records lastUsedAt when a key is used', async () => {
    const key = await t.keyWith('config:read')
    await t.app.inject({ method: 'GET', url: '/v1/audit', headers: bearer(key) })
    const { keyId } = await t.app.services.apiKeys.authenticate(`Bearer ${key}`)
    const fetched = await t.app.inject({ method: 'GET', url: `/v1/api-keys/${keyId}`, headers: bearer(t.adminKey) })
    expect(Date.parse(fetched.json().lastUsedAt)).toBeGreaterThan(Date.now() - 60_000)
  })

  it('lists newest first with cursor pagination, hiding revoked keys unless asked', async () => {
    for (let i = 0; i < 3; i++) await t.keyWith('mail:read')
    const seen: string[] = []
    let cursor: string | null = null
    do {
      const query: string = `/v1/api-keys?limit=2${cursor ? `&cursor=${cursor}` : ''}`
      const page: any = (await t.app.inject({ method: 'GET', url: query, headers: bearer(t.adminKey) })).json()
      expect(page.items.length).toBeLessThanOrEqual(2)
      seen.push(...page.items.map((k: { id: string }) => k.id))
      cursor = page.nextCursor
    } while (cursor)
    expect(seen).toEqual([...seen].sort().reverse())
    expect(new Set(seen).size).toBe(seen.length)
    const all = await t.app.inject({ method: 'GET', url: '/v1/api-keys?limit=200&includeRevoked=true', headers: bearer(t.adminKey) })
    expect(all.json().items.length).toBeGreaterThan(seen.length)
    expect(all.json().items.some((k: { revokedAt: string | null }) => k.revokedAt !== null)).toBe(true)
  })

  it('refuses to revoke the last active admin key, and allows it once another exists', async () => {
    const admin = await t.app.services.apiKeys.authenticate(`Bearer ${t.adminKey}`)
    const refused = await t.app.inject({ method: 'DELETE', url: `/v1/api-keys/${admin.keyId}`, headers: bearer(t.adminKey) })
    expect(refused.statusCode).toBe(409)
    expect(refused.json()).toMatchObject({ code: 'LAST_ADMIN_KEY' })

    const second = await t.keyWith('admin')
    const secondId = (await t.app.services.apiKeys.authenticate(`Bearer ${second}`)).keyId
    const revoked = await t.app.inject({ method: 'DELETE', url: `/v1/api-keys/${secondId}`, headers: bearer(t.adminKey) })
    expect(revoked.statusCode).toBe(204)
    const again = await t.app.inject({ method: 'DELETE', url: `/v1/api-keys/${secondId}`, headers: bearer(t.adminKey) })
    expect(again.statusCode).toBe(204)
  })

  it('404 when revoking a key that does not exist', async () => {
    const response = await t.app.inject({
      method: 'DELETE',
      url: '/v1/api-keys/0190f5e0-0000-7000-8000-000000000001',
      headers: bearer(t.adminKey),
    })
    expect(response.statusCode).toBe(404)
  })

  it('bootstraps an admin key only on an empty key table', async () => {
    expect(await t.app.services.apiKeys.ensureInitialAdminKey(undefined)).toBeNull()
  })
})
