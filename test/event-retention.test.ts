import { randomUUID } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { sql } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bearer, buildTestApp, graphql, type TestApp } from './support/app.ts'

let t: TestApp
let receiver: Server
let receiverUrl: string
const received: string[] = []

beforeAll(async () => {
  receiver = createServer((request, response) => {
    received.push(String(request.headers['webhook-id']))
    request.resume().on('end', () => response.end('thanks'))
  })
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve))
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`
  t = await buildTestApp({ webhooks: { autostart: false, allowHttp: true, allowedNetworks: ['127.0.0.0/8'] } })
})
afterAll(async () => {
  await t.close()
  receiver.closeAllConnections()
  await new Promise((resolve) => receiver.close(resolve))
})

async function record(count: number): Promise<void> {
  for (let n = 0; n < count; n++) {
    const emailId = randomUUID()
    await t.app.database.db.transaction((tx) =>
      t.app.services.events.record(tx, { type: 'email.duplicate', subjectType: 'inbound_email', subjectId: emailId, payload: { emailId, connectorId: randomUUID(), duplicateOf: randomUUID(), way: 'source' } }),
    )
  }
}

async function feed(after?: string) {
  const response = await t.app.inject({ method: 'GET', url: `/v1/events?limit=500${after ? `&after=${after}` : ''}`, headers: bearer(t.adminKey) })
  return { status: response.statusCode, type: response.headers['content-type'], body: response.json() }
}

const ids = (page: { body: { items: { id: string }[] } }) => page.body.items.map((item) => item.id)
/** Housekeeping as it runs 31 days from now: everything recorded so far is past EVENT_RETENTION_DAYS (30). */
const monthLater = () => t.app.housekeeping.run(new Date(Date.now() + 31 * 86_400_000))

describe('event retention', () => {
  it('removes old events oldest first but keeps what a webhook has yet to get; a cursor into removed events is 410 CURSOR_EXPIRED, never a silent gap', async () => {
    await record(3)
    const early = await feed()
    const [a, , c] = early.body.items as { id: string; cursor: string }[]
    const created = await t.app.inject({ method: 'POST', url: '/v1/webhooks', headers: bearer(t.adminKey), payload: { url: receiverUrl, eventTypes: ['*'], enabled: false } })
    expect(created.statusCode).toBe(201)
    const endpointId = created.json().endpoint.id as string
    await record(2)
    await t.app.webhookDelivery.runOnce() // fans out: the disabled endpoint's deliveries wait
    const waiting = ids(await feed(c!.cursor))
    expect(waiting).toHaveLength(2)

    expect(await t.app.housekeeping.run(new Date())).toMatchObject({ events: 0 }) // nothing is 30 days old yet
    expect((await monthLater()).events).toBe(3)
    // The two the disabled endpoint has yet to get are kept, and read on from where a reader was.
    expect(ids(await feed())).toEqual(waiting)
    expect(ids(await feed(c!.cursor))).toEqual(waiting)
    const expired = await feed(a!.cursor)
    expect(expired).toMatchObject({ status: 410, type: expect.stringContaining('application/problem+json'), body: { code: 'CURSOR_EXPIRED' } })
    expect(expired.body.detail).toContain('leave `after` out')
    const viaGraphql = (await graphql(t.app, t.adminKey, `{ events(after: "${a!.cursor}") { next } }`)).body
    expect(viaGraphql.errors?.[0]?.extensions).toMatchObject({ code: 'CURSOR_EXPIRED' })

    // Enabled again, the endpoint gets them; then they, and the ended deliveries, go too.
    expect((await t.app.inject({ method: 'PATCH', url: `/v1/webhooks/${endpointId}`, headers: bearer(t.adminKey), payload: { enabled: true } })).statusCode).toBe(200)
    while ((await t.app.webhookDelivery.runOnce()) > 0);
    expect(received).toEqual(waiting)
    const last = (await feed(c!.cursor)).body.items.at(-1) as { cursor: string }
    const later = await monthLater()
    expect(later).toMatchObject({ events: 2, webhookDeliveries: 2 })
    expect((await t.app.inject({ method: 'GET', url: `/v1/webhooks/${endpointId}/deliveries`, headers: bearer(t.adminKey) })).json().items).toEqual([])
    expect(ids(await feed())).toEqual([])
    expect((await feed(c!.cursor)).status).toBe(410)
    // A reader who had read everything removed goes on with what comes next.
    await record(1)
    expect(ids(await feed(last.cursor))).toHaveLength(1)
    while ((await t.app.webhookDelivery.runOnce()) > 0);

    // A replay that raced the trimming would leave a delivery whose event is gone, first in
    // feed order: housekeeping ends it as failed instead of letting it hold the endpoint back.
    await t.app.database.db.execute(sql`insert into webhook_deliveries (id, endpoint_id, event_id, event_tx_id) values (${randomUUID()}, ${endpointId}, ${randomUUID()}, 1)`)
    await record(1)
    const [blocked] = (await feed(last.cursor)).body.items.slice(-1) as { id: string }[]
    while ((await t.app.webhookDelivery.runOnce()) > 0);
    expect(received).not.toContain(blocked!.id)
    expect((await t.app.housekeeping.run(new Date())).webhookDeliveries).toBe(1)
    while ((await t.app.webhookDelivery.runOnce()) > 0);
    expect(received.at(-1)).toBe(blocked!.id)
  })
})
