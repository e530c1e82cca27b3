import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { diffRecords } from '../src/modules/audit/service.ts'
import { bearer, buildTestApp, graphql, type TestApp } from './support/app.ts'

let t: TestApp

beforeAll(async () => {
  t = await buildTestApp()
})
afterAll(() => t.close())

describe('audit trail', () => {
  it('records who created and revoked a key, with a diff that never holds a secret', async () => {
    const admin = await t.app.services.apiKeys.authenticate(`Bearer ${t.adminKey}`)
    const created = (
      await t.app.inject({
        method: 'POST',
        url: '/v1/api-keys',
        headers: { ...bearer(t.adminKey), 'x-request-id': 'audit-req-1' },
        payload: { name: 'ops', scopes: ['config:read'] },
      })
    ).json()
    await t.app.inject({ method: 'DELETE', url: `/v1/api-keys/${created.id}`, headers: bearer(t.adminKey) })

    const page = (
      await t.app.inject({
        method: 'GET',
        url: `/v1/audit?resourceType=api_key&resourceId=${created.id}`,
        headers: bearer(t.adminKey),
      })
    ).json()
    expect(page.items.map((e: { action: string }) => e.action)).toEqual(['revoke', 'create'])
    const [revoke, create] = page.items
    expect(create).toMatchObject({ actorKeyId: admin.keyId, requestId: 'audit-req-1', resourceType: 'api_key' })
    expect(create.diff.changes.name).toEqual({ to: 'ops' })
    expect(revoke.diff.changes).toEqual({ revokedAt: { from: null, to: expect.any(String) } })
    expect(JSON.stringify(page)).not.toContain(created.key)
  })

  it('filters by action, actor and time, and pages with a cursor', async () => {
    const key = await t.keyWith('admin')
    const actor = await t.app.services.apiKeys.authenticate(`Bearer ${key}`)
    const since = new Date().toISOString()
    for (let i = 0; i < 3; i++) {
      await t.app.inject({ method: 'POST', url: '/v1/api-keys', headers: bearer(key), payload: { name: `k${i}`, scopes: ['mail:read'] } })
    }
    const first = (
      await t.app.inject({
        method: 'GET',
        url: `/v1/audit?actorKeyId=${actor.keyId}&action=create&since=${encodeURIComponent(since)}&limit=2`,
        headers: bearer(t.adminKey),
      })
    ).json()
    expect(first.items).toHaveLength(2)
    expect(first.nextCursor).toEqual(expect.any(String))
    const second = (
      await t.app.inject({
        method: 'GET',
        url: `/v1/audit?actorKeyId=${actor.keyId}&action=create&limit=2&cursor=${first.nextCursor}`,
        headers: bearer(t.adminKey),
      })
    ).json()
    expect(second.items).toHaveLength(1)
    expect(second.nextCursor).toBeNull()
    const names = [...first.items, ...second.items].map((e: any) => e.diff.changes.name.to)
    expect(names).toEqual(['k2', 'k1', 'k0'])

    const future = (
      await t.app.inject({ method: 'GET', url: `/v1/audit?since=2999-01-01T00:00:00Z`, headers: bearer(t.adminKey) })
    ).json()
    expect(future.items).toEqual([])
  })

  it('is readable through GraphQL with the same filters', async () => {
    const result = await graphql(
      t.app,
      t.adminKey,
      `query($filter: AuditFilter) { auditEvents(filter: $filter, limit: 1) { items { action resourceType diff } nextCursor } }`,
      { filter: { resourceType: 'api_key', action: 'create' } },
    )
    expect(result.body.errors).toBeUndefined()
    expect(result.body.data.auditEvents.items).toHaveLength(1)
    expect(result.body.data.auditEvents.items[0]).toMatchObject({ action: 'create', resourceType: 'api_key' })
    expect(result.body.data.auditEvents.nextCursor).toEqual(expect.any(String))
  })
})

describe('diffRecords', () => {
  it('names changed secret fields without their values', () => {
    const diff = diffRecords(
      { name: 'a', clientSecret: 'old-secret', pfxPassword: 'p1', enabled: false },
      { name: 'b', clientSecret: 'new-secret', pfxPassword: 'p1', enabled: false },
    )
    expect(diff).toEqual({ name: { from: 'a', to: 'b' }, clientSecret: { changed: true, secret: true } })
    expect(JSON.stringify(diff)).not.toMatch(/old-secret|new-secret/)
  })

  it('records a creation as values set and a deletion as values removed', () => {
    expect(diffRecords(null, { name: 'x', at: new Date('2026-01-01T00:00:00Z') })).toEqual({
      name: { to: 'x' },
      at: { to: '2026-01-01T00:00:00.000Z' },
    })
    expect(diffRecords({ name: 'x' }, null)).toEqual({ name: { from: 'x' } })
  })
})
