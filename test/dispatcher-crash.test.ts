import { randomBytes } from 'node:crypto'
import { eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { schema } from '../src/database/index.ts'
import type { DispatchStep } from '../src/modules/outbound/dispatcher.ts'
import { bearer, buildTestApp, type TestApp } from './support/app.ts'
import { FakeMicrosoft, type FakeMailbox } from './support/fake-microsoft.ts'
import { extraDispatcher, mailSetup } from './support/mail.ts'

/**
 * A dispatcher stops dead at every step of a send: its process is frozen there (the step
 * never returns and its lease is no longer renewed where the others can see it). Another
 * dispatcher recovers once the lease has run out. Then the frozen one wakes up, as a paused
 * VM would, and carries on. Every message must end sent exactly once, or failed/uncertain
 * with a reason — never lost, never sent twice.
 */

const fake = new FakeMicrosoft()
let t: TestApp
let customer: FakeMailbox
let sender: string
const settings = { leaseMs: 30_000, settleMs: 5_000, backoffMs: 1_000, maxBackoffMs: 2_000, maxAttempts: 5, perMinute: 1000 }

beforeAll(async () => {
  fake.start()
  const tenant = fake.addTenant()
  const drafts = fake.registerApp(tenant, { secrets: [{ value: 'drafts', expiresAt: new Date(Date.now() + 86_400_000) }] })
  const sendOnly = fake.registerApp(tenant, { roles: ['Mail.Send'], secrets: [{ value: 'send-only', expiresAt: new Date(Date.now() + 86_400_000) }] })
  fake.addMailbox(tenant, 'support@contoso.com')
  fake.addMailbox(tenant, 'notify@contoso.com')
  customer = fake.addMailbox(tenant, 'customer@contoso.com')
  t = await buildTestApp({ messageSizeLimit: 10 * 1024 * 1024, dispatcher: { autostart: false, settings } })
  sender = await t.keyWith('mail:send')
  const setup = mailSetup(t)
  await setup.outgoing(await setup.integration(tenant.id, drafts.clientId, 'drafts'), 'support@contoso.com')
  await setup.outgoing(await setup.integration(tenant.id, sendOnly.clientId, 'send-only'), 'notify@contoso.com')
})
afterAll(async () => {
  await t.close()
  fake.stop()
})

async function submit(from: string, attachments: unknown[] = []): Promise<{ id: string; subject: string }> {
  const subject = `crash ${randomBytes(6).toString('hex')}`
  const response = await t.app.inject({
    method: 'POST',
    url: '/v1/messages',
    headers: bearer(sender),
    payload: { from, to: ['customer@contoso.com'], subject, body: { contentType: 'text', content: 'x' }, attachments },
  })
  expect(response.statusCode, response.body).toBe(202)
  return { id: response.json().id, subject }
}

async function statusOf(id: string) {
  const [row] = await t.db.database.db.select().from(schema.outboundMessages).where(eq(schema.outboundMessages.id, id))
  return row!
}

/**
 * Runs a message until the first dispatcher freezes at `step`, recovers it with a second one
 * whose clock is past the lease (and past the settle time, in as many rounds as it needs),
 * then wakes the first one up.
 */
async function crashAt(step: DispatchStep, message: { id: string }) {
  let frozen!: () => void
  let wake!: () => void
  const reached = new Promise<void>((resolve) => (frozen = resolve))
  const woken = new Promise<void>((resolve) => (wake = resolve))
  const doomed = extraDispatcher(t, {
    owner: `doomed-${step}`,
    settings,
    onStep: async (at, id) => {
      if (at !== step || id !== message.id) return
      frozen()
      await woken
    },
  })
  const doomedRun = doomed.runOnce()
  await reached

  let offset = 0
  const rescuer = extraDispatcher(t, { owner: `rescuer-${step}`, settings, clock: () => new Date(Date.now() + offset) })
  for (let round = 0; round < 4; round++) {
    offset += settings.leaseMs + settings.settleMs + 1_000
    await rescuer.runOnce()
    if (['sent', 'failed', 'uncertain'].includes((await statusOf(message.id)).status)) break
  }
  wake()
  await doomedRun
  // Whatever the woken dispatcher did, a later round changes nothing.
  offset += settings.leaseMs * 2
  await rescuer.runOnce()
  return statusOf(message.id)
}

const big = () => [{ name: 'big.bin', contentBytes: randomBytes(3_500_000).toString('base64') }]

describe('a dispatcher killed mid-send, draft path', () => {
  const steps: DispatchStep[] = ['claimed', 'draft-returned', 'draft-created', 'uploaded', 'send-requested', 'sent', 'recorded']
  for (const step of steps) {
    it(`stopped at "${step}": sent exactly once`, async () => {
      const message = await submit('support@contoso.com', big())
      const final = await crashAt(step, message)
      expect(final.status).toBe('sent')
      expect(customer.received.filter((received) => received.subject === message.subject)).toHaveLength(1)
      expect(final.leaseOwner).toBeNull()
    })
  }

  it('a draft orphaned by a crash before its id was stored is never sent', async () => {
    const message = await submit('support@contoso.com')
    await crashAt('draft-returned', message)
    const drafts = [...fake.messages.values()].filter((stored) => stored.subject === message.subject && stored.isDraft)
    expect(drafts.length).toBeLessThanOrEqual(1)
    expect(customer.received.filter((received) => received.subject === message.subject)).toHaveLength(1)
  })
})

describe('a dispatcher killed mid-send, sendMail path (Mail.Send only)', () => {
  it('stopped before the request: sent exactly once', async () => {
    const message = await submit('notify@contoso.com')
    const final = await crashAt('claimed', message)
    expect(final.status).toBe('sent')
    expect(customer.received.filter((received) => received.subject === message.subject)).toHaveLength(1)
  })

  for (const step of ['send-requested', 'sent'] as DispatchStep[]) {
    it(`stopped at "${step}": uncertain with a reason, never sent twice`, async () => {
      const message = await submit('notify@contoso.com')
      const final = await crashAt(step, message)
      // The frozen dispatcher's own send (if it woke before the check) is the only one.
      expect(['uncertain', 'sent']).toContain(final.status)
      if (final.status === 'uncertain') expect(final.lastError?.code).toBe('SEND_OUTCOME_UNKNOWN')
      expect(customer.received.filter((received) => received.subject === message.subject).length).toBeLessThanOrEqual(1)
    })
  }

  it('stopped at "recorded": sent once, nothing left to do', async () => {
    const message = await submit('notify@contoso.com')
    const final = await crashAt('recorded', message)
    expect(final.status).toBe('sent')
    expect(customer.received.filter((received) => received.subject === message.subject)).toHaveLength(1)
  })
})

describe('a dispatcher taken for dead while it is still sending (its instance missed its beats)', () => {
  it('does not start the message a second time when it claims its own freed lease back: one draft, one copy', async () => {
    const message = await submit('support@contoso.com')
    let frozen!: () => void
    let wake!: () => void
    const reached = new Promise<void>((resolve) => (frozen = resolve))
    const woken = new Promise<void>((resolve) => (wake = resolve))
    const stalled = extraDispatcher(t, {
      owner: 'stalled/dispatcher',
      settings,
      onStep: async (at, id) => {
        if (at !== 'draft-returned' || id !== message.id) return
        frozen()
        await woken
      },
    })
    const first = stalled.runOnce()
    await reached
    // What the reaper does to a silent instance: its lease ends at once, owner unchanged.
    await t.db.database.db.update(schema.outboundMessages).set({ leaseExpiresAt: new Date(0) }).where(eq(schema.outboundMessages.id, message.id))
    const second = stalled.runOnce()
    for (let tries = 0; (await statusOf(message.id)).leaseExpiresAt!.getTime() === 0; tries++) {
      if (tries > 200) throw new Error('the lease was not claimed back')
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    wake()
    await Promise.all([first, second])
    const final = await statusOf(message.id)
    expect(final.status).toBe('sent')
    expect(customer.received.filter((received) => received.subject === message.subject)).toHaveLength(1)
    expect(fake.folderMessages('support@contoso.com', 'drafts').filter((draft) => draft.subject === message.subject)).toEqual([])
  })
})
