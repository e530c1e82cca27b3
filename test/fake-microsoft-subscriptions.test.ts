import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { TokenProvider, type AppRegistration } from '../src/graph/token-provider.ts'
import { FakeMicrosoft, type FakeMailbox, type NotificationAnswer, type NotificationRequest } from './support/fake-microsoft.ts'

/**
 * The fake Graph's change notifications, exercised over plain HTTP the way a subscriber talks
 * to Graph: POST/GET/PATCH/DELETE /subscriptions with the validation handshake through a
 * transport (what tests wire to the app's inject), change notifications for new and moved-in
 * mail, lifecycle notifications, expiry and faults.
 */

const fake = new FakeMicrosoft()
const tenant = fake.addTenant()
const secret = { value: 's', expiresAt: new Date(Date.now() + 86_400_000) }
const app = fake.registerApp(tenant, { secrets: [secret] })
const otherApp = fake.registerApp(tenant, { secrets: [secret] })
const sendOnlyApp = fake.registerApp(tenant, { secrets: [secret], roles: ['Mail.Send'] })
const tokens = new TokenProvider({ timeoutMs: 2_000 })
const registration = (clientId: string): AppRegistration => ({
  integrationId: `subscriptions-${clientId}`,
  configHash: 'h',
  tenant: tenant.id,
  clientId,
  cloud: 'global',
  credential: { kind: 'clientSecret', clientSecret: 's' },
})
let token = ''
let otherToken = ''
let sendOnlyToken = ''
let mailboxes = 0

beforeAll(async () => {
  fake.start()
  token = (await tokens.acquire(registration(app.clientId))).accessToken
  otherToken = (await tokens.acquire(registration(otherApp.clientId))).accessToken
  sendOnlyToken = (await tokens.acquire(registration(sendOnlyApp.clientId))).accessToken
})
afterAll(() => fake.stop())
afterEach(async () => {
  await fake.flushNotifications()
  fake.setNotificationTransport(undefined)
  fake.validationTimeoutMs = 10_000
  fake.notificationTimeoutMs = 3_000
})

const GRAPH = 'https://graph.microsoft.com/v1.0'
const HOOK = 'https://mailgate.example/graph/notifications'
const LIFECYCLE = 'https://mailgate.example/graph/lifecycle'
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const minutes = (n: number) => new Date(Date.now() + n * 60_000).toISOString()

function newMailbox(): FakeMailbox {
  mailboxes += 1
  return fake.addMailbox(tenant, `subscribed${mailboxes}@contoso.com`)
}

interface Answer {
  status: number
  headers: Headers
  text: string
  json: any
}

async function graph(method: string, path: string, options: { body?: unknown; token?: string; prefer?: string } = {}): Promise<Answer> {
  const response = await fetch(`${GRAPH}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${options.token ?? token}`,
      ...(options.prefer ? { prefer: options.prefer } : {}),
      ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
  })
  const text = await response.text()
  const json = (response.headers.get('content-type') ?? '').startsWith('application/json') && text ? JSON.parse(text) : undefined
  return { status: response.status, headers: response.headers, text, json }
}

/**
 * A subscriber like the service should be: it echoes validation tokens as text/plain and takes
 * notifications with 202. `answer` overrides what it says to a request.
 */
function webhook(answer?: (request: NotificationRequest, token: string | null) => Promise<NotificationAnswer | undefined> | NotificationAnswer | undefined) {
  const requests: NotificationRequest[] = []
  const notifications: any[] = []
  fake.setNotificationTransport(async (request) => {
    requests.push(request)
    const token = new URL(request.url).searchParams.get('validationToken')
    const custom = await answer?.(request, token)
    if (custom) return custom
    if (token !== null) return { status: 200, contentType: 'text/plain; charset=utf-8', body: token }
    notifications.push({ url: request.url, ...JSON.parse(request.body) })
    return { status: 202, body: '' }
  })
  return { requests, notifications }
}

function subscriptionBody(mailbox: FakeMailbox, overrides: Record<string, unknown> = {}) {
  return {
    changeType: 'created',
    notificationUrl: HOOK,
    lifecycleNotificationUrl: LIFECYCLE,
    resource: `users/${mailbox.address}/mailFolders('${fake.folder(mailbox, 'inbox')!.id}')/messages`,
    expirationDateTime: minutes(4200),
    clientState: 'secret-client-state',
    ...overrides,
  }
}

async function subscribe(mailbox: FakeMailbox, overrides: Record<string, unknown> = {}, options: { prefer?: string } = {}) {
  const created = await graph('POST', '/subscriptions', { body: subscriptionBody(mailbox, overrides), ...options })
  expect(created.status, created.text).toBe(201)
  return created.json as { id: string; expirationDateTime: string; [key: string]: unknown }
}

describe('fake Graph: subscriptions', () => {
  it('creates a subscription once both URLs answer the validation request with the decoded token', async () => {
    const mailbox = newMailbox()
    const hook = webhook()
    const inbox = fake.folder(mailbox, 'inbox')!
    const body = subscriptionBody(mailbox)
    const created = await graph('POST', '/subscriptions', { body })
    expect(created.status, created.text).toBe(201)
    expect(created.json).toEqual({
      '@odata.context': 'https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity',
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      resource: body.resource,
      applicationId: app.clientId,
      changeType: 'created',
      clientState: 'secret-client-state',
      notificationUrl: HOOK,
      notificationQueryOptions: null,
      lifecycleNotificationUrl: LIFECYCLE,
      expirationDateTime: new Date(body.expirationDateTime).toISOString(),
      creatorId: expect.stringMatching(/^[0-9a-f-]{36}$/),
      includeResourceData: false,
      latestSupportedTlsVersion: 'v1_2',
      encryptionCertificate: null,
      encryptionCertificateId: null,
      notificationUrlAppId: null,
    })

    // One validation request per URL, before the answer: empty body, text/plain, a token to decode.
    expect(hook.requests.map((request) => request.url.split('?')[0])).toEqual([HOOK, LIFECYCLE])
    for (const request of hook.requests) {
      expect(request).toMatchObject({ method: 'POST', body: '', headers: { 'content-type': 'text/plain; charset=utf-8' } })
      const raw = request.url.split('validationToken=')[1]!
      const decoded = new URL(request.url).searchParams.get('validationToken')!
      expect(decoded).toMatch(/^Validation: Testing client application reachability for subscription Request-Id: [0-9a-f-]{36}$/)
      expect(raw).not.toBe(decoded) // the token travels URL-encoded
    }
    expect(fake.validationRequests.slice(-2).map((record) => record.ok)).toEqual([true, true])

    expect(fake.subscriptions(mailbox)).toEqual([
      expect.objectContaining({ id: created.json.id, clientState: 'secret-client-state', folderId: inbox.id, resource: body.resource, notificationUrl: HOOK, lifecycleNotificationUrl: LIFECYCLE, mailbox: mailbox.address }),
    ])
    const got = await graph('GET', `/subscriptions/${created.json.id}`)
    expect(got.status).toBe(200)
    expect(got.json).toEqual(created.json)
    const listed = await graph('GET', '/subscriptions')
    expect(listed.json.value.map((subscription: any) => subscription.id)).toContain(created.json.id)
    // Another app sees none of it.
    expect((await graph('GET', `/subscriptions/${created.json.id}`, { token: otherToken })).status).toBe(404)
    expect((await graph('GET', '/subscriptions', { token: otherToken })).json.value).toEqual([])
  })

  it('accepts the resource by mailbox id, plain folder segments and well-known names', async () => {
    const mailbox = newMailbox()
    webhook()
    const invoices = fake.addFolder(mailbox, 'Inbox/Invoices')
    for (const [resource, folder] of [
      [`users/${mailbox.address}/mailFolders/${invoices.id}/messages`, invoices.id],
      [`/users/${mailbox.id}/mailFolders('Inbox')/messages`, fake.folder(mailbox, 'inbox')!.id],
      [`users/${mailbox.address.toUpperCase()}/mailfolders('junkemail')/messages`, fake.folder(mailbox, 'junkemail')!.id],
    ] as const) {
      const created = await subscribe(mailbox, { resource })
      expect(created.resource).toBe(resource)
      expect(fake.subscriptions(mailbox).find((subscription) => subscription.id === created.id)?.folderId).toBe(folder)
    }
  })

  it('refuses the subscription with 400 when the validation is answered wrongly, with an error, too late or not at all', async () => {
    const mailbox = newMailbox()
    const refusals: [string, (request: NotificationRequest, token: string | null) => NotificationAnswer | Promise<NotificationAnswer> | undefined][] = [
      ['the token still encoded', (request) => ({ status: 200, contentType: 'text/plain', body: request.url.split('validationToken=')[1]! })],
      ['another token', () => ({ status: 200, contentType: 'text/plain', body: 'not the token' })],
      ['500', () => ({ status: 500, contentType: 'text/plain', body: 'oops' })],
      ['202 instead of 200', (_request, token) => ({ status: 202, contentType: 'text/plain', body: token ?? '' })],
      ['JSON instead of text/plain', (_request, token) => ({ status: 200, contentType: 'application/json', body: JSON.stringify(token) })],
      ['a network error', () => Promise.reject(new Error('ECONNREFUSED'))],
      ['only the lifecycle URL failing', (request, token) => (request.url.startsWith(LIFECYCLE) ? { status: 404, body: '' } : { status: 200, contentType: 'text/plain', body: token ?? '' })],
    ]
    for (const [why, answer] of refusals) {
      webhook(answer)
      const refused = await graph('POST', '/subscriptions', { body: subscriptionBody(mailbox) })
      expect(refused.status, why).toBe(400)
      expect(refused.json.error, why).toMatchObject({
        code: 'ValidationError',
        message: 'Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.',
      })
      expect(fake.validationRequests.at(-1)!.reason, why).toEqual(expect.any(String))
    }

    // Too slow: Graph waits 10 s; the test shortens the wait.
    fake.validationTimeoutMs = 100
    webhook(async (_request, token) => {
      await sleep(1_000)
      return { status: 200, contentType: 'text/plain', body: token ?? '' }
    })
    const started = Date.now()
    const slow = await graph('POST', '/subscriptions', { body: subscriptionBody(mailbox) })
    expect(slow.status).toBe(400)
    expect(slow.json.error).toMatchObject({ code: 'ValidationError', message: 'Subscription validation request timed out.' })
    expect(Date.now() - started).toBeLessThan(900) // refused at the timeout, not when the answer came

    // No transport at all: nothing can answer the validation.
    fake.setNotificationTransport(undefined)
    expect((await graph('POST', '/subscriptions', { body: subscriptionBody(mailbox) })).json.error.code).toBe('ValidationError')
    expect(fake.subscriptions(mailbox)).toEqual([])
  })

  it('holds expirationDateTime, the URLs, clientState, changeType and the resource to Graph’s limits', async () => {
    const mailbox = newMailbox()
    const hook = webhook()
    const refused = async (overrides: Record<string, unknown>, status = 400) => {
      const answer = await graph('POST', '/subscriptions', { body: subscriptionBody(mailbox, overrides) })
      expect(answer.status, JSON.stringify(overrides)).toBe(status)
      return answer.json.error as { code: string; message: string }
    }
    expect(await refused({ expirationDateTime: minutes(4231) })).toEqual({
      code: 'ExtensionError',
      message: 'Subscription expiration can only be 4230 minutes in the future.',
      innerError: expect.any(Object),
    })
    expect((await refused({ expirationDateTime: minutes(-1) })).message).toMatch(/in the future/)
    expect((await refused({ expirationDateTime: 'tomorrow' })).code).toBe('BadRequest')
    expect((await refused({ expirationDateTime: undefined })).message).toBe('expirationDateTime is a required property for subscription creation.')
    expect(await refused({ notificationUrl: 'http://mailgate.example/graph/notifications' })).toMatchObject({
      code: 'InvalidRequest',
      message: "NotificationUrl scheme='http' is not supported.",
    })
    expect(await refused({ lifecycleNotificationUrl: 'http://mailgate.example/graph/lifecycle' })).toMatchObject({ code: 'InvalidRequest' })
    expect((await refused({ notificationUrl: 'not a url' })).code).toBe('InvalidRequest')
    expect((await refused({ clientState: 'x'.repeat(129) })).code).toBe('InvalidRequest')
    expect((await refused({ changeType: 'created,moved' })).code).toBe('InvalidRequest')
    expect((await refused({ resource: `users/nobody@contoso.com/mailFolders('inbox')/messages` }, 404)).code).toBe('ExtensionError')
    expect((await refused({ resource: `users/${mailbox.address}/mailFolders('AAMkNoSuchFolder')/messages` }, 404)).code).toBe('ExtensionError')
    expect((await refused({ resource: `me/mailFolders('inbox')/messages` })).code).toBe('BadRequest')
    // Refused before any validation request was sent.
    expect(hook.requests).toEqual([])

    // At the limits it is fine: 128 characters of clientState, just under 4230 minutes, several change types.
    const created = await subscribe(mailbox, { clientState: 'y'.repeat(128), expirationDateTime: minutes(4229), changeType: 'created,updated,deleted' })
    expect(created.clientState).toBe('y'.repeat(128))
    // Reading mail needs Mail.Read (or ReadBasic/ReadWrite): a send-only app may not subscribe.
    const denied = await graph('POST', '/subscriptions', { body: subscriptionBody(mailbox), token: sendOnlyToken })
    expect(denied.status).toBe(403)
  })

  it('renews with PATCH (validating the URLs again), deletes with DELETE, and forgets expired subscriptions', async () => {
    const mailbox = newMailbox()
    const hook = webhook()
    const subscription = await subscribe(mailbox)
    hook.requests.length = 0

    const later = minutes(4230 - 1)
    const renewed = await graph('PATCH', `/subscriptions/${subscription.id}`, { body: { expirationDateTime: later } })
    expect(renewed.status, renewed.text).toBe(200)
    expect(renewed.json).toMatchObject({ id: subscription.id, expirationDateTime: new Date(later).toISOString(), clientState: 'secret-client-state' })
    expect(hook.requests.map((request) => request.url.split('?')[0])).toEqual([HOOK, LIFECYCLE])
    expect(fake.subscriptions(mailbox)[0]!.expirationDateTime).toBe(new Date(later).toISOString())
    expect((await graph('PATCH', `/subscriptions/${subscription.id}`, { body: { expirationDateTime: minutes(5000) } })).json.error.code).toBe('ExtensionError')
    expect((await graph('PATCH', `/subscriptions/${subscription.id}`, { body: {} })).status).toBe(400)
    expect((await graph('POST', `/subscriptions/${subscription.id}/reauthorize`)).status).toBe(204)

    const unknown = await graph('PATCH', '/subscriptions/2a1f6c1e-0000-4000-8000-000000000000', { body: { expirationDateTime: later } })
    expect(unknown.status).toBe(404)
    expect(unknown.json.error.code).toBe('ResourceNotFound')

    const deleted = await graph('DELETE', `/subscriptions/${subscription.id}`)
    expect(deleted.status).toBe(204)
    expect(deleted.text).toBe('')
    for (const method of ['GET', 'DELETE'] as const) expect((await graph(method, `/subscriptions/${subscription.id}`)).status).toBe(404)
    expect((await graph('PATCH', `/subscriptions/${subscription.id}`, { body: { expirationDateTime: later } })).status).toBe(404)
    await fake.deliver(mailbox, { subject: 'after the delete' })
    await fake.flushNotifications()
    expect(hook.notifications).toEqual([])

    // Expiry: the subscription is gone from the API and sends nothing more.
    const expiring = await subscribe(mailbox)
    fake.expireSubscription(expiring.id)
    expect((await graph('GET', `/subscriptions/${expiring.id}`)).status).toBe(404)
    expect((await graph('PATCH', `/subscriptions/${expiring.id}`, { body: { expirationDateTime: later } })).status).toBe(404)
    expect(fake.subscriptions(mailbox)).toEqual([])
    await fake.deliver(mailbox, { subject: 'after the expiry' })
    await fake.flushNotifications()
    expect(hook.notifications).toEqual([])
  })

  it('applies Graph fault injection to /subscriptions: a 429 creates nothing; a lost answer still created one', async () => {
    const mailbox = newMailbox()
    const hook = webhook()
    fake.failGraphRequests({ method: 'POST', path: /\/subscriptions$/ }, { kind: 'status', status: 429, retryAfter: 7 })
    const throttled = await graph('POST', '/subscriptions', { body: subscriptionBody(mailbox) })
    expect(throttled.status).toBe(429)
    expect(throttled.headers.get('retry-after')).toBe('7')
    expect(throttled.json.error.code).toBe('ApplicationThrottled')
    expect(hook.requests).toEqual([])
    expect(fake.subscriptions(mailbox)).toEqual([])
    expect(fake.graphRequests.at(-1)).toMatchObject({ method: 'POST', path: '/v1.0/subscriptions', status: 429, fault: 'status' })

    // The retry goes through.
    await subscribe(mailbox)
    expect(fake.subscriptions(mailbox)).toHaveLength(1)

    // Processed, then the answer is lost: a retry makes a second subscription.
    fake.failGraphRequests({ method: 'POST', path: /\/subscriptions$/ }, { kind: 'lost-response', status: 504 })
    expect((await graph('POST', '/subscriptions', { body: subscriptionBody(mailbox) })).status).toBe(504)
    expect(fake.subscriptions(mailbox)).toHaveLength(2)
    fake.failGraphRequests({ method: 'PATCH', path: /\/subscriptions\// }, { kind: 'status', status: 503 })
    const id = fake.subscriptions(mailbox)[0]!.id
    expect((await graph('PATCH', `/subscriptions/${id}`, { body: { expirationDateTime: minutes(60) } })).status).toBe(503)
  })
})

describe('fake Graph: change notifications', () => {
  it('notifies new mail in the folder asynchronously, once, in Graph’s shape', async () => {
    const mailbox = newMailbox()
    const hook = webhook()
    const subscription = await subscribe(mailbox)
    hook.requests.length = 0

    const message = await fake.deliver(mailbox, { subject: 'new mail' })
    expect(hook.requests).toEqual([]) // deliver does not wait for the notification
    await fake.deliver(mailbox, { subject: 'elsewhere' }, { folder: 'junkemail' })
    await fake.flushNotifications()

    expect(hook.requests).toHaveLength(1)
    expect(hook.requests[0]).toMatchObject({ url: HOOK, method: 'POST', headers: { 'content-type': 'application/json; charset=utf-8' } })
    const resource = `Users/${mailbox.id}/Messages/${message.restId}`
    const fetched = await graph('GET', `/users/${mailbox.address}/messages/${encodeURIComponent(message.restId)}`)
    expect(hook.notifications).toEqual([
      {
        url: HOOK,
        value: [
          {
            subscriptionId: subscription.id,
            subscriptionExpirationDateTime: subscription.expirationDateTime,
            changeType: 'created',
            resource,
            resourceData: { '@odata.type': '#Microsoft.Graph.Message', '@odata.id': resource, '@odata.etag': fetched.json['@odata.etag'], id: message.restId },
            clientState: 'secret-client-state',
            tenantId: tenant.id,
          },
        ],
      },
    ])
    expect(fake.notificationDeliveries.at(-1)).toMatchObject({ subscriptionId: subscription.id, url: HOOK, status: 202, ok: true, timedOut: false, ms: expect.any(Number) })
  })

  it('notifies mail moved or sent into the folder, keeps each subscription’s order and batches what came together', async () => {
    const mailbox = newMailbox()
    const colleague = newMailbox()
    const hook = webhook()
    const processed = fake.addFolder(mailbox, 'Inbox/Processed')
    await subscribe(mailbox, { resource: `users/${mailbox.address}/mailFolders('${processed.id}')/messages`, clientState: 'processed' })
    const inbox = await subscribe(mailbox, { clientState: 'inbox' })

    // Moved in through Graph and in the mailbox itself: created under the new REST id.
    const [a, b] = [await fake.deliver(mailbox, { subject: 'a' }), await fake.deliver(mailbox, { subject: 'b' })]
    await fake.flushNotifications()
    hook.notifications.length = 0
    const moved = await graph('POST', `/users/${mailbox.address}/messages/${encodeURIComponent(a.restId)}/move`, { body: { destinationId: processed.id } })
    expect(moved.status).toBe(201)
    fake.moveMessage(b, 'Inbox/Processed')
    await fake.flushNotifications()
    const toProcessed = hook.notifications.flatMap((batch) => batch.value).filter((item: any) => item.clientState === 'processed')
    expect(toProcessed.map((item: any) => [item.changeType, item.resourceData.id])).toEqual([
      ['created', moved.json.id],
      ['created', b.restId],
    ])
    // The inbox subscription asked for created only: it hears nothing of mail leaving.
    expect(hook.notifications.flatMap((batch) => batch.value).filter((item: any) => item.clientState === 'inbox')).toEqual([])

    // Sent by another hosted mailbox into this inbox.
    hook.notifications.length = 0
    const sent = await graph('POST', `/users/${colleague.address}/sendMail`, {
      body: { message: { subject: 'hello', body: { contentType: 'text', content: 'hi' }, toRecipients: [{ emailAddress: { address: mailbox.address } }] } },
    })
    expect(sent.status).toBe(202)
    await fake.flushNotifications()
    const hello = fake.folderMessages(mailbox, 'inbox').find((message) => message.subject === 'hello')!
    expect(hook.notifications.flatMap((batch) => batch.value).map((item: any) => item.resourceData.id)).toEqual([hello.restId])

    // Several arrivals at once come in order, batched into one POST; a slow subscriber keeps the order too.
    hook.notifications.length = 0
    const burst = await Promise.all([1, 2, 3].map((n) => fake.deliver(mailbox, { subject: `burst ${n}` })))
    await fake.flushNotifications()
    expect(hook.notifications).toHaveLength(1)
    expect(hook.notifications[0].value.map((item: any) => item.resourceData.id)).toEqual(burst.map((message) => message.restId))
    expect(hook.notifications[0].value.every((item: any) => item.subscriptionId === inbox.id)).toBe(true)
  })

  it('records failed deliveries (an error status, or no answer within 3 s) without holding up the mail', async () => {
    const mailbox = newMailbox()
    let mode: 'fail' | 'slow' | 'ok' = 'fail'
    const order: string[] = []
    webhook(async (request, token) => {
      if (token !== null) return undefined
      const ids = (JSON.parse(request.body).value as any[]).map((item) => item.resourceData.id as string)
      if (mode === 'fail') return { status: 500, body: 'down' }
      if (mode === 'slow') await sleep(400)
      order.push(...ids)
      return { status: 202, body: '' }
    })
    const subscription = await subscribe(mailbox)

    await fake.deliver(mailbox, { subject: 'refused' })
    await fake.flushNotifications()
    expect(fake.notificationDeliveries.at(-1)).toMatchObject({ subscriptionId: subscription.id, status: 500, ok: false })

    mode = 'slow'
    fake.notificationTimeoutMs = 50
    const started = Date.now()
    await fake.deliver(mailbox, { subject: 'slow' })
    expect(Date.now() - started).toBeLessThan(300)
    await fake.flushNotifications()
    expect(fake.notificationDeliveries.at(-1)).toMatchObject({ ok: false, timedOut: true, status: 0 })
    await vi.waitFor(() => expect(fake.notificationDeliveries.at(-1)!.lateStatus).toBe(202), { timeout: 2_000 })

    // Slow but in time: still one after another, in arrival order.
    fake.notificationTimeoutMs = 3_000
    const first = await fake.deliver(mailbox, { subject: 'first' })
    await sleep(20) // the first POST is under way when the second arrives
    const second = await fake.deliver(mailbox, { subject: 'second' })
    await fake.flushNotifications()
    expect(order.slice(-2)).toEqual([first.restId, second.restId])
    expect(fake.notificationDeliveries.slice(-2).map((delivery) => delivery.ok)).toEqual([true, true])
  })

  it('carries immutable ids for subscriptions created with Prefer: IdType="ImmutableId", and updated/deleted when asked for', async () => {
    const mailbox = newMailbox()
    const hook = webhook()
    await subscribe(mailbox, { changeType: 'created,updated,deleted' }, { prefer: 'IdType="ImmutableId"' })
    const message = await fake.deliver(mailbox, { subject: 'tracked' })
    expect((await graph('PATCH', `/users/${mailbox.address}/messages/${encodeURIComponent(message.restId)}`, { body: { isRead: true } })).status).toBe(200)
    fake.moveMessage(message, 'archive')
    await fake.flushNotifications()
    const items = hook.notifications.flatMap((batch) => batch.value)
    expect(items.map((item: any) => [item.changeType, item.resourceData.id])).toEqual([
      ['created', message.immutableId],
      ['updated', message.immutableId],
      ['deleted', message.immutableId],
    ])
    expect(items[2].resourceData).not.toHaveProperty('@odata.etag')
  })
})

describe('fake Graph: lifecycle notifications and forged posts', () => {
  it('sends each lifecycle event to the lifecycleNotificationUrl and returns the answer', async () => {
    const mailbox = newMailbox()
    const hook = webhook()
    const subscription = await subscribe(mailbox)
    for (const event of ['reauthorizationRequired', 'missed', 'subscriptionRemoved'] as const) {
      hook.notifications.length = 0
      const answer = await fake.sendLifecycleEvent(subscription.id, event)
      expect(answer).toMatchObject({ status: 202, ms: expect.any(Number) })
      expect(hook.notifications).toEqual([
        {
          url: LIFECYCLE,
          value: [
            {
              subscriptionId: subscription.id,
              subscriptionExpirationDateTime: subscription.expirationDateTime,
              tenantId: tenant.id,
              clientState: 'secret-client-state',
              lifecycleEvent: event,
              resource: subscription.resource,
            },
          ],
        },
      ])
      expect(fake.lifecycleDeliveries.at(-1)).toMatchObject({ subscriptionId: subscription.id, event, status: 202, ok: true })
    }
    // subscriptionRemoved: Graph has dropped it.
    expect((await graph('GET', `/subscriptions/${subscription.id}`)).status).toBe(404)
    expect(fake.subscriptions(mailbox)).toEqual([])
    await expect(fake.sendLifecycleEvent(subscription.id, 'missed')).rejects.toThrow(/no live subscription/)
    const withoutLifecycle = await subscribe(mailbox, { lifecycleNotificationUrl: undefined })
    await expect(fake.sendLifecycleEvent(withoutLifecycle.id, 'missed')).rejects.toThrow(/no lifecycleNotificationUrl/)
  })

  it('posts any payload through the transport, e.g. a forged notification with a wrong clientState', async () => {
    webhook(async (request) => (JSON.parse(request.body).value?.[0]?.clientState === 'forged' ? { status: 202, body: 'ignored' } : undefined))
    const answer = await fake.postNotification(HOOK, { value: [{ subscriptionId: 'x', clientState: 'forged', changeType: 'created' }] })
    expect(answer).toMatchObject({ status: 202, body: 'ignored' })
  })
})
