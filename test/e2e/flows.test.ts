import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MixedLoad } from '../../src/sandbox/load.ts'
import type { Rig } from '../../src/sandbox/rig.ts'
import { DEMO } from '../../src/sandbox/world.ts'
import { eventually, startRig } from './support.ts'

// One Mailgate server process (PGlite, or PostgreSQL with TEST_DATABASE_URL) against the
// Microsoft stand-in over HTTPS, wired up through its API as an admin would.
let rig: Rig
let close: (failed?: boolean) => Promise<void>
let failed = false

beforeAll(async () => {
  ;({ rig, close } = await startRig({ customers: 2 }))
})
afterAll(async () => close(failed))

interface FeedEvent {
  id: string
  type: string
  subject: { id: string }
  data: Record<string, unknown>
}

async function feed(types: string): Promise<FeedEvent[]> {
  const page = await rig.api<{ items: FeedEvent[] }>('GET', `/v1/events?types=${types}&limit=500`)
  expect(page.status).toBe(200)
  return page.body.items
}

/** The event of `type` the feed has that `match` picks, once the webhook receiver also has it. */
async function delivered(type: string, match: (event: FeedEvent) => boolean): Promise<FeedEvent> {
  return eventually(`${type} in the feed and at the webhook`, async () => {
    const event = (await feed(type)).find(match)
    return event && rig.receiver.events.has(event.id) ? event : undefined
  })
}

async function send(body: Record<string, unknown>): Promise<string> {
  const answer = await rig.api<{ id: string }>('POST', '/v1/messages', { from: DEMO.alias, body: { contentType: 'text', content: 'Hello from support.' }, ...body })
  expect(answer.status).toBe(202)
  return answer.body.id
}

function track<T>(run: () => Promise<T>): () => Promise<T> {
  return async () => {
    try {
      return await run()
    } catch (error) {
      failed = true
      throw error
    }
  }
}

describe('end to end, real processes', () => {
  it(
    'a customer writes in (work requested); an answer sent from the alias reaches their mailbox with a Message-ID; their reply is synced, threads to the work item, and reaches the feed and the webhook',
    track(async () => {
      await rig.standIn.deliver(DEMO.incoming, { from: DEMO.customer, to: [DEMO.incoming], subject: 'Printer on fire', body: 'Help.', internetMessageId: '<first-request@fabrikam.example>' })
      const requested = await delivered('work_item.requested', (event) => event.data.subject === 'Printer on fire')
      expect(requested.data).toMatchObject({ from: DEMO.customer, processId: 'support' })

      const id = await send({ to: [DEMO.customer], subject: 'Re: Printer on fire', workItemRef: 'WI-1' })
      const sent = await delivered('message.sent', (event) => event.subject.id === id)
      expect(sent.data).toMatchObject({ from: DEMO.alias, workItemRef: 'WI-1' })
      const [answer] = rig.standIn.folderMessages(DEMO.customer, 'inbox').filter((message) => message.subject === 'Re: Printer on fire')
      expect(answer?.from).toBe(DEMO.alias)
      const message = (await rig.api<{ graphIds: { internetMessageId: string } }>('GET', `/v1/messages/${id}`)).body
      expect(answer!.internetMessageId).toBe(message.graphIds.internetMessageId)

      await rig.standIn.deliver(DEMO.incoming, {
        from: DEMO.customer,
        to: [DEMO.alias],
        subject: 'Re: Re: Printer on fire',
        body: 'It is out now, thanks.',
        headers: [
          { name: 'In-Reply-To', value: answer!.internetMessageId },
          { name: 'References', value: answer!.internetMessageId },
        ],
      })
      const appended = await delivered('work_item.message_appended', (event) => event.data.subject === 'Re: Re: Printer on fire')
      expect(appended.data).toMatchObject({ workItemRef: 'WI-1', from: DEMO.customer })
      expect((await feed('work_item.requested')).filter((event) => String(event.data.subject).includes('Printer on fire'))).toHaveLength(1)
    }),
  )

  it(
    'mail the alias sends to another mailbox Mailgate reads is synced from that mailbox and recognised as its own (ignored, own_mail): no work, no loop',
    track(async () => {
      const contoso = [...rig.standIn.tenants.values()].find((tenant) => tenant.domains.includes('contoso.example'))!
      rig.standIn.addMailbox(contoso, 'sales@contoso.example', { stableIds: true })
      const connector = await rig.api<{ id: string }>('POST', '/v1/connectors', {
        integrationId: rig.wired.integrationId,
        name: 'incoming sales',
        direction: 'incoming',
        primaryAddress: 'sales@contoso.example',
        fallbackRoute: { workItemType: 'ticket', processId: 'sales' },
      })
      expect(connector.status).toBe(201)
      expect((await rig.api<{ ok: boolean }>('POST', `/v1/connectors/${connector.body.id}/test`, {})).body.ok).toBe(true)
      expect((await rig.api('POST', `/v1/connectors/${connector.body.id}/enable`, {})).status).toBe(200)

      const id = await send({ to: ['sales@contoso.example'], subject: 'Internal hand-over', workItemRef: 'WI-9' })
      await delivered('message.sent', (event) => event.subject.id === id)
      const synced = await eventually('the hand-over synced from sales@', async () => {
        const page = await rig.api<{ items: { subject: string; outcome: string; outcomeReason: string | null }[] }>('GET', `/v1/inbound?connectorId=${connector.body.id}`)
        return page.body.items.find((item) => item.subject === 'Internal hand-over')
      })
      expect(synced).toMatchObject({ outcome: 'ignored', outcomeReason: 'own_mail' })
      expect((await feed('work_item.requested')).filter((event) => event.data.subject === 'Internal hand-over')).toEqual([])
    }),
  )

  it(
    "an out-of-office reply threads to its work item flagged automated and makes no new work; a send to an address the organisation does not have comes back as Exchange's NDR and marks the message bounced",
    track(async () => {
      const customer = rig.customers[1]!
      rig.standIn.findMailbox(customer)!.automaticReply = { message: 'Back on Monday.', repliedTo: new Set() }
      await send({ to: [customer], subject: 'Your invoice', workItemRef: 'WI-2' })
      const automatic = await delivered('work_item.message_appended', (event) => event.data.subject === 'Automatic reply: Your invoice')
      expect(automatic.data).toMatchObject({ workItemRef: 'WI-2', automated: true })
      expect((await feed('work_item.requested')).filter((event) => String(event.data.subject).startsWith('Automatic reply'))).toEqual([])

      const id = await send({ to: ['nobody@contoso.example'], subject: 'Hello?', workItemRef: 'WI-3' })
      const bounced = await delivered('message.bounced', (event) => event.subject.id === id)
      expect(bounced.data).toMatchObject({ workItemRef: 'WI-3', recipient: 'nobody@contoso.example', status: '5.1.10' })
      expect((await rig.api<{ status: string }>('GET', `/v1/messages/${id}`)).body.status).toBe('bounced')
    }),
  )

  it(
    'a throttling storm (Graph answering 429 with Retry-After to 25 requests in a row) loses and doubles nothing, in either direction',
    track(async () => {
      rig.standIn.failNextGraphRequests(...Array.from({ length: 25 }, () => ({ kind: 'status' as const, status: 429, code: 'ApplicationThrottled', retryAfter: 1 })))
      const load = new MixedLoad(rig, { sends: 20, arrivals: 20, perSecond: 10 })
      await load.run()
      await load.settle()
      const totals = await load.totals()
      console.log(`throttling storm totals: ${JSON.stringify(totals)}`)
      expect(rig.standIn.graphRequests.filter((request) => request.status === 429).length).toBeGreaterThanOrEqual(25)
      expect(totals.send).toMatchObject({ accepted: 20, byStatus: { sent: 20 }, lost: 0, doubled: 0, extraRecords: 0 })
      expect(totals.receive).toMatchObject({ delivered: 20, processedOnce: 20, lost: 0, doubled: 0, workItemRequests: 20, duplicateWorkItemRequests: 0 })
      expect(totals.events).toMatchObject({ missingFromFeed: 0, duplicatedInFeed: 0, missingAtWebhook: 0 })
      expect(load.errors).toEqual([])
      expect(rig.unexpectedExits).toEqual([])
    }),
  )
})
