import { randomUUID } from 'node:crypto'
import { eq } from 'drizzle-orm'
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { schema } from '../src/database/index.ts'
import { bearer, buildTestApp, type TestApp } from './support/app.ts'
import { FakeMicrosoft, type FakeTenant } from './support/fake-microsoft.ts'
import { externalTestUrl } from './support/database.ts'
import { mailSetup } from './support/mail.ts'
import { routeNotificationsToApp } from './support/notifications.ts'

if (!externalTestUrl) {
  console.warn('[graph-notifications.test.ts] SKIPPED: the slow-database test needs a real PostgreSQL server (TEST_DATABASE_URL); `bash .ci/run` starts one.')
}

const fake = new FakeMicrosoft()
const BASE = 'https://mailgate.contoso.example'
let t: TestApp
let tenant: FakeTenant
let integrationId: string

beforeAll(async () => {
  fake.start()
  tenant = fake.addTenant()
  const entraApp = fake.registerApp(tenant, { secrets: [{ value: 'notify-secret', expiresAt: new Date(Date.now() + 86_400_000) }] })
  t = await buildTestApp({ sync: { autostart: false, publicBaseUrl: BASE, settings: { intervalMs: 60_000 } } })
  routeNotificationsToApp(fake, () => t.app, BASE)
  integrationId = await mailSetup(t).integration(tenant.id, entraApp.clientId, 'notify-secret')
})
afterAll(async () => {
  await t.close()
  fake.stop()
})

async function admin(method: 'GET' | 'POST', url: string, payload?: unknown) {
  const response = await t.app.inject({ method, url, headers: bearer(t.adminKey), payload: payload as object })
  return { status: response.statusCode, body: response.json() }
}

async function enabledConnector() {
  const address = `notify-${randomUUID().slice(0, 8)}@contoso.example`
  const mailbox = fake.addMailbox(tenant, address)
  const created = await admin('POST', '/v1/connectors', { integrationId, name: address, direction: 'incoming', primaryAddress: address, fallbackRoute: { workItemType: 'ticket', processId: 'support' } })
  const connectorId = created.body.id as string
  expect((await admin('POST', `/v1/connectors/${connectorId}/test`)).body.ok).toBe(true)
  expect((await admin('POST', `/v1/connectors/${connectorId}/enable`, {})).status).toBe(200)
  return { connectorId, mailbox, address }
}

async function syncUntilQuiet() {
  for (let run = 0; run < 10; run++) if ((await t.app.mailboxSync.runOnce()) === 0) return
}

const pending = async (connectorId: string) => ((await admin('GET', `/v1/connectors/${connectorId}/sync`)).body.folders[0].pending as boolean)
const emailCount = async (connectorId: string) => (await t.app.database.db.select({ id: schema.inboundEmails.id }).from(schema.inboundEmails).where(eq(schema.inboundEmails.connectorId, connectorId))).length

describe('Graph change notifications', () => {
  it('answers the validation handshake with the token as text/plain, without an API key', async () => {
    const response = await t.app.inject({ method: 'POST', url: '/v1/graph/notifications?validationToken=Validation%3A%20Testing%20client%20application%20reachability', headers: { 'content-type': 'text/plain' } })
    expect(response.statusCode).toBe(200)
    expect(response.headers['content-type']).toMatch(/^text\/plain/)
    expect(response.body).toBe('Validation: Testing client application reachability')
    // Whatever the content type and body: an empty JSON body, or no content type at all.
    for (const headers of [{ 'content-type': 'application/json' }, {}]) {
      for (const path of ['notifications', 'lifecycle']) {
        const answer = await t.app.inject({ method: 'POST', url: `/v1/graph/${path}?validationToken=abc%2Bdef`, headers, payload: '' })
        expect([answer.statusCode, answer.body]).toEqual([200, 'abc+def'])
      }
    }
    // A repeated or over-long token is refused, naming it.
    const repeated = await t.app.inject({ method: 'POST', url: '/v1/graph/notifications?validationToken=a&validationToken=b', headers: { 'content-type': 'text/plain' } })
    expect(repeated.statusCode).toBe(400)
    expect(JSON.stringify(repeated.json())).toContain('validationToken')
    const long = await t.app.inject({ method: 'POST', url: `/v1/graph/notifications?validationToken=${'a'.repeat(4097)}`, headers: { 'content-type': 'text/plain' } })
    expect(long.statusCode).toBe(400)
  })

  it('a synced folder gets a subscription; new mail notifies, wakes the folder and is taken in', async () => {
    const { connectorId, mailbox, address } = await enabledConnector()
    await syncUntilQuiet()
    const [subscription] = fake.subscriptions(mailbox)
    expect(subscription).toBeDefined()
    expect(subscription!.notificationUrl).toBe(`${BASE}/v1/graph/notifications`)
    expect(subscription!.lifecycleNotificationUrl).toBe(`${BASE}/v1/graph/lifecycle`)
    expect(subscription!.clientState!.length).toBeGreaterThanOrEqual(32)
    // The clientState is stored sealed, never as given.
    const [row] = await t.app.database.db.select().from(schema.graphSubscriptions).where(eq(schema.graphSubscriptions.connectorId, connectorId))
    expect(row!.clientStateSealed).not.toContain(subscription!.clientState)
    expect(await pending(connectorId)).toBe(false)
    // The sync state shows when the subscription runs out, as Graph granted it.
    const [folder] = (await admin('GET', `/v1/connectors/${connectorId}/sync`)).body.folders
    expect(folder.subscriptionExpiresAt).toBe(new Date(subscription!.expirationDateTime).toISOString())

    await fake.deliver(mailbox, { subject: 'notified', body: 'Hello', to: [address] })
    await fake.flushNotifications()
    expect(fake.notificationDeliveries.at(-1)).toMatchObject({ status: 202 })
    expect(await pending(connectorId)).toBe(true)
    await syncUntilQuiet()
    expect(await emailCount(connectorId)).toBe(1)
  })

  it('with the loop running, mail notified while its folder is being synced is taken at once: the holder starts the next turn', async () => {
    const { connectorId, mailbox, address } = await enabledConnector()
    await syncUntilQuiet()
    t.app.mailboxSync.start()
    try {
      // A turn whose after-processing (markRead of the first mail) takes 600 ms, after its
      // delta page was read; a second mail arrives, and is notified, meanwhile.
      fake.failGraphRequests({ method: 'PATCH', path: new RegExp(address.split('@')[0]!) }, { kind: 'delay', ms: 600 })
      await fake.deliver(mailbox, { subject: 'first', body: 'Hello', to: [address] })
      await fake.flushNotifications()
      const started = Date.now()
      while ((await emailCount(connectorId)) === 0 && Date.now() - started < 10_000) await new Promise((resolve) => setTimeout(resolve, 20))
      await fake.deliver(mailbox, { subject: 'notified mid-turn', body: 'Hello', to: [address] })
      await fake.flushNotifications()
      expect(fake.notificationDeliveries.at(-1)).toMatchObject({ status: 202 })
      while ((await emailCount(connectorId)) < 2 && Date.now() - started < 10_000) await new Promise((resolve) => setTimeout(resolve, 50))
      // Not at the next poll (SYNC_INTERVAL is 60 s here).
      expect(await emailCount(connectorId)).toBe(2)
    } finally {
      await t.app.mailboxSync.stop()
    }
  })

  it('a notification with a wrong clientState or an unknown subscription changes nothing and is counted', async () => {
    const { connectorId, mailbox } = await enabledConnector()
    await syncUntilQuiet()
    const [subscription] = fake.subscriptions(mailbox)
    const forged = await fake.postNotification(`${BASE}/v1/graph/notifications`, {
      value: [
        { subscriptionId: subscription!.id, clientState: 'x'.repeat(43), changeType: 'created', resource: 'Users/x/Messages/y' },
        { subscriptionId: randomUUID(), clientState: subscription!.clientState, changeType: 'created', resource: 'Users/x/Messages/y' },
      ],
    })
    expect(forged.status).toBe(202)
    // Graph's null clientState (a subscription made without one) is not ours: dropped, not refused.
    const stateless = await fake.postNotification(`${BASE}/v1/graph/notifications`, { value: [{ subscriptionId: subscription!.id, clientState: null, changeType: 'created' }] })
    expect(stateless.status).toBe(202)
    expect(await pending(connectorId)).toBe(false)
    const hostile = await t.app.inject({ method: 'POST', url: '/v1/graph/notifications', headers: { 'content-type': 'application/json' }, payload: { value: 'not a list' } })
    expect(hostile.statusCode).toBe(400)
    expect(hostile.json()).toMatchObject({ code: 'VALIDATION_FAILED', errors: [{ field: 'body.value' }] })
    // A NUL in an id never reaches the database (PostgreSQL refuses it in text); it is named, not logged as our failure.
    const nul = await t.app.inject({
      method: 'POST',
      url: '/v1/graph/lifecycle',
      headers: { 'content-type': 'application/json' },
      payload: { value: [{ subscriptionId: `${subscription!.id}\u0000`, clientState: subscription!.clientState, lifecycleEvent: 'missed' }] },
    })
    expect(nul.statusCode).toBe(400)
    expect(nul.json().errors[0].field).toBe('body.value.0.subscriptionId')
    expect(await pending(connectorId)).toBe(false)
    const metrics = await t.app.inject({ method: 'GET', url: '/metrics', headers: bearer(t.adminKey) })
    expect(metrics.body).toMatch(/mailgate_graph_notifications_total\{kind="change",result="rejected"\} [4-9]/)
  })

  it('lifecycle: missed wakes the folder, reauthorizationRequired renews, subscriptionRemoved recreates', async () => {
    const { connectorId, mailbox } = await enabledConnector()
    await syncUntilQuiet()
    const [first] = fake.subscriptions(mailbox)
    expect((await fake.sendLifecycleEvent(first!.id, 'missed')).status).toBe(202)
    expect(await pending(connectorId)).toBe(true)
    await syncUntilQuiet()

    const before = first!.expirationDateTime
    await new Promise((resolve) => setTimeout(resolve, 20))
    await fake.sendLifecycleEvent(first!.id, 'reauthorizationRequired')
    await t.app.services.mailboxSync.syncNow(connectorId)
    await syncUntilQuiet()
    const [renewed] = fake.subscriptions(mailbox)
    expect(renewed!.id).toBe(first!.id)
    expect(new Date(renewed!.expirationDateTime).getTime()).toBeGreaterThan(new Date(before).getTime())

    await fake.sendLifecycleEvent(first!.id, 'subscriptionRemoved')
    await syncUntilQuiet()
    const [recreated] = fake.subscriptions(mailbox)
    expect(recreated).toBeDefined()
    expect(recreated!.id).not.toBe(first!.id)
  })

  it('a flood of notifications makes one sync of the folder', async () => {
    const { connectorId, mailbox } = await enabledConnector()
    await syncUntilQuiet()
    const [subscription] = fake.subscriptions(mailbox)
    const item = { subscriptionId: subscription!.id, clientState: subscription!.clientState, changeType: 'created', resource: 'Users/x/Messages/y' }
    const started = performance.now()
    const answers = await Promise.all(Array.from({ length: 200 }, () => fake.postNotification(`${BASE}/v1/graph/notifications`, { value: Array.from({ length: 5 }, () => item) })))
    expect(answers.every((answer) => answer.status === 202)).toBe(true)
    expect(performance.now() - started).toBeLessThan(30_000)
    expect(await t.app.mailboxSync.runOnce()).toBe(1)
    expect(await t.app.mailboxSync.runOnce()).toBe(0)
    expect(await pending(connectorId)).toBe(false)
  })

  it.skipIf(!externalTestUrl)('answers 202 within 3 s while the database is slow, and wakes the folder once it answers', async () => {
    const { connectorId, mailbox } = await enabledConnector()
    await syncUntilQuiet()
    const [subscription] = fake.subscriptions(mailbox)
    // Another session holds the subscriptions table: the receiver's lookup waits for it.
    const other = postgres(t.db.url!, { max: 1, onnotice: () => {} })
    let release!: () => void
    const released = new Promise<void>((resolve) => (release = resolve))
    let locked!: () => void
    const isLocked = new Promise<void>((resolve) => (locked = resolve))
    const holder = other.begin(async (tx) => {
      await tx`lock table graph_subscriptions in access exclusive mode`
      locked()
      await released
    })
    try {
      await isLocked
      const started = performance.now()
      const answer = await fake.postNotification(`${BASE}/v1/graph/notifications`, { value: [{ subscriptionId: subscription!.id, clientState: subscription!.clientState, changeType: 'created', resource: 'Users/x/Messages/y' }] })
      expect(answer.status).toBe(202)
      expect(performance.now() - started).toBeLessThan(3_000)
      // Read without the sync state's API, which shows the subscription and so waits for the lock too.
      const [folder] = await t.app.database.db
        .select({ dueAt: schema.mailboxFolderSyncs.dueAt })
        .from(schema.mailboxFolderSyncs)
        .where(eq(schema.mailboxFolderSyncs.connectorId, connectorId))
      expect(folder!.dueAt.getTime()).toBeGreaterThan(Date.now())
    } finally {
      release()
      await holder
      await other.end()
    }
    let woken = false
    for (let tries = 0; tries < 50 && !woken; tries++) {
      woken = await pending(connectorId)
      if (!woken) await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(woken).toBe(true)
  })

  it('a disabled connector loses its subscriptions at Graph', async () => {
    const { connectorId, mailbox } = await enabledConnector()
    await syncUntilQuiet()
    expect(fake.subscriptions(mailbox)).toHaveLength(1)
    expect((await admin('POST', `/v1/connectors/${connectorId}/disable`, {})).status).toBe(200)
    await t.app.mailboxSync.runOnce()
    expect(fake.subscriptions(mailbox)).toHaveLength(0)
    expect(await t.app.database.db.select().from(schema.graphSubscriptions).where(eq(schema.graphSubscriptions.connectorId, connectorId))).toHaveLength(0)
  })
})
