import { randomUUID } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { sql } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bearer, buildTestApp, graphql, type TestApp } from './support/app.ts'

let t: TestApp
let receiver: Server
let receiverUrl: string
let failing = false
const received: string[] = []
let offsetMs = 0
const clock = () => new Date(Date.now() + offsetMs)

beforeAll(async () => {
  receiver = createServer((request, response) => {
    received.push(String(request.headers['webhook-id']))
    request.resume().on('end', () => response.writeHead(failing ? 503 : 200).end())
  })
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve))
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`
  t = await buildTestApp({ clock, webhooks: { autostart: false, allowHttp: true, allowedNetworks: ['127.0.0.0/8'] } })
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

async function call(method: 'GET' | 'POST' | 'PATCH', url: string, payload?: object) {
  const response = await t.app.inject({ method, url, headers: bearer(t.adminKey), ...(payload ? { payload } : {}) })
  return { status: response.statusCode, type: response.headers['content-type'], body: response.json() }
}

const feed = (after?: string) => call('GET', `/v1/events?limit=500${after ? `&after=${after}` : ''}`)
const ids = (page: { body: { items: { id: string }[] } }) => page.body.items.map((item) => item.id)
/** Housekeeping as it runs 31 days from now: everything recorded so far is past EVENT_RETENTION_DAYS (30). */
const monthLater = () => t.app.housekeeping.run(new Date(clock().getTime() + 31 * 86_400_000))
const deliverAll = async () => {
  while ((await t.app.webhookDelivery.runOnce()) > 0);
}

describe('event retention', () => {
  let endpointId: string
  let c: { cursor: string }

  it('removes old events oldest first but keeps what an enabled webhook has yet to get; a cursor into removed events is 410 CURSOR_EXPIRED, never a silent gap', async () => {
    await record(3)
    const [a, , third] = (await feed()).body.items as { id: string; cursor: string }[]
    c = third!
    const created = await call('POST', '/v1/webhooks', { url: receiverUrl, eventTypes: ['*'] })
    expect(created.status).toBe(201)
    endpointId = created.body.endpoint.id
    await record(2)
    failing = true
    await deliverAll() // the first fails and waits for its retry; the second waits behind it
    const waiting = ids(await feed(c.cursor))
    expect(waiting).toHaveLength(2)

    expect(await t.app.housekeeping.run(clock())).toMatchObject({ events: 0 }) // nothing is 30 days old yet
    expect((await monthLater()).events).toBe(3)
    expect(ids(await feed())).toEqual(waiting)
    expect(ids(await feed(c.cursor))).toEqual(waiting)
    const expired = await feed(a!.cursor)
    expect(expired).toMatchObject({ status: 410, type: expect.stringContaining('application/problem+json'), body: { code: 'CURSOR_EXPIRED' } })
    expect(expired.body.detail).toContain('leave `after` out')
    const viaGraphql = (await graphql(t.app, t.adminKey, `{ events(after: "${a!.cursor}") { next } }`)).body
    expect(viaGraphql.errors?.[0]?.extensions).toMatchObject({ code: 'CURSOR_EXPIRED' })

    // Delivered at last; then they, and the ended deliveries with their attempts, go too.
    failing = false
    offsetMs += 10_000
    await deliverAll()
    expect(received.slice(-2)).toEqual(waiting)
    const last = (await feed(c.cursor)).body.items.at(-1) as { cursor: string }
    expect(await monthLater()).toMatchObject({ events: 2, webhookDeliveries: 2 })
    expect((await call('GET', `/v1/webhooks/${endpointId}/deliveries`)).body.items).toEqual([])
    expect(ids(await feed())).toEqual([])
    expect((await feed(c.cursor)).status).toBe(410)
    // A reader who had read everything removed goes on with what comes next.
    await record(1)
    expect(ids(await feed(last.cursor))).toHaveLength(1)
    await deliverAll()
  })

  it('a disabled endpoint holds nothing: its waiting deliveries end once their events are removed, and cannot be replayed', async () => {
    expect((await call('PATCH', `/v1/webhooks/${endpointId}`, { enabled: false })).status).toBe(200)
    await record(1)
    await deliverAll() // fanned out: waits for the endpoint
    const [waiting] = (await call('GET', `/v1/webhooks/${endpointId}/deliveries?limit=1`)).body.items as { id: string; state: string }[]
    expect(waiting!.state).toBe('pending')
    expect((await monthLater()).events).toBeGreaterThanOrEqual(1)
    const [ended] = (await call('GET', `/v1/webhooks/${endpointId}/deliveries?limit=1`)).body.items as { id: string; state: string; lastError: string }[]
    expect(ended).toMatchObject({ id: waiting!.id, state: 'failed', lastError: expect.stringContaining('no longer kept') })
    const replay = await call('POST', `/v1/webhooks/${endpointId}/deliveries/${waiting!.id}/replay`, {})
    expect(replay).toMatchObject({ status: 410, body: { code: 'EVENT_NOT_KEPT' } })
  })

  it('a delivery whose event is gone (a replay that raced the trimming) ends instead of holding its endpoint back', async () => {
    expect((await call('PATCH', `/v1/webhooks/${endpointId}`, { enabled: true })).status).toBe(200)
    await t.app.database.db.execute(sql`insert into webhook_deliveries (id, endpoint_id, event_id, event_tx_id) values (${randomUUID()}, ${endpointId}, ${randomUUID()}, 1)`)
    await record(1)
    const blocked = (await feed()).body.items.at(-1) as { id: string }
    await deliverAll()
    expect(received).not.toContain(blocked.id)
    expect((await t.app.housekeeping.run(clock())).webhookDeliveries).toBe(1)
    await deliverAll()
    expect(received.at(-1)).toBe(blocked.id)
  })
})
