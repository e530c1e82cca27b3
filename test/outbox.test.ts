import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { schema } from '../src/database/index.ts'
import { newId } from '../src/lib/ids.ts'
import { Outbox } from '../src/workers/outbox.ts'
import { createTestDatabase, type TestDatabase } from './support/database.ts'

let db: TestDatabase
let connectorId: string
let routeId: string
const outbox = new Outbox()

beforeAll(async () => {
  db = await createTestDatabase()
  const integrationId = newId()
  connectorId = newId()
  routeId = newId()
  await db.database.db.insert(schema.integrations).values({
    id: integrationId,
    name: 'i',
    tenant: 'contoso.onmicrosoft.com',
    clientId: '00000000-0000-4000-8000-000000000001',
    cloud: 'global',
    authMethod: 'clientSecret',
    credentialFingerprint: 'x',
  })
  await db.database.db.insert(schema.connectors).values({ id: connectorId, integrationId, name: 'o', direction: 'outgoing', primaryAddress: 'out@contoso.com', enabled: true })
  await db.database.db.insert(schema.emailRoutes).values({ id: routeId, connectorId, direction: 'outgoing', kind: 'default', name: 'o', emailAddress: 'out@contoso.com', enabled: true })
})
afterAll(() => db.drop())

async function queue(count: number, nextAttemptAt = new Date(Date.now() - 1000)): Promise<string[]> {
  const ids = Array.from({ length: count }, () => newId())
  await db.database.db.insert(schema.outboundMessages).values(
    ids.map((id) => ({
      id,
      status: 'queued' as const,
      connectorId,
      routeId,
      fromAddress: 'out@contoso.com',
      toAddresses: ['a@example.com'],
      ccAddresses: [],
      bccAddresses: [],
      replyTo: [],
      subject: 's',
      bodyType: 'text' as const,
      body: 'b',
      headers: {},
      importance: 'normal' as const,
      totalBytes: 2,
      nextAttemptAt,
    })),
  )
  return ids
}

describe('Outbox', () => {
  it('claims due messages once, under a lease, leaving future ones', async () => {
    const due = await queue(4)
    const later = await queue(1, new Date(Date.now() + 60_000))
    const claimed = await outbox.claimDue(db.database.db, 'dispatcher-a', 10, 30_000)
    expect(claimed.map((row) => row.id).sort()).toEqual([...due].sort())
    expect(claimed.every((row) => row.status === 'sending' && row.leaseOwner === 'dispatcher-a')).toBe(true)
    expect(await outbox.claimDue(db.database.db, 'dispatcher-b', 10, 30_000)).toEqual([])
    expect(await outbox.inFlight(db.database.db, connectorId)).toBe(4)
    expect(later).toHaveLength(1)
  })

  it('three dispatchers claiming at once never get the same message', async () => {
    const ids = await queue(12)
    const batches = await Promise.all(['x', 'y', 'z'].map((owner) => outbox.claimDue(db.database.db, owner, 5, 30_000)))
    const claimed = batches.flat().map((row) => row.id)
    expect(new Set(claimed).size).toBe(claimed.length)
    const rest = await outbox.claimDue(db.database.db, 'w', 20, 30_000)
    expect(new Set([...claimed, ...rest.map((row) => row.id)])).toEqual(new Set(ids))
  })

  it('gives messages of a dispatcher that died back for recovery once the lease ran out, never requeued', async () => {
    const [id] = await queue(1)
    const soon = new Date(Date.now() + 1000)
    const claimed = await outbox.claimDue(db.database.db, 'doomed', 1, 500, soon)
    expect(claimed.map((row) => row.id)).toEqual([id])
    expect(await outbox.claimAbandoned(db.database.db, 'rescuer', 10, 30_000, soon)).toEqual([])
    const later = new Date(soon.getTime() + 600)
    const recovered = await outbox.claimAbandoned(db.database.db, 'rescuer', 10, 30_000, later)
    expect(recovered.map((row) => [row.id, row.status, row.leaseOwner])).toContainEqual([id, 'sending', 'rescuer'])
  })

  it('the send budget grants perMinute sends, then says how long to wait, and refills', async () => {
    const now = new Date('2030-01-01T00:00:00Z')
    const grants = []
    for (let i = 0; i < 31; i++) grants.push(await outbox.takeSendToken(db.database.db, connectorId, 30, now))
    expect(grants.slice(0, 30).every((wait) => wait === 0)).toBe(true)
    expect(grants[30]).toBe(2000)
    expect(await outbox.takeSendToken(db.database.db, connectorId, 30, new Date(now.getTime() + 1999))).toBeGreaterThan(0)
    expect(await outbox.takeSendToken(db.database.db, connectorId, 30, new Date(now.getTime() + 4000))).toBe(0)
  })

  it('the budget holds across concurrent takers', async () => {
    const otherConnector = newId()
    const [integration] = await db.database.db.select().from(schema.integrations).limit(1)
    await db.database.db.insert(schema.connectors).values({ id: otherConnector, integrationId: integration!.id, name: 'p', direction: 'outgoing', primaryAddress: 'other@contoso.com' })
    const now = new Date('2030-06-01T00:00:00Z')
    const waits = await Promise.all(Array.from({ length: 40 }, () => outbox.takeSendToken(db.database.db, otherConnector, 30, now)))
    expect(waits.filter((wait) => wait === 0)).toHaveLength(30)
  })
})
