import { createHash, randomBytes } from 'node:crypto'
import { eq, sql } from 'drizzle-orm'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { rowsOf, schema } from '../src/database/index.ts'
import { bearer, buildTestApp, graphql, type TestApp } from './support/app.ts'
import { FakeMicrosoft, type FakeApp, type FakeMailbox, type FakeTenant } from './support/fake-microsoft.ts'
import { extraDispatcher, mailSetup } from './support/mail.ts'

const fake = new FakeMicrosoft()
let t: TestApp
let tenant: FakeTenant
let support: FakeMailbox
let notify: FakeMailbox
let customer: FakeMailbox
let draftsApp: FakeApp
let supportConnector: string
let sender: string
/** Test time runs ahead of the wall clock by this much; tests move it to reach retries. */
let clockOffsetMs = 0
const clock = () => new Date(Date.now() + clockOffsetMs)

const settings = { backoffMs: 1_000, maxBackoffMs: 4_000, settleMs: 5_000, leaseMs: 60_000, maxAttempts: 3, perMinute: 600 }

beforeAll(async () => {
  fake.start()
  tenant = fake.addTenant()
  draftsApp = fake.registerApp(tenant, { secrets: [{ value: 'drafts', expiresAt: new Date(Date.now() + 86_400_000) }] })
  const sendOnlyApp = fake.registerApp(tenant, { roles: ['Mail.Send'], secrets: [{ value: 'send-only', expiresAt: new Date(Date.now() + 86_400_000) }] })
  support = fake.addMailbox(tenant, 'support@contoso.com', { aliases: ['help@contoso.com'] })
  notify = fake.addMailbox(tenant, 'notify@contoso.com')
  customer = fake.addMailbox(tenant, 'customer@contoso.com')
  t = await buildTestApp({
    messageSizeLimit: 20 * 1024 * 1024,
    connectorFailureThreshold: 3,
    dispatcher: { autostart: false, settings, clock },
    clock,
  })
  sender = await t.keyWith('mail:send')
  const setup = mailSetup(t)
  supportConnector = await setup.outgoing(await setup.integration(tenant.id, draftsApp.clientId, 'drafts'), 'support@contoso.com')
  await setup.alias(supportConnector, 'help@contoso.com')
  await setup.outgoing(await setup.integration(tenant.id, sendOnlyApp.clientId, 'send-only'), 'notify@contoso.com')
})
afterAll(async () => {
  await t.close()
  fake.stop()
})
beforeEach(async () => {
  clockOffsetMs += 3_600_000 // a fresh hour: budgets refilled, pauses over, earlier retries due
  // Nothing left over from an earlier test may be picked up by this one.
  await t.db.database.db.update(schema.outboundMessages).set({ status: 'cancelled' }).where(eq(schema.outboundMessages.status, 'queued'))
})

async function submit(overrides: Record<string, unknown> = {}): Promise<string> {
  const response = await t.app.inject({
    method: 'POST',
    url: '/v1/messages',
    headers: bearer(sender),
    payload: { from: 'support@contoso.com', to: ['customer@contoso.com'], subject: `hello ${randomBytes(4).toString('hex')}`, body: { contentType: 'text', content: 'Hi' }, ...overrides },
  })
  expect(response.statusCode, response.body).toBe(202)
  return response.json().id
}

async function message(id: string) {
  const response = await t.app.inject({ method: 'GET', url: `/v1/messages/${id}`, headers: bearer(t.adminKey) })
  return response.json()
}

async function row(id: string) {
  const [found] = await t.db.database.db.select().from(schema.outboundMessages).where(eq(schema.outboundMessages.id, id))
  return found!
}

function deliveriesOf(subject: string) {
  return customer.received.filter((received) => received.subject === subject)
}

async function eventsOf(id: string): Promise<string[]> {
  return rowsOf<{ type: string }>(await t.db.database.db.execute(sql`select type from domain_events where subject_id = ${id} order by id`)).map((event) => event.type)
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex')

describe('the draft path (Mail.ReadWrite)', () => {
  it('sends through a draft with an immutable id, recording the ids, the attempt and a message.sent event', async () => {
    const pdf = randomBytes(200_000)
    const id = await submit({
      from: 'help@contoso.com',
      cc: ['boss@example.com'],
      bcc: ['audit@example.com'],
      importance: 'high',
      headers: { 'x-ticket': 'T-7' },
      workItemRef: 'WI-77',
      attachments: [{ name: 'a.pdf', contentType: 'application/pdf', contentBytes: pdf.toString('base64') }],
    })
    const before = fake.graphRequests.length
    expect(await t.app.dispatcher.runOnce()).toBe(1)

    const sent = await message(id)
    expect(sent).toMatchObject({ status: 'sent', attempts: 1, lastError: null })
    expect(sent.sentAt).toBeTruthy()
    const stored = await row(id)
    expect(sent.graphIds).toEqual({ draftId: stored.graphIds.draftId, internetMessageId: stored.graphIds.internetMessageId })
    expect(sent.graphIds.draftId).toBeTruthy()
    expect(sent.graphIds.internetMessageId).toBe(deliveriesOf(sent.subject)[0]?.internetMessageId)
    expect(stored.leaseOwner).toBeNull()

    const delivered = deliveriesOf(sent.subject)
    expect(delivered).toHaveLength(1)
    expect(delivered[0]).toMatchObject({
      via: 'draft',
      from: 'help@contoso.com',
      sender: 'support@contoso.com',
      cc: ['boss@example.com'],
      bcc: ['audit@example.com'],
      replyTo: ['help+WI-77@contoso.com'],
      importance: 'high',
    })
    expect(delivered[0]!.headers).toEqual(expect.arrayContaining([{ name: 'x-ticket', value: 'T-7' }, { name: 'x-mailgate-work-item', value: 'WI-77' }]))
    expect(delivered[0]!.attachments).toEqual([expect.objectContaining({ name: 'a.pdf', size: pdf.length, sha256: sha256(pdf) })])

    const calls = fake.graphRequests.slice(before).filter((request) => request.path.includes('/messages'))
    expect(calls.map((request) => `${request.method} ${request.path.split('/').slice(-1)[0]}`)).toEqual(['POST messages', 'POST send'])
    expect(calls.every((request) => request.prefer === 'IdType="ImmutableId"')).toBe(true)
    expect(await eventsOf(id)).toEqual(['message.sent'])

    const viaGraphql = await graphql(t.app, t.adminKey, 'query ($id: ID!) { message(id: $id) { status attempts graphIds { draftId internetMessageId } nextAttemptAt } }', { id })
    expect(viaGraphql.body.data.message).toEqual({ status: 'sent', attempts: 1, graphIds: sent.graphIds, nextAttemptAt: null })
  })

  it('uploads a large attachment through an upload session in pieces of at most 4 MB, without our token', async () => {
    const big = randomBytes(9 * 1024 * 1024 + 123)
    const small = randomBytes(1000)
    const id = await submit({
      attachments: [
        { name: 'big.bin', contentBytes: big.toString('base64') },
        { name: 'logo.png', contentType: 'image/png', contentBytes: small.toString('base64'), isInline: true, contentId: 'logo' },
      ],
    })
    const before = fake.graphRequests.length
    await t.app.dispatcher.runOnce()
    expect((await message(id)).status).toBe('sent')
    const puts = fake.graphRequests.slice(before).filter((request) => request.method === 'PUT')
    expect(puts.length).toBe(3)
    expect(puts.every((request) => request.host === 'outlook.office.com' && request.hadAuthorization === false)).toBe(true)
    const [delivered] = deliveriesOf((await message(id)).subject)
    expect(delivered!.attachments).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ name: 'big.bin', size: big.length, sha256: sha256(big) }),
        expect.objectContaining({ name: 'logo.png', isInline: true, contentId: 'logo', sha256: sha256(small) }),
      ]),
    )
  })
})

describe('the sendMail path (Mail.Send only)', () => {
  it('sends with one sendMail request', async () => {
    const id = await submit({ from: 'notify@contoso.com', attachments: [{ name: 'n.txt', contentBytes: Buffer.from('note').toString('base64') }] })
    await t.app.dispatcher.runOnce()
    expect(await message(id)).toMatchObject({ status: 'sent', attempts: 1 })
    const [delivered] = deliveriesOf((await message(id)).subject)
    expect(delivered).toMatchObject({ via: 'sendMail', from: 'notify@contoso.com', attachments: [expect.objectContaining({ name: 'n.txt', size: 4 })] })
    expect(notify.sent.at(-1)?.savedToSentItems).toBe(true)
  })

  it('marks an ambiguous outcome uncertain instead of sending again, and a person can retry it', async () => {
    const id = await submit({ from: 'notify@contoso.com' })
    fake.failGraphRequests({ method: 'POST', path: /\/sendMail$/ }, { kind: 'lost-response' })
    await t.app.dispatcher.runOnce()
    const uncertain = await message(id)
    expect(uncertain).toMatchObject({ status: 'uncertain', lastError: { code: 'NETWORK_ERROR' } })
    expect(uncertain.lastError.hint).toMatch(/Sent Items/)
    expect(deliveriesOf(uncertain.subject)).toHaveLength(1) // it did go out; Mailgate did not send it twice
    await t.app.dispatcher.runOnce()
    expect(deliveriesOf(uncertain.subject)).toHaveLength(1)
    expect(await eventsOf(id)).toEqual(['message.uncertain'])

    const retried = await t.app.inject({ method: 'POST', url: `/v1/messages/${id}/retry`, headers: bearer(sender) })
    expect(retried.json()).toMatchObject({ status: 'queued', attempts: 0 })
    await t.app.dispatcher.runOnce()
    expect((await message(id)).status).toBe('sent')
    expect(deliveriesOf(uncertain.subject)).toHaveLength(2) // a person decided to send it again
  })
})

describe('failures', () => {
  it('honours Retry-After on 429 without counting an attempt, pausing the mailbox for every message', async () => {
    const first = await submit()
    const second = await submit()
    fake.failGraphRequests({ method: 'POST', path: /\/messages$/ }, { kind: 'status', status: 429, retryAfter: 120 })
    await t.app.dispatcher.runOnce()
    const throttled = [await row(first), await row(second)].find((candidate) => candidate.lastError?.code === 'THROTTLED')!
    expect(throttled).toMatchObject({ status: 'queued', attempts: 0 })
    expect(throttled.nextAttemptAt.getTime() - clock().getTime()).toBeGreaterThan(110_000)

    const third = await submit()
    await t.app.dispatcher.runOnce()
    expect((await row(third)).status).toBe('queued') // the mailbox is paused for everyone

    clockOffsetMs += 121_000
    await t.app.dispatcher.runOnce()
    await t.app.dispatcher.runOnce()
    for (const id of [first, second, third]) expect((await message(id)).status).toBe('sent')
    expect(deliveriesOf((await message(throttled.id)).subject)).toHaveLength(1)
  })

  it('fails at once on a permanent refusal, with the Graph code and a hint, and removes the draft', async () => {
    support.sendAs.delete('help@contoso.com')
    try {
      const id = await submit({ from: 'help@contoso.com' })
      await t.app.dispatcher.runOnce()
      const failed = await message(id)
      expect(failed).toMatchObject({ status: 'failed', attempts: 1, lastError: { code: 'SEND_AS_DENIED', graphCode: 'ErrorSendAsDenied', status: 403 } })
      expect(failed.lastError.hint).toMatch(/Send As/)
      expect(await eventsOf(id)).toEqual(['message.failed'])
      const draftId = (await row(id)).graphIds.draftId
      expect([...fake.messages.values()].some((stored) => stored.id === draftId)).toBe(false)
    } finally {
      support.sendAs.add('help@contoso.com')
    }
  })

  it('retries transient failures with backoff, then sends', async () => {
    const id = await submit()
    fake.failGraphRequests({ method: 'POST', path: /\/messages$/ }, { kind: 'status', status: 500 })
    await t.app.dispatcher.runOnce()
    const retrying = await row(id)
    expect(retrying).toMatchObject({ status: 'queued', attempts: 1, lastError: { code: 'GRAPH_UNAVAILABLE' } })
    const delay = retrying.nextAttemptAt.getTime() - clock().getTime()
    expect(delay).toBeGreaterThan(400)
    expect(delay).toBeLessThanOrEqual(1_000)
    clockOffsetMs += 1_000
    await t.app.dispatcher.runOnce()
    expect(await message(id)).toMatchObject({ status: 'sent', attempts: 2 })
  })

  it('gives up after the attempt limit', async () => {
    const id = await submit()
    for (let attempt = 0; attempt < settings.maxAttempts; attempt++) {
      fake.failGraphRequests({ method: 'POST', path: /\/messages$/ }, { kind: 'network' })
      await t.app.dispatcher.runOnce()
      clockOffsetMs += settings.maxBackoffMs
    }
    const failed = await message(id)
    expect(failed).toMatchObject({ status: 'failed', attempts: settings.maxAttempts, lastError: { code: 'NETWORK_ERROR' } })
    expect(failed.lastError.message).toMatch(/gave up after 3 attempts/)
    expect(deliveriesOf(failed.subject)).toHaveLength(0)
  })

  it('after an ambiguous send, checks the draft in the mailbox instead of sending blindly', async () => {
    const delivered = await submit()
    fake.failGraphRequests({ method: 'POST', path: /\/send$/ }, { kind: 'lost-response', status: 504 })
    await t.app.dispatcher.runOnce()
    expect((await row(delivered)).status).toBe('queued')
    clockOffsetMs += settings.settleMs
    await t.app.dispatcher.runOnce()
    const checked = await message(delivered)
    expect(checked.status).toBe('sent')
    expect(deliveriesOf(checked.subject)).toHaveLength(1)

    const notDelivered = await submit()
    fake.failGraphRequests({ method: 'POST', path: /\/send$/ }, { kind: 'network' })
    await t.app.dispatcher.runOnce()
    clockOffsetMs += settings.settleMs
    await t.app.dispatcher.runOnce()
    const resent = await message(notDelivered)
    expect(resent.status).toBe('sent')
    expect(deliveriesOf(resent.subject)).toHaveLength(1)
  })

  it('after repeated unanswered sends of a draft that stayed unsent, fails and removes the draft', async () => {
    const id = await submit()
    for (let attempt = 0; attempt < settings.maxAttempts; attempt++) {
      fake.failGraphRequests({ method: 'POST', path: /\/send$/ }, { kind: 'network' })
      await t.app.dispatcher.runOnce()
      clockOffsetMs += settings.settleMs
    }
    await t.app.dispatcher.runOnce()
    const failed = await message(id)
    expect(failed).toMatchObject({ status: 'failed', attempts: settings.maxAttempts, lastError: { code: 'NETWORK_ERROR' } })
    expect(failed.lastError.message).toMatch(/Not sent after 3 attempts; the draft was removed/)
    expect(deliveriesOf(failed.subject)).toHaveLength(0)
    expect(fake.findMessage(failed.graphIds.draftId)).toBeUndefined()
  })

  it('repeated authentication failures disable the connector; its messages wait instead of failing', async () => {
    const ids = [await submit(), await submit(), await submit(), await submit()]
    fake.failGraphRequests({ path: /\/support(@|%40)contoso\.com\// }, ...ids.map(() => ({ kind: 'status' as const, status: 401, code: 'InvalidAuthenticationToken', message: 'Access token validation failure.' })))
    await t.app.dispatcher.runOnce()
    const connector = (await t.app.inject({ method: 'GET', url: `/v1/connectors/${supportConnector}`, headers: bearer(t.adminKey) })).json()
    expect(connector.enabled).toBe(false)
    expect(connector.disabledReason).toMatch(/AUTHENTICATION_FAILED/)
    clockOffsetMs += 60_000
    expect(await t.app.dispatcher.runOnce()).toBe(0)
    for (const id of ids) expect((await row(id)).status).toBe('queued')

    const setup = mailSetup(t)
    await setup.admin('POST', `/v1/connectors/${supportConnector}/test`)
    expect((await setup.admin('POST', `/v1/connectors/${supportConnector}/enable`)).body.enabled).toBe(true)
    await t.app.dispatcher.runOnce()
    for (const id of ids) expect((await row(id)).status).toBe('sent')
  })
})

describe('pacing', () => {
  it('keeps at most 4 requests in flight per mailbox and spends one budget token per message', async () => {
    fake.latencyMs = 30
    fake.maxConcurrentPerMailbox.clear()
    try {
      const ids = await Promise.all(Array.from({ length: 10 }, () => submit()))
      const paced = extraDispatcher(t, { owner: 'paced', settings: { ...settings, perMinute: 6 }, clock })
      await t.db.database.db.delete(schema.mailboxSendBudgets)
      expect(await paced.runOnce()).toBe(4)
      expect(await paced.runOnce()).toBe(2)
      expect(await paced.runOnce()).toBe(0) // budget spent: 6 a minute
      expect(fake.maxConcurrentPerMailbox.get('support@contoso.com')).toBe(4)
      clockOffsetMs += 60_000
      while ((await paced.runOnce()) > 0);
      for (const id of ids) expect((await row(id)).status).toBe('sent')
      expect(fake.maxConcurrentPerMailbox.get('support@contoso.com')).toBeLessThanOrEqual(4)
    } finally {
      fake.latencyMs = 0
    }
  })

  it('claims from several mailboxes at once, yet never starts more sends than the instance allows', async () => {
    const ids = await Promise.all(Array.from({ length: 8 }, (_, i) => submit({ from: i % 2 ? 'support@contoso.com' : 'notify@contoso.com' })))
    const narrow = extraDispatcher(t, { owner: 'narrow', settings: { ...settings, perMinute: 1000, maxConcurrentSends: 3, claimConcurrency: 2 }, clock })
    const started: number[] = []
    for (let round = 0; round < 8 && started.reduce((sum, n) => sum + n, 0) < 8; round++) started.push(await narrow.runOnce())
    expect(started[0]).toBe(3)
    expect(Math.max(...started)).toBe(3)
    expect(started.reduce((sum, n) => sum + n, 0)).toBe(8)
    for (const id of ids) {
      const sent = await message(id)
      expect(sent.status).toBe('sent')
      expect(deliveriesOf(sent.subject)).toHaveLength(1)
    }
  })

  it.each([2, 3])('%i dispatchers on one database never send a message twice', async (count) => {
    const ids = await Promise.all(Array.from({ length: 24 }, (_, i) => submit({ from: i % 2 ? 'support@contoso.com' : 'notify@contoso.com' })))
    const dispatchers = Array.from({ length: count }, (_, i) => extraDispatcher(t, { owner: `peer-${count}-${i}`, settings: { ...settings, perMinute: 1000 }, clock }))
    for (let round = 0; round < 10; round++) {
      if ((await Promise.all(dispatchers.map((dispatcher) => dispatcher.runOnce()))).every((count) => count === 0)) break
    }
    for (const id of ids) {
      const sent = await message(id)
      expect(sent.status).toBe('sent')
      expect(deliveriesOf(sent.subject)).toHaveLength(1)
    }
  })
})

describe('housekeeping', () => {
  it('removes staged attachment content nobody took after the grace period, and expired idempotency keys, keeping the rest', async () => {
    const { attachments } = t.app.services
    const staged = await attachments.write(t.db.database.db, randomBytes(10))
    const kept = await submit({ attachments: [{ name: 'k.txt', contentBytes: Buffer.from('keep').toString('base64') }] })
    await t.app.inject({ method: 'POST', url: '/v1/messages', headers: { ...bearer(sender), 'idempotency-key': 'old-key' }, payload: { from: 'support@contoso.com', to: ['customer@contoso.com'], subject: 's', body: { contentType: 'text', content: 'b' } } })

    expect(await t.app.housekeeping.run(new Date())).toMatchObject({ blobs: 0, idempotencyKeys: 0, events: 0, webhookDeliveries: 0 })
    // An upload may still be streaming in: staged content is kept for hours.
    expect((await t.app.housekeeping.run(new Date(Date.now() + 5 * 3_600_000))).blobs).toBe(0)
    const later = await t.app.housekeeping.run(new Date(Date.now() + 25 * 3_600_000))
    expect(later.blobs).toBeGreaterThanOrEqual(1)
    expect(later.idempotencyKeys).toBeGreaterThanOrEqual(1)
    const blobs = await t.db.database.db.select({ id: schema.attachmentBlobs.id }).from(schema.attachmentBlobs)
    expect(blobs.some((blob) => blob.id === staged.blobId)).toBe(false)
    const [keptAttachment] = await t.db.database.db.select().from(schema.outboundAttachments).where(eq(schema.outboundAttachments.messageId, kept))
    expect(blobs.some((blob) => blob.id === keptAttachment!.blobId)).toBe(true)
  })
})
