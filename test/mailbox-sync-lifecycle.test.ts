import { randomUUID } from 'node:crypto'
import { eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { schema } from '../src/database/index.ts'
import { createMailboxSync } from '../src/modules/mailbox-sync/index.ts'
import { bearer, buildTestApp, graphql, type TestApp } from './support/app.ts'
import { FakeMicrosoft, type FakeStoredMessage, type FakeTenant, type GraphFault } from './support/fake-microsoft.ts'
import { mailSetup } from './support/mail.ts'
import { routeNotificationsToApp } from './support/notifications.ts'

const fake = new FakeMicrosoft()
const BASE = 'https://mailgate.contoso.example'
const HOUR = 3_600_000
const settings = { pageSize: 5, intervalMs: 60_000, retryMs: 60_000, leaseMs: 30_000 }
let t: TestApp
let tenant: FakeTenant
let integrationId: string
/** The sync's clock runs this far ahead of the real one (the renewal tests move it on). */
let clockOffsetMs = 0
/** While set, Graph's change notifications are lost on the way: the app never sees them. */
let dropChangeNotifications = false

beforeAll(async () => {
  fake.start()
  tenant = fake.addTenant()
  const entraApp = fake.registerApp(tenant, { secrets: [{ value: 'lifecycle-secret', expiresAt: new Date(Date.now() + 86_400_000) }] })
  t = await buildTestApp({
    connectorFailureThreshold: 2,
    sync: { autostart: false, publicBaseUrl: BASE, settings, clock: () => new Date(Date.now() + clockOffsetMs) },
  })
  routeNotificationsToApp(fake, () => t.app, BASE, (url) => dropChangeNotifications && url.pathname === '/v1/graph/notifications' && !url.search)
  integrationId = await mailSetup(t).integration(tenant.id, entraApp.clientId, 'lifecycle-secret')
})
afterAll(async () => {
  await t.close()
  fake.stop()
})

async function admin(method: 'GET' | 'POST' | 'DELETE', url: string, payload?: unknown) {
  const response = await t.app.inject({ method, url, headers: bearer(t.adminKey), payload: payload as object })
  return { status: response.statusCode, body: response.body ? response.json() : undefined }
}

/** A mailbox in the fake and an enabled incoming connector on its Inbox. */
async function connectorFor(options: { afterProcessing?: string } = {}) {
  const address = `life-${randomUUID().slice(0, 8)}@contoso.example`
  const mailbox = fake.addMailbox(tenant, address)
  const created = await admin('POST', '/v1/connectors', {
    integrationId,
    name: address,
    direction: 'incoming',
    primaryAddress: address,
    folderPaths: ['Inbox'],
    ...(options.afterProcessing ? { afterProcessing: options.afterProcessing } : {}),
    fallbackRoute: { workItemType: 'ticket', processId: 'support' },
  })
  expect(created.status, JSON.stringify(created.body)).toBe(201)
  const connectorId = created.body.id as string
  expect((await admin('POST', `/v1/connectors/${connectorId}/test`)).body.ok).toBe(true)
  expect((await admin('POST', `/v1/connectors/${connectorId}/enable`, {})).status).toBe(200)
  return { connectorId, mailbox, local: address.split('@')[0]! }
}

async function emailsOf(connectorId: string) {
  return t.app.database.db
    .select({ subject: schema.inboundEmails.subject, outcome: schema.inboundEmails.outcome, graphMessageId: schema.inboundEmails.graphMessageId, afterAction: schema.inboundEmails.afterAction })
    .from(schema.inboundEmails)
    .where(eq(schema.inboundEmails.connectorId, connectorId))
    .orderBy(schema.inboundEmails.id)
}

async function emailOf(connectorId: string, message: FakeStoredMessage) {
  return (await emailsOf(connectorId)).find((email) => email.graphMessageId === message.immutableId)
}

async function folderState(connectorId: string) {
  return (await admin('GET', `/v1/connectors/${connectorId}/sync`)).body.folders[0] as { pending: boolean; hasDeltaLink: boolean; lastError: { code: string } | null; lastSyncedAt: string; subscriptionExpiresAt: string | null }
}

async function syncUntilQuiet() {
  for (let run = 0; run < 10; run++) if ((await t.app.mailboxSync.runOnce()) === 0) return
}

/** Asks for a sync of the connector now and runs it. */
async function nextTurn(connectorId: string) {
  await t.app.services.mailboxSync.syncNow(connectorId)
  await syncUntilQuiet()
}

/** Delivers mail whose change notification Graph never gets through. */
async function deliverUnnoticed(mailbox: Parameters<FakeMicrosoft['deliver']>[0], subject: string) {
  dropChangeNotifications = true
  try {
    const message = await fake.deliver(mailbox, mail(subject))
    await fake.flushNotifications()
    return message
  } finally {
    dropChangeNotifications = false
  }
}

const mail = (subject: string) => ({ subject, body: `Hello, ${subject}.`, from: 'Alice Customer <alice@fabrikam.example>' })
/** The URL path of a request about this message (immutable ids end in '=', encoded in the path). */
const messagePath = (message: FakeStoredMessage) => new RegExp(`/messages/${message.immutableId.replace(/=+$/, '')}`)
const requestsFor = (method: string, path: RegExp) => fake.graphRequests.filter((request) => request.method === method && path.test(request.path))
const unavailable: GraphFault = { kind: 'status', status: 503 }

describe('subscriptions and lifecycle notifications', () => {
  it('deleting a connector deletes its subscription at Graph', async () => {
    const { connectorId, mailbox } = await connectorFor()
    await syncUntilQuiet()
    const [subscription] = fake.subscriptions(mailbox)
    expect(subscription).toBeDefined()
    expect((await admin('DELETE', `/v1/connectors/${connectorId}`)).status).toBe(204)
    await t.app.mailboxSync.runOnce()
    expect(fake.subscriptions(mailbox)).toHaveLength(0)
    expect(requestsFor('DELETE', new RegExp(`/subscriptions/${subscription!.id}$`)).map((request) => request.status)).toEqual([204])
    expect(await t.app.database.db.select().from(schema.graphSubscriptions).where(eq(schema.graphSubscriptions.connectorId, connectorId))).toHaveLength(0)
  })

  it('a missed notification makes the sync take in the mail that arrived without one', async () => {
    const { connectorId, mailbox } = await connectorFor()
    await syncUntilQuiet()
    const [subscription] = fake.subscriptions(mailbox)
    const message = await deliverUnnoticed(mailbox, 'arrived unnoticed')
    expect(fake.notificationDeliveries.filter((delivery) => delivery.subscriptionId === subscription!.id)).toHaveLength(1)
    expect((await folderState(connectorId)).pending).toBe(false)
    expect(await emailsOf(connectorId)).toHaveLength(0)
    expect((await fake.sendLifecycleEvent(subscription!.id, 'missed')).status).toBe(202)
    expect((await folderState(connectorId)).pending).toBe(true)
    await syncUntilQuiet()
    expect(await emailsOf(connectorId)).toMatchObject([{ subject: 'arrived unnoticed', outcome: 'requested', graphMessageId: message.immutableId }])
  })
})

describe('after-processing', () => {
  it('a markRead that fails once is pending with its error, and done on the next turn', async () => {
    const { connectorId, mailbox } = await connectorFor({ afterProcessing: 'markRead' })
    const message = await fake.deliver(mailbox, mail('read me later'))
    fake.failGraphRequests({ method: 'PATCH', path: messagePath(message) }, unavailable)
    await syncUntilQuiet()
    expect((await emailOf(connectorId, message))!.afterAction).toMatchObject({ action: 'markRead', state: 'pending', attempts: 1, lastError: expect.stringContaining('GRAPH_UNAVAILABLE') })
    expect(fake.findMessage(message.immutableId)!.isRead).toBe(false)
    await nextTurn(connectorId)
    expect((await emailOf(connectorId, message))!.afterAction).toMatchObject({ state: 'done', attempts: 2, lastError: null })
    expect(fake.findMessage(message.immutableId)!.isRead).toBe(true)
  })

  it('an action failing every time is given up after 5 attempts; the other messages are processed meanwhile', async () => {
    const { connectorId, mailbox } = await connectorFor({ afterProcessing: 'markRead' })
    const stuck = await fake.deliver(mailbox, mail('always refused'))
    const fine = await fake.deliver(mailbox, mail('fine'))
    fake.failGraphRequests({ method: 'PATCH', path: messagePath(stuck) }, ...Array<GraphFault>(10).fill(unavailable))
    await syncUntilQuiet()
    expect((await emailOf(connectorId, fine))!.afterAction).toMatchObject({ state: 'done', attempts: 1 })
    await nextTurn(connectorId)
    const later = await fake.deliver(mailbox, mail('came later'))
    for (let turn = 0; turn < 5; turn++) await nextTurn(connectorId)
    expect((await emailOf(connectorId, stuck))!.afterAction).toMatchObject({ state: 'failed', attempts: 5, lastError: expect.stringContaining('GRAPH_UNAVAILABLE') })
    expect(requestsFor('PATCH', messagePath(stuck))).toHaveLength(5)
    expect((await emailOf(connectorId, later))!.afterAction).toMatchObject({ state: 'done', attempts: 1 })
    expect([stuck, fine, later].map((message) => fake.findMessage(message.immutableId)!.isRead)).toEqual([false, true, true])
    fake.clearFaults()
  })

  it('delete deletes the message at Graph; one already gone (404) counts as done', async () => {
    const { connectorId, mailbox } = await connectorFor({ afterProcessing: 'delete' })
    const plain = await fake.deliver(mailbox, mail('delete me'))
    const lost = await fake.deliver(mailbox, mail('deleted, answer lost'))
    // Graph deletes it, but its answer never arrives: the attempt looks failed.
    fake.failGraphRequests({ method: 'DELETE', path: messagePath(lost) }, { kind: 'lost-response', status: 504 })
    await syncUntilQuiet()
    expect((await emailOf(connectorId, plain))!.afterAction).toMatchObject({ action: 'delete', state: 'done', attempts: 1 })
    expect((await emailOf(connectorId, lost))!.afterAction).toMatchObject({ state: 'pending', attempts: 1 })
    expect([fake.findMessage(plain.immutableId), fake.findMessage(lost.immutableId)]).toEqual([undefined, undefined])
    await nextTurn(connectorId)
    expect((await emailOf(connectorId, lost))!.afterAction).toMatchObject({ state: 'done', attempts: 2, lastError: null })
    expect(requestsFor('DELETE', messagePath(lost)).map((request) => request.status)).toEqual([504, 404])
  })

  it('markRead of a message someone deleted meanwhile (404) fails at once, without retries', async () => {
    const { connectorId, mailbox } = await connectorFor({ afterProcessing: 'markRead' })
    const message = await fake.deliver(mailbox, mail('deleted by a colleague'))
    const [folder] = await t.app.database.db.select({ id: schema.mailboxFolderSyncs.id }).from(schema.mailboxFolderSyncs).where(eq(schema.mailboxFolderSyncs.connectorId, connectorId))
    // Someone deletes it in Outlook right after the sync took it in, before its action.
    const sync = createMailboxSync(t.app, {
      owner: `deleter-${randomUUID()}`,
      settings,
      onStep: (step, id) => {
        const stored = fake.findMessage(message.immutableId)
        if (step === 'message-taken' && id === folder!.id && stored) fake.deleteMessage(stored)
      },
    })
    await sync.runOnce()
    expect((await emailOf(connectorId, message))!.afterAction).toMatchObject({ state: 'failed', attempts: 1, lastError: expect.stringMatching(/not found/i) })
    await nextTurn(connectorId)
    expect((await emailOf(connectorId, message))!.afterAction).toMatchObject({ state: 'failed', attempts: 1 })
    expect(requestsFor('PATCH', messagePath(message)).map((request) => request.status)).toEqual([404])
  })
})

describe('failures', () => {
  for (const [status, code, graphCode, message] of [
    [401, 'AUTHENTICATION_FAILED', 'InvalidAuthenticationToken', 'Access token has expired or is not yet valid.'],
    [403, 'PERMISSION_MISSING', 'ErrorAccessDenied', 'Access is denied. Check credentials and try again.'],
  ] as const) {
    it(`a mailbox answering ${status} twice in a row disables the connector with ${code}`, async () => {
      const { connectorId, local } = await connectorFor()
      const refused: GraphFault = { kind: 'status', status, code: graphCode, message }
      fake.failGraphRequests({ path: new RegExp(`${local}.*/messages/delta`) }, refused, refused)
      await nextTurn(connectorId)
      expect(await folderState(connectorId)).toMatchObject({ lastError: { code } })
      expect((await admin('GET', `/v1/connectors/${connectorId}`)).body.enabled).toBe(true)
      await nextTurn(connectorId)
      const connector = (await admin('GET', `/v1/connectors/${connectorId}`)).body
      expect(connector.enabled).toBe(false)
      expect(connector.disabledReason).toContain(code)
      expect(fake.pendingFaults().graph).toBe(0)
    })
  }

  it('a 410 resyncRequired reads the folder again from the start without doubling anything', async () => {
    const { connectorId, mailbox, local } = await connectorFor()
    for (let n = 0; n < 7; n++) await fake.deliver(mailbox, mail(`before resync ${n}`))
    await syncUntilQuiet()
    expect(await emailsOf(connectorId)).toHaveLength(7)
    const delta = new RegExp(`${local}.*/messages/delta`)
    fake.failGraphRequests({ method: 'GET', path: delta }, { kind: 'status', status: 410, code: 'resyncRequired', message: 'Resync required. Replace any local cached data with a full delta sync.' })
    await deliverUnnoticed(mailbox, 'after resync')
    await nextTurn(connectorId)
    const emails = await emailsOf(connectorId)
    expect(emails).toHaveLength(8)
    expect(emails.every((email) => email.outcome === 'requested')).toBe(true)
    expect(new Set(emails.map((email) => email.graphMessageId)).size).toBe(8)
    // The request after the 410 started a new round: no state token.
    const requests = requestsFor('GET', delta)
    const refusedAt = requests.findIndex((request) => request.status === 410)
    expect(refusedAt).toBeGreaterThan(0)
    expect(requests[refusedAt + 1]!.query).not.toMatch(/deltatoken|skiptoken/)
    expect(await folderState(connectorId)).toMatchObject({ hasDeltaLink: true, lastError: null })
  })
})

describe('GraphQL syncConnector', () => {
  const mutation = `mutation ($id: ID!) { syncConnector(id: $id) { connectorId folders { folderPath pending } } }`

  it('wakes the folders and answers with their state; without config:write it is FORBIDDEN and wakes nothing', async () => {
    const { connectorId, mailbox } = await connectorFor()
    await syncUntilQuiet()
    await deliverUnnoticed(mailbox, 'woken by graphql')
    const reader = await t.keyWith('config:read')
    const refused = await graphql(t.app, reader, mutation, { id: connectorId })
    expect(refused.body.errors![0].extensions).toMatchObject({ code: 'FORBIDDEN', missingScopes: ['config:write'] })
    expect((await folderState(connectorId)).pending).toBe(false)
    const { body } = await graphql(t.app, t.adminKey, mutation, { id: connectorId })
    expect(body.errors).toBeUndefined()
    expect(body.data.syncConnector).toEqual({ connectorId, folders: [{ folderPath: 'Inbox', pending: true }] })
    await syncUntilQuiet()
    expect((await emailsOf(connectorId)).map((email) => email.subject)).toEqual(['woken by graphql'])
  })
})

// Last: it moves the sync's clock on for good.
describe('subscription renewal by time', () => {
  it('a subscription with more than 24 h left is left alone; with less, the folder’s next turn renews it', async () => {
    const { connectorId, mailbox } = await connectorFor()
    await syncUntilQuiet()
    const [created] = fake.subscriptions(mailbox)
    const left = Date.parse(created!.expirationDateTime) - Date.now()
    expect(left).toBeGreaterThan(69 * HOUR)
    const renewals = () => requestsFor('PATCH', new RegExp(`/subscriptions/${created!.id}$`))

    // 25 h left by the sync's clock: the folder is long due, has its turn, and keeps its subscription.
    clockOffsetMs = left - 25 * HOUR
    await syncUntilQuiet()
    expect(Date.parse((await folderState(connectorId)).lastSyncedAt)).toBeGreaterThan(Date.now() + clockOffsetMs - 60_000)
    expect(renewals()).toHaveLength(0)

    // 23 h left. The fake judges the new expiry by the real clock: let it grant what the sync's asks for.
    const maxMinutes = fake.maxSubscriptionMinutes
    fake.maxSubscriptionMinutes = 10_000
    try {
      clockOffsetMs = left - 23 * HOUR
      await syncUntilQuiet()
    } finally {
      fake.maxSubscriptionMinutes = maxMinutes
    }
    expect(renewals().map((request) => request.status)).toEqual([200])
    const [renewed] = fake.subscriptions(mailbox)
    expect(renewed!.id).toBe(created!.id)
    expect(Date.parse(renewed!.expirationDateTime)).toBeGreaterThan(Date.parse(created!.expirationDateTime) + 40 * HOUR)
    expect((await folderState(connectorId)).subscriptionExpiresAt).toBe(new Date(renewed!.expirationDateTime).toISOString())
  })
})
