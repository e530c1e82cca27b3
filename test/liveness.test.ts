import { eq, sql } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { schema } from '../src/database/index.ts'
import { newId } from '../src/lib/ids.ts'
import { DEAD_AFTER_MS } from '../src/workers/liveness.ts'
import { buildTestApp, type TestApp } from './support/app.ts'
import { createTestDatabase, type TestDatabase } from './support/database.ts'

// Two instances on one database, each with its own clock, as two processes would be.
let db: TestDatabase
let a: TestApp
let b: TestApp
let now = Date.now()
const clock = () => new Date(now)

beforeAll(async () => {
  db = await createTestDatabase()
  a = await buildTestApp({ database: db, instanceId: 'instance-a', clock })
  b = await buildTestApp({ database: db, instanceId: 'instance-b', clock })
})
afterAll(async () => {
  await b.app.close()
  await a.app.close()
  await db.drop()
})

async function holdings(instance: string) {
  const executor = db.database.db
  const prefix = `${instance}/%`
  const messages = await executor.select({ until: schema.outboundMessages.leaseExpiresAt }).from(schema.outboundMessages).where(sql`${schema.outboundMessages.leaseOwner} like ${prefix}`)
  const slots = await executor.select({ holder: schema.mailboxRequestSlots.holder }).from(schema.mailboxRequestSlots).where(sql`${schema.mailboxRequestSlots.holder} like ${prefix}`)
  return { leasedUntil: messages.map((row) => row.until!.getTime()), slots: slots.length }
}

/** A send and a Graph request slot held by `instance`, as a process mid-send holds them. */
async function holdWork(instance: string): Promise<void> {
  const executor = db.database.db
  const [integration] = await executor.select({ id: schema.integrations.id }).from(schema.integrations).limit(1)
  const integrationId = integration?.id ?? newId()
  if (!integration) {
    await executor.insert(schema.integrations).values({ id: integrationId, name: 'i', tenant: 'contoso.onmicrosoft.com', clientId: '00000000-0000-4000-8000-000000000001', cloud: 'global', authMethod: 'clientSecret', credentialFingerprint: 'x' })
  }
  const connectorId = newId()
  const routeId = newId()
  const address = `${instance}@contoso.com`
  await executor.insert(schema.connectors).values({ id: connectorId, integrationId, name: address, direction: 'outgoing', primaryAddress: address, enabled: true })
  await executor.insert(schema.emailRoutes).values({ id: routeId, connectorId, direction: 'outgoing', kind: 'default', name: address, emailAddress: address, enabled: true })
  await executor.insert(schema.outboundMessages).values({
    id: newId(), status: 'sending', connectorId, routeId, fromAddress: address, toAddresses: ['a@example.com'], ccAddresses: [], bccAddresses: [], replyTo: [],
    subject: 's', bodyType: 'text', body: 'b', headers: {}, importance: 'normal', totalBytes: 2, nextAttemptAt: new Date(now),
    leaseOwner: `${instance}/dispatcher`, leaseExpiresAt: new Date(now + 120_000),
  })
  await executor.insert(schema.mailboxRequestSlots).values({ mailbox: address, slot: 0, holder: `${instance}/${newId()}`, heldUntil: new Date(now + 60_000) })
}

describe('instance liveness', () => {
  it('frees what an instance held once it stops beating for 30 s (kill -9), not when each lease runs out; a live instance keeps its own', async () => {
    await a.app.liveness.round()
    await b.app.liveness.round()
    await holdWork('instance-a')
    await holdWork('instance-b')

    // A falls silent. Within 30 s it is still taken for alive.
    now += DEAD_AFTER_MS - 1_000
    await b.app.liveness.round()
    expect((await holdings('instance-a')).slots).toBe(1)
    expect((await holdings('instance-a')).leasedUntil[0]).toBeGreaterThan(now)

    now += 2_000
    await b.app.liveness.round()
    const freed = await holdings('instance-a')
    expect(freed.slots).toBe(0)
    expect(freed.leasedUntil).toEqual([0])
    // B's own lease and slot are untouched, and A is forgotten.
    const kept = await holdings('instance-b')
    expect(kept.slots).toBe(1)
    expect(kept.leasedUntil[0]).toBeGreaterThan(now)
    const instances = await db.database.db.select({ id: schema.serverInstances.id }).from(schema.serverInstances)
    expect(instances.map((row) => row.id)).toEqual(['instance-b'])
    expect(b.logs.join('')).toContain('instances stopped beating')

    // The freed send is taken over by recovery: the outbox sees its lease as ended.
    const abandoned = await db.database.db
      .select({ id: schema.outboundMessages.id })
      .from(schema.outboundMessages)
      .where(sql`${schema.outboundMessages.status} = 'sending' and ${schema.outboundMessages.leaseExpiresAt} <= ${new Date(now).toISOString()}::timestamptz`)
    expect(abandoned).toHaveLength(1)
  })

  it('an instance that stops gracefully is freed by the next round of another, without the 30 s wait', async () => {
    const c = await buildTestApp({ database: db, instanceId: 'instance-c', clock })
    await c.app.liveness.round()
    await holdWork('instance-c')
    await c.app.close()
    await b.app.liveness.round()
    expect((await holdings('instance-c')).slots).toBe(0)
    const left = await db.database.db.select({ id: schema.serverInstances.id }).from(schema.serverInstances).where(eq(schema.serverInstances.id, 'instance-c'))
    expect(left).toEqual([])
  })
})
