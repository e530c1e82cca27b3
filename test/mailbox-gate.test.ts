import { eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { schema } from '../src/database/index.ts'
import { LocalMailboxGate } from '../src/graph/mailbox-gate.ts'
import { SharedMailboxGate } from '../src/modules/integrations/mailbox-gate.ts'
import { createMailboxSync } from '../src/modules/mailbox-sync/index.ts'
import { bearer, buildTestApp, type TestApp } from './support/app.ts'
import { FakeMicrosoft, type FakeTenant } from './support/fake-microsoft.ts'
import { extraDispatcher, mailSetup } from './support/mail.ts'

const fake = new FakeMicrosoft()
let t: TestApp
let tenant: FakeTenant
let integrationId: string
let sendOnlyIntegrationId: string
let offsetMs = 0
const clock = () => new Date(Date.now() + offsetMs)

beforeAll(async () => {
  fake.start()
  tenant = fake.addTenant()
  const entraApp = fake.registerApp(tenant, { secrets: [{ value: 'gate-secret', expiresAt: new Date(Date.now() + 86_400_000) }] })
  t = await buildTestApp({
    clock,
    dispatcher: { autostart: false, settings: { perMinute: 1_000, backoffMs: 1_000, leaseMs: 60_000 } },
    sync: { autostart: false, settings: { pageSize: 5, intervalMs: 60_000, retryMs: 1_000 } },
  })
  integrationId = await mailSetup(t).integration(tenant.id, entraApp.clientId, 'gate-secret')
  const sendOnly = fake.registerApp(tenant, { roles: ['Mail.Send'], secrets: [{ value: 'send-only', expiresAt: new Date(Date.now() + 86_400_000) }] })
  sendOnlyIntegrationId = await mailSetup(t).integration(tenant.id, sendOnly.clientId, 'send-only')
})
afterAll(async () => {
  await t.close()
  fake.stop()
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('the per-mailbox request gate, shared through the database', () => {
  it('lets at most 4 requests per mailbox run at once across instances, in any order, and other mailboxes go on', async () => {
    const instances = [new SharedMailboxGate(t.app.database.db), new SharedMailboxGate(t.app.database.db), new SharedMailboxGate(t.app.database.db)]
    let running = 0
    let most = 0
    const request = async (gate: SharedMailboxGate, mailbox: string) => {
      const release = await gate.enter(mailbox)
      running++
      most = Math.max(most, running)
      await sleep(20)
      running--
      await release()
    }
    const other = new SharedMailboxGate(t.app.database.db)
    const otherRelease = await Promise.all([1, 2, 3, 4].map(() => other.enter('Busy@Contoso.example')))
    await Promise.all(instances.flatMap((gate) => Array.from({ length: 6 }, (_, i) => request(gate, i % 2 ? 'Shared@Contoso.example' : 'shared@contoso.example'))))
    expect(most).toBe(4)
    expect(running).toBe(0)
    // The other mailbox's 4 are still held: a fifth waits and is refused when none comes free.
    const impatient = new SharedMailboxGate(t.app.database.db, { waitMs: 150 })
    await expect(impatient.enter('busy@contoso.example')).rejects.toMatchObject({ code: 'THROTTLED', retryAfterSeconds: 1 })
    await Promise.all(otherRelease.map((release) => release()))
    await (await impatient.enter('busy@contoso.example'))()
  })

  it('a slot whose holder died comes free after its hold; a pause from one instance holds off the others', async () => {
    const dead = new SharedMailboxGate(t.app.database.db, { holdMs: 5_000, clock: { now: () => clock().getTime() } })
    await Promise.all([1, 2, 3, 4].map(() => dead.enter('crashed@contoso.example'))) // never given back
    const survivor = new SharedMailboxGate(t.app.database.db, { holdMs: 5_000, waitMs: 100, clock: { now: () => clock().getTime() } })
    await expect(survivor.enter('crashed@contoso.example')).rejects.toMatchObject({ code: 'THROTTLED' })
    offsetMs += 6_000
    const release = await survivor.enter('crashed@contoso.example')
    await release()

    await dead.pause('crashed@contoso.example', new Date(clock().getTime() + 30_000))
    const paused = await survivor.enter('crashed@contoso.example').catch((error: unknown) => error)
    expect(paused).toMatchObject({ code: 'THROTTLED', message: expect.stringContaining('Retry-After') })
    expect((paused as { retryAfterSeconds: number }).retryAfterSeconds).toBeGreaterThan(25)
    offsetMs += 31_000
    await (await survivor.enter('crashed@contoso.example'))()
  })

  it('sending and syncing one mailbox from two instances never have more than 4 Graph requests in flight', async () => {
    const address = `gate-${Date.now()}@contoso.example`
    const mailbox = fake.addMailbox(tenant, address)
    fake.addMailbox(tenant, 'gate-customer@contoso.example')
    fake.addFolder(mailbox, 'Inbox/Orders')
    const setup = mailSetup(t)
    await setup.outgoing(integrationId, address)
    const incoming = await setup.admin('POST', '/v1/connectors', {
      integrationId,
      name: `${address} in`,
      direction: 'incoming',
      primaryAddress: address,
      folderPaths: ['Inbox', 'Inbox/Orders'],
      afterProcessing: 'markRead',
      fallbackRoute: { workItemType: 'ticket', processId: 'support' },
    })
    expect((await setup.admin('POST', `/v1/connectors/${incoming.body.id}/test`)).body.ok).toBe(true)
    expect((await setup.admin('POST', `/v1/connectors/${incoming.body.id}/enable`)).status).toBe(200)

    for (let i = 0; i < 24; i++) {
      await fake.deliver(mailbox, { subject: `order ${i}`, body: 'b', from: 'alice@fabrikam.example', to: [address] }, i % 2 ? { folder: 'Inbox/Orders' } : {})
    }
    const sender = await t.keyWith('mail:send')
    for (let i = 0; i < 24; i++) {
      const sent = await t.app.inject({
        method: 'POST',
        url: '/v1/messages',
        headers: bearer(sender),
        payload: { from: address, to: ['gate-customer@contoso.example'], subject: `reply ${i}`, body: { contentType: 'text', content: 'b' } },
      })
      expect(sent.statusCode).toBe(202)
    }
    fake.latencyMs = 50
    try {
      const second = { dispatcher: extraDispatcher(t, { owner: 'gate-peer', settings: { perMinute: 1_000 } }), sync: createMailboxSync(t.app, { owner: 'gate-peer-sync', settings: { pageSize: 5 } }) }
      await Promise.all([
        ...[t.app.dispatcher, second.dispatcher].map(async (dispatcher) => {
          while ((await dispatcher.runOnce()) > 0);
        }),
        // Syncing from the other instance only: this instance's sends could not hold it back otherwise.
        (async () => {
          for (let run = 0; run < 5; run++) await second.sync.runOnce()
        })(),
      ])
    } finally {
      fake.latencyMs = 0
    }
    expect(fake.maxConcurrentPerMailbox.get(address)).toBe(4)
    expect(fake.concurrencyRefusals.get(address) ?? 0).toBe(0)
    const state = await setup.admin('GET', `/v1/messages?limit=50`)
    const mine = (state.body.items as { subject: string; status: string }[]).filter((message) => message.subject.startsWith('reply '))
    expect(mine.map((message) => message.status)).toEqual(Array(24).fill('sent'))
    const orders = [...fake.folderMessages(mailbox, 'Inbox'), ...fake.folderMessages(mailbox, 'Inbox/Orders')].filter((message) => message.subject.startsWith('order '))
    expect(orders.map((message) => message.isRead)).toEqual(Array(24).fill(true))
  })

  it("Graph's Retry-After seen by the sync holds sending from that mailbox off too, until it is over", async () => {
    const address = `paused-${Date.now()}@contoso.example`
    const mailbox = fake.addMailbox(tenant, address)
    const setup = mailSetup(t)
    await setup.outgoing(integrationId, address)
    const { connectorId } = await setup.incoming(integrationId, address)
    await fake.deliver(mailbox, { subject: 'waiting', body: 'b', from: 'alice@fabrikam.example', to: [address] })
    fake.failGraphRequests({ path: /\/messages\/delta/ }, { kind: 'status', status: 429, retryAfter: 120 })
    await t.app.services.mailboxSync.syncNow(connectorId)
    await t.app.mailboxSync.runOnce()

    const sender = await t.keyWith('mail:send')
    const submitted = await t.app.inject({
      method: 'POST',
      url: '/v1/messages',
      headers: bearer(sender),
      payload: { from: address, to: ['gate-customer@contoso.example'], subject: 'held back', body: { contentType: 'text', content: 'b' } },
    })
    const before = fake.graphRequests.length
    await t.app.dispatcher.runOnce()
    expect(fake.graphRequests.slice(before).filter((request) => request.path.includes(encodeURIComponent(address)))).toEqual([])
    const held = (await setup.admin('GET', `/v1/messages/${submitted.json().id}`)).body
    expect(held).toMatchObject({ status: 'queued', attempts: 0, lastError: { code: 'THROTTLED' } })

    offsetMs += 121_000
    while ((await t.app.dispatcher.runOnce()) > 0);
    expect((await setup.admin('GET', `/v1/messages/${submitted.json().id}`)).body.status).toBe('sent')
  })

  it('a request waiting in its own process gives up after the wait, and the next waiter still gets the slot', async () => {
    const gate = new LocalMailboxGate({ waitMs: 100 })
    const held = await Promise.all([1, 2, 3, 4].map(() => gate.enter('queue@contoso.example')))
    await expect(gate.enter('queue@contoso.example')).rejects.toMatchObject({ code: 'THROTTLED', retryAfterSeconds: 1 })
    const patient = gate.enter('queue@contoso.example', 5_000)
    await held[0]!()
    await (await patient)()
    await Promise.all(held.slice(1).map((release) => release()))
  })

  it('an instance that keeps a mailbox busy leaves a waiting instance its share', async () => {
    const busy = new SharedMailboxGate(t.app.database.db, { waitMs: 5_000 })
    const waiting = new SharedMailboxGate(t.app.database.db, { waitMs: 5_000 })
    let stop = false
    let waiterGot = 0
    // Busy: 8 workers, one request after another, each 20 ms, handing slots to its own queue.
    const hog = Promise.all(
      Array.from({ length: 8 }, async () => {
        while (!stop) {
          const release = await busy.enter('hogged@contoso.example')
          await sleep(20)
          await release()
        }
      }),
    )
    await sleep(100)
    const started = Date.now()
    for (let n = 0; n < 5; n++) {
      const release = await waiting.enter('hogged@contoso.example')
      waiterGot++
      await release()
    }
    const waited = Date.now() - started
    stop = true
    await hog
    expect(waiterGot).toBe(5)
    expect(waited).toBeLessThan(4_000)
  })

  it('a send that never got a slot is not mistaken for one that may have gone (Mail.Send only: no uncertain)', async () => {
    const address = `sendonly-${Date.now()}@contoso.example`
    fake.addMailbox(tenant, address)
    await mailSetup(t).outgoing(sendOnlyIntegrationId, address)
    const sender = await t.keyWith('mail:send')
    const submitted = await t.app.inject({
      method: 'POST',
      url: '/v1/messages',
      headers: bearer(sender),
      payload: { from: address, to: ['gate-customer@contoso.example'], subject: 'no slot', body: { contentType: 'text', content: 'b' } },
    })
    // Another instance was told Retry-After for this mailbox.
    await new SharedMailboxGate(t.app.database.db, { clock: { now: () => clock().getTime() } }).pause(address, new Date(clock().getTime() + 60_000))
    const before = fake.graphRequests.length
    await t.app.dispatcher.runOnce()
    expect(fake.graphRequests.slice(before).filter((request) => request.path.includes(encodeURIComponent(address)))).toEqual([])
    const [row] = await t.app.database.db.select({ status: schema.outboundMessages.status, attempts: schema.outboundMessages.attempts, graphIds: schema.outboundMessages.graphIds }).from(schema.outboundMessages).where(eq(schema.outboundMessages.id, submitted.json().id))
    expect(row).toMatchObject({ status: 'queued', attempts: 0 })
    expect(row!.graphIds.sendRequestedAt).toBeUndefined()
    offsetMs += 61_000
    while ((await t.app.dispatcher.runOnce()) > 0);
    expect((await mailSetup(t).admin('GET', `/v1/messages/${submitted.json().id}`)).body.status).toBe('sent')
  })
})
