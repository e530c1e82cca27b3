import { sql } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { rowsOf } from '../src/database/index.ts'
import { bearer, buildTestApp, graphql, type TestApp } from './support/app.ts'
import { FakeMicrosoft, type FakeTenant } from './support/fake-microsoft.ts'
import { mailSetup } from './support/mail.ts'

const fake = new FakeMicrosoft()
let t: TestApp
let tenant: FakeTenant
let sender: string
let reader: string
let sendOnlyFrom: string

beforeAll(async () => {
  fake.start()
  tenant = fake.addTenant()
  const app = fake.registerApp(tenant, { secrets: [{ value: 'msg-secret', expiresAt: new Date(Date.now() + 86_400_000) }] })
  const sendOnlyApp = fake.registerApp(tenant, { roles: ['Mail.Send'], secrets: [{ value: 'send-only', expiresAt: new Date(Date.now() + 86_400_000) }] })
  fake.addMailbox(tenant, 'support@contoso.com', { aliases: ['help@contoso.com'] })
  fake.addMailbox(tenant, 'notify@contoso.com')
  t = await buildTestApp({ messageSizeLimit: 4 * 1024 * 1024 })
  sender = await t.keyWith('mail:send')
  reader = await t.keyWith('mail:read')

  const setup = mailSetup(t)
  const integration = await setup.integration(tenant.id, app.clientId, 'msg-secret')
  const connector = await setup.outgoing(integration, 'support@contoso.com')
  const alias = (await admin('POST', '/v1/routes', { connectorId: connector, name: 'help', emailAddress: 'help@contoso.com' })).body
  await admin('POST', `/v1/routes/${alias.id}/test`)
  expect((await admin('POST', `/v1/routes/${alias.id}/enable`)).body.enabled).toBe(true)
  await admin('POST', '/v1/routes', { connectorId: connector, name: 'untested', emailAddress: 'untested@contoso.com' })

  await setup.outgoing(await setup.integration(tenant.id, sendOnlyApp.clientId, 'send-only'), 'notify@contoso.com')
  sendOnlyFrom = 'notify@contoso.com'
})
afterAll(async () => {
  await t.close()
  fake.stop()
})

async function admin(method: 'GET' | 'POST', url: string, payload?: unknown) {
  const response = await t.app.inject({ method, url, headers: bearer(t.adminKey), payload: payload as object })
  return { status: response.statusCode, body: response.json() }
}

function send(payload: unknown, options: { key?: string; idempotencyKey?: string } = {}) {
  return t.app.inject({
    method: 'POST',
    url: '/v1/messages',
    headers: { ...bearer(options.key ?? sender), ...(options.idempotencyKey ? { 'idempotency-key': options.idempotencyKey } : {}) },
    payload: payload as object,
  })
}

const message = (overrides: Record<string, unknown> = {}) => ({
  from: 'support@contoso.com',
  to: ['Customer@Example.com'],
  subject: 'Your request',
  body: { contentType: 'text', content: 'Hello' },
  ...overrides,
})

async function messageCount(): Promise<number> {
  const [row] = rowsOf<{ n: number }>(await t.db.database.db.execute(sql`select count(*)::int as n from outbound_messages`))
  return row!.n
}

describe('submitting', () => {
  it('stores and queues the message with its attachments, answering 202 with its id', async () => {
    const pdf = Buffer.from('%PDF-1.7 invoice')
    const response = await send(
      message({
        cc: ['boss@example.com'],
        attachments: [{ name: 'invoice.pdf', contentType: 'application/pdf', contentBytes: pdf.toString('base64') }],
        headers: { 'x-ticket': 'T-1' },
        importance: 'high',
      }),
    )
    expect(response.statusCode).toBe(202)
    const accepted = response.json()
    expect(accepted).toMatchObject({ status: 'queued', id: expect.any(String) })
    expect(response.headers.location).toBe(`/v1/messages/${accepted.id}`)

    const fetched = await t.app.inject({ method: 'GET', url: `/v1/messages/${accepted.id}`, headers: bearer(reader) })
    expect(fetched.json()).toMatchObject({
      status: 'queued',
      from: 'support@contoso.com',
      to: ['customer@example.com'],
      cc: ['boss@example.com'],
      importance: 'high',
      headers: { 'x-ticket': 'T-1' },
      attachments: [{ name: 'invoice.pdf', contentType: 'application/pdf', size: pdf.length, isInline: false }],
      attempts: 0,
    })
    const chunks = rowsOf<{ data: Buffer | Uint8Array }>(
      await t.db.database.db.execute(
        sql`select c.data from outbound_attachments a join attachment_chunks c on c.blob_id = a.blob_id where a.message_id = ${accepted.id} order by c.seq`,
      ),
    )
    expect(Buffer.concat(chunks.map((chunk) => Buffer.from(chunk.data))).equals(pdf)).toBe(true)
  })

  it('sends from an enabled alias, and refuses any other sender naming why', async () => {
    expect((await send(message({ from: 'help@contoso.com' }))).statusCode).toBe(202)
    fake.addMailbox(tenant, 'paused@contoso.com')
    const pausedApp = fake.registerApp(tenant, { secrets: [{ value: 'p', expiresAt: new Date(Date.now() + 86_400_000) }] })
    const setup = mailSetup(t)
    const paused = await setup.outgoing(await setup.integration(tenant.id, pausedApp.clientId, 'p'), 'paused@contoso.com')
    expect((await admin('POST', `/v1/connectors/${paused}/disable`)).body.enabled).toBe(false)
    const stored = async () => rowsOf<{ n: number }>(await t.db.database.db.execute(sql`select count(*)::int as n from outbound_messages`))[0]!.n
    const before = await stored()
    const cases: [string, RegExp][] = [
      ['stranger@contoso.com', /no outgoing connector or alias has this address/],
      ['untested@contoso.com', /is not enabled \(test it, then enable it\)/],
      ['paused@contoso.com', new RegExp(`its connector ${paused} is disabled`)],
    ]
    for (const [from, why] of cases) {
      const response = await send(message({ from }))
      expect(response.statusCode).toBe(422)
      expect(response.json()).toMatchObject({ code: 'SENDER_NOT_ALLOWED', field: 'from', detail: expect.stringMatching(why) })
    }
    expect(await stored()).toBe(before)
  })

  it('needs 1 to 500 recipients in all, valid addresses, and x- headers only', async () => {
    const none = await send(message({ to: [] }))
    expect(none.json()).toMatchObject({ code: 'VALIDATION_FAILED', errors: [{ field: 'to' }] })
    const many = (n: number) => Array.from({ length: n }, (_, i) => `r${i}@example.com`)
    const tooMany = await send(message({ to: many(300), bcc: many(201) }))
    expect(tooMany.json().errors[0].message).toContain('at most 500')
    expect((await send(message({ to: many(300), bcc: many(200) }))).statusCode).toBe(202)
    expect((await send(message({ to: ['not-an-address'] }))).json().errors[0].field).toBe('to.0')
    const header = await send(message({ headers: { Subject: 'x' } }))
    expect(header.statusCode).toBe(400)
    expect(header.json().errors[0].field).toBe('headers.Subject')
  })

  it('refuses messages over MESSAGE_SIZE_LIMIT with 413, and large attachments the integration cannot upload with 422', async () => {
    const before = await messageCount()
    const big = Buffer.alloc(4 * 1024 * 1024 + 10, 1).toString('base64')
    const tooBig = await send(message({ attachments: [{ name: 'big.bin', contentBytes: big }] }))
    expect(tooBig.statusCode).toBe(413)
    expect(tooBig.json()).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', detail: expect.stringContaining('MESSAGE_SIZE_LIMIT') })

    const large = Buffer.alloc(3.5 * 1024 * 1024, 2).toString('base64')
    const sendOnly = await send(message({ from: sendOnlyFrom, attachments: [{ name: 'scan.tif', contentBytes: large }] }))
    expect(sendOnly.statusCode).toBe(422)
    expect(sendOnly.json()).toMatchObject({ code: 'ATTACHMENT_NOT_SENDABLE', field: 'attachments.0', detail: expect.stringContaining('Mail.ReadWrite') })
    const inline = await send(message({ attachments: [{ name: 'logo.png', contentBytes: large, isInline: true, contentId: 'logo' }] }))
    expect(inline.json().code).toBe('ATTACHMENT_NOT_SENDABLE')
    expect((await send(message({ attachments: [{ name: 'scan.tif', contentBytes: large }] }))).statusCode).toBe(202)
    expect(await messageCount()).toBe(before + 1)
  })

  it('a work item reference rides along so replies can find it', async () => {
    const id = (await send(message({ workItemRef: 'WI-1042' }))).json().id
    const fetched = (await t.app.inject({ method: 'GET', url: `/v1/messages/${id}`, headers: bearer(reader) })).json()
    expect(fetched).toMatchObject({ workItemRef: 'WI-1042', headers: { 'x-mailgate-work-item': 'WI-1042' }, replyTo: ['support+WI-1042@contoso.com'] })
    const explicit = (await send(message({ workItemRef: 'WI-7', replyTo: ['desk@contoso.com'] }))).json().id
    expect((await t.app.inject({ method: 'GET', url: `/v1/messages/${explicit}`, headers: bearer(reader) })).json().replyTo).toEqual(['desk@contoso.com'])
  })
})

describe('idempotency', () => {
  it('the same key and body replay the first answer and store one message; another body is 409', async () => {
    const before = await messageCount()
    const first = await send(message(), { idempotencyKey: 'order-1' })
    const again = await send(message(), { idempotencyKey: 'order-1' })
    expect(again.statusCode).toBe(202)
    expect(again.json()).toEqual(first.json())
    expect(again.headers['idempotent-replayed']).toBe('true')
    expect(first.headers['idempotent-replayed']).toBeUndefined()
    expect(await messageCount()).toBe(before + 1)

    const different = await send(message({ subject: 'Changed' }), { idempotencyKey: 'order-1' })
    expect(different.statusCode).toBe(409)
    expect(different.json().code).toBe('IDEMPOTENCY_KEY_REUSED')
  })

  it('keys belong to the API key that used them', async () => {
    const other = await t.keyWith('mail:send')
    const mine = (await send(message(), { idempotencyKey: 'shared-key' })).json()
    const theirs = (await send(message(), { idempotencyKey: 'shared-key', key: other })).json()
    expect(theirs.id).not.toBe(mine.id)
  })

  it('concurrent requests with one key store one message', async () => {
    const before = await messageCount()
    const responses = await Promise.all([1, 2, 3, 4].map(() => send(message(), { idempotencyKey: 'burst-1' })))
    expect(new Set(responses.map((r) => r.statusCode))).toEqual(new Set([202]))
    expect(new Set(responses.map((r) => r.json().id)).size).toBe(1)
    expect(await messageCount()).toBe(before + 1)
  })

  it('after 24 hours a key is free again: a new body makes a new message', async () => {
    const first = (await send(message(), { idempotencyKey: 'daily-1' })).json()
    await t.db.database.db.execute(sql`update idempotency_keys set created_at = now() - interval '25 hours' where key = 'daily-1'`)
    const later = await send(message({ subject: 'A day later' }), { idempotencyKey: 'daily-1' })
    expect(later.statusCode).toBe(202)
    expect(later.json().id).not.toBe(first.id)
    const replay = await send(message({ subject: 'A day later' }), { idempotencyKey: 'daily-1' })
    expect(replay.json()).toEqual(later.json())
    expect(replay.headers['idempotent-replayed']).toBe('true')
  })

  it('a retry replays the first answer even after the sender was disabled; a new key is refused', async () => {
    fake.addMailbox(tenant, 'seasonal@contoso.com')
    const seasonalApp = fake.registerApp(tenant, { secrets: [{ value: 's', expiresAt: new Date(Date.now() + 86_400_000) }] })
    const setup = mailSetup(t)
    const seasonal = await setup.outgoing(await setup.integration(tenant.id, seasonalApp.clientId, 's'), 'seasonal@contoso.com')
    const first = await send(message({ from: 'seasonal@contoso.com' }), { idempotencyKey: 'before-pause' })
    expect(first.statusCode).toBe(202)
    expect((await admin('POST', `/v1/connectors/${seasonal}/disable`)).body.enabled).toBe(false)
    const retried = await send(message({ from: 'seasonal@contoso.com' }), { idempotencyKey: 'before-pause' })
    expect(retried.statusCode).toBe(202)
    expect(retried.json()).toEqual(first.json())
    expect(retried.headers['idempotent-replayed']).toBe('true')
    expect((await send(message({ from: 'seasonal@contoso.com', subject: 'other' }), { idempotencyKey: 'before-pause' })).statusCode).toBe(409)
    expect((await send(message({ from: 'seasonal@contoso.com' }), { idempotencyKey: 'after-pause' })).json().code).toBe('SENDER_NOT_ALLOWED')
  })

  it('a refused request leaves its key free', async () => {
    expect((await send(message({ from: 'stranger@contoso.com' }), { idempotencyKey: 'fix-me' })).statusCode).toBe(422)
    expect((await send(message(), { idempotencyKey: 'fix-me' })).statusCode).toBe(202)
  })
})

describe('status and control', () => {
  it('lists with filters; cancels only queued messages; retries only failed or uncertain ones', async () => {
    const id = (await send(message({ workItemRef: 'WI-LIST' }))).json().id
    const list = (await t.app.inject({ method: 'GET', url: '/v1/messages?workItemRef=WI-LIST&status=queued', headers: bearer(reader) })).json()
    expect(list.items.map((m: { id: string }) => m.id)).toEqual([id])

    const cancelled = await t.app.inject({ method: 'POST', url: `/v1/messages/${id}/cancel`, headers: bearer(sender) })
    expect(cancelled.json().status).toBe('cancelled')
    expect((await t.app.inject({ method: 'POST', url: `/v1/messages/${id}/cancel`, headers: bearer(sender) })).statusCode).toBe(200)
    const retried = await t.app.inject({ method: 'POST', url: `/v1/messages/${id}/retry`, headers: bearer(sender) })
    expect(retried.statusCode).toBe(409)
    expect(retried.json()).toMatchObject({ code: 'MESSAGE_STATE_CONFLICT', status: 409, messageStatus: 'cancelled' })
  })

  it('sending needs mail:send and reading needs mail:read', async () => {
    expect((await send(message(), { key: reader })).statusCode).toBe(403)
    expect((await t.app.inject({ method: 'GET', url: '/v1/messages', headers: bearer(sender) })).statusCode).toBe(403)
  })

  it('GraphQL sends with an idempotency key and reads the message back', async () => {
    const mutation = `mutation($input: SendMessageInput!, $key: String) { sendMessage(input: $input, idempotencyKey: $key) { id status replayed } }`
    const input = { from: 'support@contoso.com', to: ['a@example.com'], subject: 'gql', body: { contentType: 'html', content: '<p>hi</p>' }, headers: { 'x-a': '1' } }
    const first = await graphql(t.app, sender, mutation, { input, key: 'gql-1' })
    expect(first.body.errors).toBeUndefined()
    const second = await graphql(t.app, sender, mutation, { input, key: 'gql-1' })
    expect(second.body.data.sendMessage).toEqual({ ...first.body.data.sendMessage, replayed: true })
    const read = await graphql(t.app, reader, `query($id: ID!) { message(id: $id) { status from headers } }`, { id: first.body.data.sendMessage.id })
    expect(read.body.data.message).toEqual({ status: 'queued', from: 'support@contoso.com', headers: { 'x-a': '1' } })
    const refused = await graphql(t.app, sender, mutation, { input: { ...input, from: 'nobody@contoso.com' } })
    expect(refused.body.errors![0].extensions).toMatchObject({ code: 'SENDER_NOT_ALLOWED', field: 'from' })
  })
})
