import { sql } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { schema } from '../src/database/index.ts'
import { newId } from '../src/lib/ids.ts'
import { Outbox } from '../src/modules/outbound/outbox.ts'
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

const routeOf = new Map<string, string>()

async function addConnector(address: string): Promise<string> {
  const id = newId()
  const [integration] = await db.database.db.select().from(schema.integrations).limit(1)
  await db.database.db.insert(schema.connectors).values({ id, integrationId: integration!.id, name: address, direction: 'outgoing', primaryAddress: address, enabled: true })
  const route = newId()
  routeOf.set(id, route)
  await db.database.db.insert(schema.emailRoutes).values({ id: route, connectorId: id, direction: 'outgoing', kind: 'default', name: address, emailAddress: address, enabled: true })
  return id
}

async function queue(count: number, nextAttemptAt = new Date(Date.now() - 1000), connector = connectorId): Promise<string[]> {
  const ids = Array.from({ length: count }, () => newId())
  await db.database.db.insert(schema.outboundMessages).values(
    ids.map((id) => ({
      id,
      status: 'queued' as const,
      connectorId: connector,
      routeId: connector === connectorId ? routeId : routeOf.get(connector)!,
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

const limits = { maxInFlight: 4, perMinute: 30, leaseMs: 30_000, max: 100 }

describe('Outbox', () => {
  it('claims due messages of a mailbox once, under a lease, at most 4 in flight, leaving future ones', async () => {
    const due = await queue(6)
    await queue(1, new Date(Date.now() + 60_000))
    const claim = await outbox.claimForConnector(db.database.db, connectorId, 'dispatcher-a', limits)
    expect(claim.messages.map((row) => row.id)).toEqual(due.slice(0, 4))
    expect(claim.messages.every((row) => row.status === 'sending' && row.leaseOwner === 'dispatcher-a')).toBe(true)
    expect(await outbox.inFlight(db.database.db, connectorId)).toBe(4)
    expect((await outbox.claimForConnector(db.database.db, connectorId, 'dispatcher-b', limits)).messages).toEqual([])
    for (const row of claim.messages) await outbox.finish(db.database.db, row.id, 'dispatcher-a', { status: 'sent', countsAsAttempt: true })
    const next = await outbox.claimForConnector(db.database.db, connectorId, 'dispatcher-b', limits)
    expect(next.messages.map((row) => row.id)).toEqual(due.slice(4))
    for (const row of next.messages) await outbox.finish(db.database.db, row.id, 'dispatcher-b', { status: 'sent', countsAsAttempt: true })
  })

  it('three dispatchers claiming at once never get the same message, and never more than 4 in flight together', async () => {
    const ids = await queue(12)
    const claims = await Promise.all(['x', 'y', 'z'].map((owner) => outbox.claimForConnector(db.database.db, connectorId, owner, { ...limits, perMinute: 1000 })))
    const claimed = claims.flatMap((claim) => claim.messages.map((row) => row.id))
    expect(new Set(claimed).size).toBe(claimed.length)
    expect(claimed.length).toBeLessThanOrEqual(4)
    expect(await outbox.inFlight(db.database.db, connectorId)).toBe(claimed.length)
    await db.database.db.update(schema.outboundMessages).set({ status: 'cancelled' }).where(sql`${schema.outboundMessages.id} in ${ids}`)
  })

  it('gives messages of a dispatcher that died back for recovery once the lease ran out, never requeued', async () => {
    const [id] = await queue(1)
    const soon = new Date(Date.now() + 1000)
    const claimed = await outbox.claimForConnector(db.database.db, connectorId, 'doomed', { ...limits, leaseMs: 500, perMinute: 1000 }, soon)
    expect(claimed.messages.map((row) => row.id)).toEqual([id])
    expect(await outbox.claimAbandoned(db.database.db, 'rescuer', 10, 30_000, soon)).toEqual([])
    const later = new Date(soon.getTime() + 600)
    const recovered = await outbox.claimAbandoned(db.database.db, 'rescuer', 10, 30_000, later)
    expect(recovered.map((row) => [row.id, row.status, row.leaseOwner])).toContainEqual([id, 'sending', 'rescuer'])
    expect(await outbox.recordProgress(db.database.db, id!, 'doomed', { draftId: 'x' }, 30_000, later)).toBe(false)
    expect(await outbox.finish(db.database.db, id!, 'doomed', { status: 'sent', countsAsAttempt: true }, later)).toBeUndefined()
    expect(await outbox.finish(db.database.db, id!, 'rescuer', { status: 'sent', countsAsAttempt: true }, later)).toMatchObject({ status: 'sent' })
  })

  it('the send budget grants perMinute sends, then says how long to wait, and refills', async () => {
    const otherConnector = await addConnector('budget@contoso.com')
    await queue(40, new Date('2029-12-31T00:00:00Z'), otherConnector)
    const now = new Date('2030-01-01T00:00:00Z')
    const wide = { ...limits, maxInFlight: 100 }
    const first = await outbox.claimForConnector(db.database.db, otherConnector, 'a', wide, now)
    expect(first.messages).toHaveLength(30)
    const empty = await outbox.claimForConnector(db.database.db, otherConnector, 'a', wide, now)
    expect(empty).toEqual({ messages: [], retryInMs: 2000 })
    expect((await outbox.claimForConnector(db.database.db, otherConnector, 'a', wide, new Date(now.getTime() + 1999))).messages).toHaveLength(0)
    expect((await outbox.claimForConnector(db.database.db, otherConnector, 'a', wide, new Date(now.getTime() + 4000))).messages).toHaveLength(2)
  })

  it('the budget and the in-flight limit hold across concurrent claimers', async () => {
    const otherConnector = await addConnector('race@contoso.com')
    await queue(40, new Date('2030-05-31T00:00:00Z'), otherConnector)
    const now = new Date('2030-06-01T00:00:00Z')
    const claims = await Promise.all(
      Array.from({ length: 8 }, (_, i) => outbox.claimForConnector(db.database.db, otherConnector, `c${i}`, { ...limits, maxInFlight: 100, perMinute: 10 }, now)),
    )
    const claimed = claims.flatMap((claim) => claim.messages.map((row) => row.id))
    expect(new Set(claimed).size).toBe(claimed.length)
    expect(claimed.length).toBeLessThanOrEqual(10)
  })

  it('a paused mailbox gives nothing until the pause ends, for every claimer', async () => {
    const otherConnector = await addConnector('paused@contoso.com')
    const now = new Date('2031-01-01T00:00:00Z')
    await queue(2, new Date(now.getTime() - 1000), otherConnector)
    await outbox.claimForConnector(db.database.db, otherConnector, 'a', { ...limits, max: 0 }, now)
    await outbox.pauseMailbox(db.database.db, otherConnector, new Date(now.getTime() + 30_000))
    expect(await outbox.claimForConnector(db.database.db, otherConnector, 'b', limits, now)).toEqual({ messages: [], retryInMs: 30_000 })
    expect((await outbox.claimForConnector(db.database.db, otherConnector, 'b', limits, new Date(now.getTime() + 30_000))).messages).toHaveLength(2)
  })
})
