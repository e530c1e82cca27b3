import { randomUUID } from 'node:crypto'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Webhook } from 'standardwebhooks'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { EventType } from '../db/schema.ts'
import { EVENT_SCHEMAS, PING_SCHEMA } from '../src/modules/events/schemas.ts'
import { createWebhookDelivery } from '../src/modules/webhooks/index.ts'
import { createAjv } from '../src/lib/validation.ts'
import { bearer, buildTestApp, graphql, type TestApp } from './support/app.ts'

/** A local receiver: answers from a script (default 200), records every request. */
class Receiver {
  readonly requests: { path: string; headers: IncomingHttpHeaders; body: string }[] = []
  answers: number[] = []
  /** How long it takes to answer; requests in flight meanwhile are counted per path. */
  delayMs = 0
  readonly mostAtOnce = new Map<string, number>()
  private readonly atOnce = new Map<string, number>()
  private server!: Server
  url = ''

  async start(): Promise<void> {
    this.server = createServer((request, response) => {
      const chunks: Buffer[] = []
      const path = request.url ?? ''
      this.atOnce.set(path, (this.atOnce.get(path) ?? 0) + 1)
      this.mostAtOnce.set(path, Math.max(this.mostAtOnce.get(path) ?? 0, this.atOnce.get(path)!))
      request.on('data', (chunk: Buffer) => chunks.push(chunk))
      request.on('end', () => {
        this.requests.push({ path, headers: request.headers, body: Buffer.concat(chunks).toString('utf8') })
        const status = this.answers.shift() ?? 200
        setTimeout(() => {
          this.atOnce.set(path, this.atOnce.get(path)! - 1)
          response.writeHead(status, { 'content-type': 'text/plain', 'x-receiver': 'test' }).end(status >= 300 ? `nope ${status}` : 'thanks')
        }, this.delayMs)
      })
    })
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hooks`
  }

  ids(path?: string): string[] {
    return this.requests.filter((request) => path === undefined || request.path === path).map((request) => String(request.headers['webhook-id']))
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise((resolve) => this.server.close(resolve))
  }
}

let t: TestApp
const receiver = new Receiver()
let offsetMs = 0
const clock = () => new Date(Date.now() + offsetMs)

beforeAll(async () => {
  await receiver.start()
  t = await buildTestApp({ clock, webhooks: { autostart: false, allowHttp: true, allowedNetworks: ['127.0.0.0/8'], settings: { leaseMs: 5_000 } } })
})
afterAll(async () => {
  await t.close()
  await receiver.stop()
})
beforeEach(() => {
  receiver.requests.length = 0
  receiver.answers = []
  receiver.delayMs = 0
  receiver.mostAtOnce.clear()
})

async function admin(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: unknown) {
  const response = await t.app.inject({ method, url, headers: bearer(t.adminKey), ...(payload === undefined ? {} : { payload: payload as object }) })
  return { status: response.statusCode, body: response.statusCode === 204 ? null : response.json() }
}

async function endpoint(input: Record<string, unknown> = {}) {
  const created = await admin('POST', '/v1/webhooks', { url: receiver.url, eventTypes: ['email.*'], ...input })
  expect(created.status, JSON.stringify(created.body)).toBe(201)
  return { id: created.body.endpoint.id as string, secret: created.body.secret as string }
}

/** Events as the modules record them: through the event log, in a transaction. */
async function record(count: number, type: EventType = 'email.duplicate'): Promise<string[]> {
  const ids: string[] = []
  for (let n = 0; n < count; n++) {
    const emailId = randomUUID()
    await t.app.database.db.transaction((tx) =>
      t.app.services.events.record(tx, { type, subjectType: 'inbound_email', subjectId: emailId, payload: { emailId, connectorId: randomUUID(), duplicateOf: randomUUID(), way: 'source' }, occurredAt: clock() }),
    )
  }
  const feed = await t.app.inject({ method: 'GET', url: '/v1/events?limit=500', headers: bearer(t.adminKey) })
  const all = feed.json().items as { id: string }[]
  ids.push(...all.slice(-count).map((event) => event.id))
  return ids
}

async function deliverAll(worker = t.app.webhookDelivery) {
  for (let run = 0; run < 20; run++) if ((await worker.runOnce()) === 0) return
}

function verified(secret: string, request: { headers: IncomingHttpHeaders; body: string }) {
  return new Webhook(secret).verify(request.body, request.headers as Record<string, string>) as { id: string; type: string }
}

async function disableAll() {
  for (const item of (await admin('GET', '/v1/webhooks')).body.items as { id: string }[]) await admin('DELETE', `/v1/webhooks/${item.id}`)
}

describe('webhooks', () => {
  beforeEach(disableAll)

  it('an endpoint gets a server-made secret shown once; a ping and every event are signed so that the standardwebhooks package verifies them', async () => {
    const { id, secret } = await endpoint()
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/)
    const shown = await admin('GET', `/v1/webhooks/${id}`)
    expect(JSON.stringify(shown.body)).not.toContain(secret.slice(6))
    const ping = await admin('POST', `/v1/webhooks/${id}/test`, {})
    expect(ping.body).toMatchObject({ ok: true, status: 200, responseBody: 'thanks', error: null })
    expect(verified(secret, receiver.requests[0]!)).toMatchObject({ type: 'ping' })
    const ajv = createAjv(false)
    const conforms = (schema: object, body: string) => (ajv.validate(schema, JSON.parse(body)) ? [] : ajv.errors)
    expect(conforms(PING_SCHEMA, receiver.requests[0]!.body)).toEqual([])

    const events = await record(3)
    await record(1, 'message.sent') // not asked for
    await deliverAll()
    expect(receiver.ids().slice(1)).toEqual(events)
    for (const request of receiver.requests.slice(1)) {
      expect(verified(secret, request)).toMatchObject({ type: 'email.duplicate' })
      // What goes out is what the OpenAPI document says (the component of its type).
      expect(conforms(EVENT_SCHEMAS.find((schema) => schema.$id === 'EventEmailDuplicate')!, request.body)).toEqual([])
    }
    const forged = { ...receiver.requests[1]!, body: receiver.requests[1]!.body.replace('source', 'forged') }
    expect(() => verified(secret, forged)).toThrow()
    const deliveries = (await admin('GET', `/v1/webhooks/${id}/deliveries`)).body.items as { eventId: string; state: string; attemptLog: { status: number; responseHeaders: Record<string, string> }[] }[]
    expect(deliveries.map((delivery) => delivery.state)).toEqual(['delivered', 'delivered', 'delivered'])
    expect(deliveries[0]!.attemptLog[0]).toMatchObject({ status: 200, responseHeaders: { 'x-receiver': 'test' } })
  })

  it('retries a failing receiver with backoff, in order, and loses nothing once it recovers', async () => {
    const { id } = await endpoint()
    const events = await record(3)
    receiver.answers = [500, 503]
    await deliverAll()
    // The first failed; the ones after it wait (feed order).
    expect(receiver.ids()).toEqual([events[0]])
    offsetMs += 7_000 // past the first retry (5 s ± 20 %)
    await deliverAll()
    expect(receiver.ids()).toEqual([events[0], events[0]])
    offsetMs += 40_000 // past the second (30 s ± 20 %)
    await deliverAll()
    expect(receiver.ids()).toEqual([events[0], events[0], events[0], events[1], events[2]])
    const deliveries = (await admin('GET', `/v1/webhooks/${id}/deliveries`)).body.items as { eventId: string; attempts: number; attemptLog: { status: number; responseBody: string }[] }[]
    const first = deliveries.find((delivery) => delivery.eventId === events[0])!
    expect(first.attempts).toBe(3)
    expect(first.attemptLog.map((attempt) => attempt.status)).toEqual([500, 503, 200])
    expect(first.attemptLog[0]!.responseBody).toBe('nope 500')
    expect((await admin('GET', `/v1/webhooks/${id}`)).body.failingSince).toBeNull()
  })

  it('410 Gone disables the endpoint at once, with a webhook.disabled event; enabled again, it gets what waited', async () => {
    const { id } = await endpoint()
    const events = await record(2)
    receiver.answers = [410]
    await deliverAll()
    const shown = (await admin('GET', `/v1/webhooks/${id}`)).body
    expect(shown).toMatchObject({ enabled: false, disabledReason: expect.stringContaining('410') })
    expect(receiver.requests).toHaveLength(1)
    const feed = await t.app.inject({ method: 'GET', url: '/v1/events?types=webhook.disabled&limit=500', headers: bearer(t.adminKey) })
    expect((feed.json().items as { data: { endpointId: string } }[]).map((event) => event.data.endpointId)).toContain(id)
    const metrics = (await t.app.inject({ method: 'GET', url: '/metrics', headers: bearer(t.adminKey) })).body
    expect(metrics).toMatch(/mailgate_webhook_deliveries_total\{outcome="gone"\} [1-9]/)
    expect(metrics).toMatch(new RegExp(`mailgate_webhook_lag_seconds\\{endpoint="${id}"\\} \\d`))
    // Events recorded while it is disabled wait too.
    const later = await record(1)
    await deliverAll()
    expect(receiver.requests).toHaveLength(1)
    expect((await admin('PATCH', `/v1/webhooks/${id}`, { enabled: true })).body).toMatchObject({ enabled: true, disabledReason: null })
    await deliverAll()
    expect(receiver.ids()).toEqual([events[0], events[1], later[0]])
  })

  it('a receiver down for 3 days gets the endpoint disabled with its reason', async () => {
    const { id } = await endpoint()
    await record(1)
    receiver.answers = Array(100).fill(503)
    // The last attempt before 72 h can be as late as 71 h, and the next one 8 h + 20 % later.
    for (let hour = 0; hour < 100 && (await admin('GET', `/v1/webhooks/${id}`)).body.enabled; hour++) {
      await deliverAll()
      offsetMs += 3_600_000 // an hour
    }
    const shown = (await admin('GET', `/v1/webhooks/${id}`)).body
    expect(shown).toMatchObject({ enabled: false, disabledReason: expect.stringContaining('3 days') })
    const deliveries = (await admin('GET', `/v1/webhooks/${id}/deliveries`)).body.items as { state: string; attempts: number }[]
    expect(deliveries[0]).toMatchObject({ state: 'failed' })
    expect(deliveries[0]!.attempts).toBeGreaterThanOrEqual(10)
  })

  it('replays one delivery and a range, with the same webhook-id', async () => {
    const { id } = await endpoint()
    const since = clock().toISOString()
    const events = await record(2)
    await deliverAll()
    const [newest] = (await admin('GET', `/v1/webhooks/${id}/deliveries`)).body.items as { id: string; eventId: string }[]
    expect((await admin('POST', `/v1/webhooks/${id}/deliveries/${newest!.id}/replay`, {})).status).toBe(202)
    await deliverAll()
    expect(receiver.ids()).toEqual([...events, newest!.eventId])
    const range = await admin('POST', `/v1/webhooks/${id}/replay`, { since })
    expect(range.body).toEqual({ queued: 2 })
    await deliverAll()
    expect(receiver.ids().slice(3)).toEqual(events)
    expect((await admin('POST', `/v1/webhooks/${id}/deliveries/${randomUUID()}/replay`, {})).status).toBe(404)
    // A delivery not ended yet is not replayed: it goes out anyway.
    receiver.answers = [500]
    await record(1)
    await deliverAll()
    const [failing] = (await admin('GET', `/v1/webhooks/${id}/deliveries?limit=1`)).body.items as { id: string; state: string }[]
    expect(failing!.state).toBe('pending')
    expect((await admin('POST', `/v1/webhooks/${id}/deliveries/${failing!.id}/replay`, {})).status).toBe(409)
    expect((await admin('GET', `/v1/webhooks/${id}/deliveries?cursor=nope`)).status).toBe(400)
  })

  it('a rotated secret: both sign during the overlap, then only the new one', async () => {
    const { id, secret: old } = await endpoint()
    const rotated = await admin('POST', `/v1/webhooks/${id}/rotate-secret`, { overlapHours: 24 })
    const fresh = rotated.body.secret as string
    expect(fresh).not.toBe(old)
    expect(rotated.body.endpoint.secondSecretUntil).not.toBeNull()
    await record(1)
    await deliverAll()
    const during = receiver.requests.at(-1)!
    expect(String(during.headers['webhook-signature']).split(' ')).toHaveLength(2)
    expect(verified(old, during)).toBeTruthy()
    expect(verified(fresh, during)).toBeTruthy()
    offsetMs += 25 * 3_600_000
    await record(1)
    await deliverAll()
    const after = receiver.requests.at(-1)!
    expect(String(after.headers['webhook-signature']).split(' ')).toHaveLength(1)
    expect(() => new Webhook(old).verify(after.body, { ...(after.headers as Record<string, string>), 'webhook-timestamp': String(after.headers['webhook-timestamp']) })).toThrow()
  })

  it('two workers never deliver an event twice to one endpoint, and keep the feed order', async () => {
    await endpoint()
    const events = await record(20)
    const other = createWebhookDelivery(t.app, { owner: 'second' })
    for (let run = 0; run < 30; run++) await Promise.all([t.app.webhookDelivery.runOnce(), other.runOnce()])
    expect(receiver.ids()).toEqual(events)
  })

  it("an ordered endpoint's backlog goes out in one round, one after another in feed order", async () => {
    await endpoint()
    const events = await record(40)
    expect(await t.app.webhookDelivery.runOnce()).toBe(1) // one task, taking each next delivery as the last settles
    expect(receiver.ids()).toEqual(events)
  })

  it('a parallel endpoint gets its events side by side, at most perParallelEndpoint at once, and its backlog does not hold an ordered endpoint back', async () => {
    receiver.delayMs = 40
    await endpoint({ parallel: true, url: `${receiver.url}/parallel` })
    const backlog = await record(40)
    await endpoint({ url: `${receiver.url}/ordered` })
    const later = await record(1)
    const worker = createWebhookDelivery(t.app, { owner: 'spread', settings: { perParallelEndpoint: 3 } })
    // The first round takes the ordered endpoint's delivery beside the parallel endpoint's
    // first three; those three tasks then take its next ones as each is delivered.
    await worker.runOnce()
    expect(receiver.ids('/hooks/ordered')).toEqual(later)
    await deliverAll(worker)
    expect(receiver.ids('/hooks/parallel').sort()).toEqual([...backlog, ...later].sort())
    expect(receiver.mostAtOnce.get('/hooks/parallel')).toBe(3)
  })

  it('a worker that dies after the receiver answered leaves the delivery to be retried, with the same webhook-id', async () => {
    const { id } = await endpoint()
    const [event] = await record(1)
    let frozen = false
    let thaw!: () => void
    const thawed = new Promise<void>((resolve) => (thaw = resolve))
    const dying = createWebhookDelivery(t.app, {
      owner: 'dying',
      settings: { leaseMs: 300 },
      clock,
      onStep: async (step) => {
        if (step === 'answered' && !frozen) {
          frozen = true
          await thawed
        }
      },
    })
    const stuck = dying.runOnce()
    while (!frozen) await new Promise((resolve) => setTimeout(resolve, 10))
    offsetMs += 1_000 // its lease is over
    await deliverAll()
    expect(receiver.ids()).toEqual([event, event])
    thaw()
    await stuck
    const deliveries = (await admin('GET', `/v1/webhooks/${id}/deliveries`)).body.items as { state: string; attemptLog: unknown[] }[]
    expect(deliveries).toHaveLength(1)
    expect(deliveries[0]).toMatchObject({ state: 'delivered' })
    expect(deliveries[0]!.attemptLog).toHaveLength(2)
  })

  it('GraphQL manages endpoints with the same rules', async () => {
    const made = (await graphql(t.app, t.adminKey, `mutation { createWebhook(input: { url: "${receiver.url}", eventTypes: ["message.*"] }) { secret endpoint { id eventTypes } } }`)).body
    expect(made.errors).toBeUndefined()
    expect(made.data.createWebhook.secret).toMatch(/^whsec_/)
    const refused = (await graphql(t.app, t.adminKey, `mutation { createWebhook(input: { url: "${receiver.url}", eventTypes: ["nope.*"] }) { secret } }`)).body
    expect(refused.errors?.[0]?.extensions).toMatchObject({ code: 'VALIDATION_FAILED' })
    const listed = (await graphql(t.app, t.adminKey, `{ webhooks { id } }`)).body
    expect(listed.data.webhooks.map((hook: { id: string }) => hook.id)).toContain(made.data.createWebhook.endpoint.id)
    // A description is set, and cleared with null, the same way through both doors.
    const id = made.data.createWebhook.endpoint.id as string
    const described = (await graphql(t.app, t.adminKey, `mutation { updateWebhook(id: "${id}", input: { description: "CRM intake" }) { description } }`)).body
    expect(described.data.updateWebhook.description).toBe('CRM intake')
    expect((await admin('PATCH', `/v1/webhooks/${id}`, { description: null })).body.description).toBeNull()
  })
})

describe('no way in through webhooks', () => {
  let strict: TestApp
  beforeAll(async () => {
    strict = await buildTestApp({ webhooks: { autostart: false } })
  })
  afterAll(async () => {
    await strict.close()
  })

  it('refuses private, loopback, link-local and metadata addresses, plain http, and credentials in the URL, naming the field', async () => {
    for (const url of ['https://127.0.0.1/hook', 'https://10.0.0.1/hook', 'https://169.254.169.254/latest/meta-data', 'https://[::1]/hook', 'https://[::ffff:127.0.0.1]/hook', 'https://[::7f00:1]/hook', 'https://[64:ff9b::a9fe:a9fe]/latest', 'https://168.63.129.16/machine', 'https://0x7f.1/hook', 'https://192.168.1.20/x', 'http://example.com/hook', 'https://user:pw@example.com/hook', 'not a url']) {
      const response = await strict.app.inject({ method: 'POST', url: '/v1/webhooks', headers: bearer(strict.adminKey), payload: { url, eventTypes: ['*'] } })
      expect(response.statusCode, url).toBe(400)
      expect(JSON.stringify(response.json().errors), url).toContain('url')
    }
    expect((await strict.app.inject({ method: 'GET', url: '/v1/webhooks', headers: bearer(strict.adminKey) })).json().items).toEqual([])
    // NAT64 (what DNS64 answers on an IPv6-only network) is judged by the IPv4 address it carries.
    const nat64 = await strict.app.inject({ method: 'POST', url: '/v1/webhooks', headers: bearer(strict.adminKey), payload: { url: 'https://[64:ff9b::808:808]/hook', eventTypes: ['*'], enabled: false } })
    expect(nat64.statusCode).toBe(201)
    await strict.app.inject({ method: 'DELETE', url: `/v1/webhooks/${nat64.json().endpoint.id}`, headers: bearer(strict.adminKey) })
  })

  it('a name that resolves to a private address is refused when connecting (checked on the address used)', async () => {
    const created = await strict.app.inject({ method: 'POST', url: '/v1/webhooks', headers: bearer(strict.adminKey), payload: { url: `https://localhost:${new URL(receiver.url).port}/hook`, eventTypes: ['*'] } })
    expect(created.statusCode).toBe(201)
    const ping = await strict.app.inject({ method: 'POST', url: `/v1/webhooks/${created.json().endpoint.id}/test`, headers: bearer(strict.adminKey), payload: {} })
    expect(ping.json()).toMatchObject({ ok: false, status: null, error: expect.stringMatching(/refused: localhost resolves only to addresses webhooks may not reach .*loopback/) })
    expect(receiver.requests).toHaveLength(0)
  })
})
