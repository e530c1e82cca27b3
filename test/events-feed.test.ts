import { randomUUID } from 'node:crypto'
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EVENT_TYPES } from '../db/schema.ts'
import { EVENT_SCHEMAS, eventComponentName } from '../src/modules/events/schemas.ts'
import { createAjv } from '../src/lib/validation.ts'
import { bearer, buildTestApp, graphql, type TestApp } from './support/app.ts'
import { externalTestUrl } from './support/database.ts'
import { FakeMicrosoft } from './support/fake-microsoft.ts'
import { buildIngestWorld, ingestRaw, SENT_MESSAGE_ID, type IngestWorld } from './support/ingest.ts'

const fake = new FakeMicrosoft()
let t: TestApp
let world: IngestWorld
let reader: string

beforeAll(async () => {
  fake.start()
  t = await buildTestApp({ dispatcher: { autostart: false } })
  world = await buildIngestWorld(t, fake, fake.addTenant())
  reader = await t.keyWith('events:read')
})
afterAll(async () => {
  await t.close()
  fake.stop()
})

interface FeedItem {
  id: string
  type: string
  occurredAt: string
  subject: { type: string; id: string }
  data: Record<string, unknown>
  cursor: string
}

async function feed(query: string, key = reader) {
  const response = await t.app.inject({ method: 'GET', url: `/v1/events${query}`, headers: bearer(key) })
  return { status: response.statusCode, body: response.json() as { items: FeedItem[]; next: string } & Record<string, unknown> }
}

/** Every event after `after`, a page of `limit` at a time. */
async function readAll(after?: string, limit = 100) {
  const items: FeedItem[] = []
  let cursor = after
  for (;;) {
    const page = await feed(`?limit=${limit}${cursor ? `&after=${cursor}` : ''}`)
    expect(page.status).toBe(200)
    items.push(...page.body.items)
    if (page.body.items.length === 0) return { items, next: page.body.next }
    cursor = page.body.next
  }
}

const mail = (headers: string, body = 'Hello.') => `${headers}\r\nDate: ${new Date().toUTCString()}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n${body}\r\n`

describe('the event feed', () => {
  it('lists every decision in commit order, each with the data its type documents, and pages by cursor without a gap or a repeat', async () => {
    const start = (await readAll()).next
    const id = randomUUID()
    const request = mail(`From: Alice <alice@fabrikam.example>\r\nTo: support@contoso.example\r\nSubject: Printer on fire ${id}\r\nMessage-ID: <${id}@fabrikam.example>`)
    expect((await ingestRaw(t, world.ingestKey, world.connectorId, request)).status).toBe(201)
    // The same mail again, as another copy (other bytes): a duplicate. (An exact repeat records nothing.)
    expect((await ingestRaw(t, world.ingestKey, world.connectorId, `X-Copy: second\r\n${request}`)).status).toBe(200)
    const reply = mail(`From: customer@fabrikam.example\r\nTo: support@contoso.example\r\nSubject: Re: Your printer\r\nMessage-ID: <r-${id}@fabrikam.example>\r\nIn-Reply-To: ${SENT_MESSAGE_ID}`)
    expect((await ingestRaw(t, world.ingestKey, world.connectorId, reply)).status).toBe(201)
    const blocked = mail(`From: spammer@bad.example\r\nTo: support@contoso.example\r\nSubject: Offer ${id}\r\nMessage-ID: <s-${id}@bad.example>`)
    expect((await ingestRaw(t, world.ingestKey, world.connectorId, blocked)).status).toBe(201)
    const away = mail(`From: bob@elsewhere.example\r\nTo: support@contoso.example\r\nSubject: Automatic reply: hello\r\nAuto-Submitted: auto-replied\r\nMessage-ID: <a-${id}@elsewhere.example>`)
    expect((await ingestRaw(t, world.ingestKey, world.connectorId, away)).status).toBe(201)
    const sent = await t.app.inject({
      method: 'POST',
      url: '/v1/messages',
      headers: bearer(t.adminKey),
      payload: { from: 'support@contoso.example', to: ['customer@fabrikam.example'], subject: `Answer ${id}`, body: { contentType: 'text', content: 'Done.' } },
    })
    expect(sent.statusCode).toBe(202)
    while ((await t.app.dispatcher.runOnce()) > 0);
    const outgoing = (await t.app.inject({ method: 'GET', url: '/v1/connectors?direction=outgoing', headers: bearer(t.adminKey) })).json().items[0].id as string
    expect((await t.app.inject({ method: 'POST', url: `/v1/connectors/${outgoing}/disable`, headers: bearer(t.adminKey), payload: {} })).statusCode).toBe(200)

    const { items } = await readAll(start)
    expect(items.map((item) => item.type)).toEqual([
      'work_item.requested',
      'email.duplicate',
      'work_item.message_appended',
      'email.discarded',
      'email.unhandled',
      'message.sent',
      'connector.disabled',
    ])
    const ajv = createAjv(false)
    for (const schema of EVENT_SCHEMAS) ajv.addSchema(schema)
    for (const item of items) {
      const { cursor, ...event } = item
      expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/)
      const valid = ajv.validate(eventComponentName(item.type as (typeof EVENT_TYPES)[number]), event)
      expect(valid, `${item.type}: ${JSON.stringify(ajv.errors)}`).toBe(true)
    }
    expect(items[0]!.data).toMatchObject({ connectorId: world.connectorId, subject: `Printer on fire ${id}`, workItemType: 'ticket' })
    expect(items[6]!.data).toMatchObject({ connectorId: outgoing, automatic: false })
    expect(JSON.stringify(items)).not.toMatch(/secret/i)

    // One at a time: the same events, each once.
    const oneByOne = await readAll(start, 1)
    expect(oneByOne.items.map((item) => item.id)).toEqual(items.map((item) => item.id))
    // Nothing new: nothing comes, from the cursor given or the one answered.
    const after = await feed(`?after=${oneByOne.next}`)
    expect(after.body.items).toEqual([])
    expect((await feed(`?after=${after.body.next}`)).body.items).toEqual([])
    // Filtered by type, with a wildcard.
    const work = await feed(`?after=${start}&types=work_item.*,connector.disabled`)
    expect(work.body.items.map((item) => item.type)).toEqual(['work_item.requested', 'work_item.message_appended', 'connector.disabled'])
  })

  it('refuses what it cannot read, naming the field, and needs the events:read scope', async () => {
    for (const [query, field] of [
      ['?after=not-a-cursor', 'after'],
      [`?after=${Buffer.from('1.x').toString('base64url')}`, 'after'],
      ['?types=message.nope', 'types'],
      ['?types=DROP%20TABLE', 'types'],
      ['?limit=0', 'limit'],
      ['?wait=31s', 'wait'],
    ] as const) {
      const refused = await feed(query)
      expect(refused.status, query).toBe(400)
      expect(JSON.stringify(refused.body.errors), query).toContain(field)
    }
    expect((await feed('', await t.keyWith('mail:read'))).status).toBe(403)
    expect((await feed('', t.adminKey)).status).toBe(200)
  })

  it('waits for the next event when asked to (long poll), and answers as soon as it comes', async () => {
    const { next } = await readAll()
    const started = Date.now()
    const waiting = feed(`?after=${next}&wait=10s`)
    // Many readers wait on one shared watch; one of them waits for other types.
    const others = Array.from({ length: 20 }, () => feed(`?after=${next}&wait=10s`))
    const elsewhere = feed(`?after=${next}&wait=2s&types=message.*`)
    await new Promise((resolve) => setTimeout(resolve, 300))
    const id = randomUUID()
    await ingestRaw(t, world.ingestKey, world.connectorId, mail(`From: carol@fabrikam.example\r\nTo: support@contoso.example\r\nSubject: Waited for ${id}\r\nMessage-ID: <${id}@fabrikam.example>`))
    const page = await waiting
    expect(page.body.items.map((item) => item.data.subject)).toEqual([`Waited for ${id}`])
    expect(Date.now() - started).toBeLessThan(5_000)
    for (const other of await Promise.all(others)) expect(other.body.items.map((item) => item.id)).toEqual(page.body.items.map((item) => item.id))
    // Woken by an event not of its types, it reads again and goes on waiting until its time is up.
    const filtered = await elsewhere
    expect(filtered.body.items).toEqual([])
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_000)
    // With nothing to come, it answers empty when the wait is over (over real HTTP too).
    const address = await t.app.listen({ port: 0, host: '127.0.0.1' })
    const empty = Date.now()
    const response = await fetch(`${address}/v1/events?after=${page.body.next}&wait=1`, { headers: bearer(reader) })
    expect(((await response.json()) as { items: unknown[] }).items).toEqual([])
    expect(Date.now() - empty).toBeGreaterThanOrEqual(900)
  })

  it('GraphQL reads the same feed', async () => {
    const rest = await readAll()
    const answer = (await graphql(t.app, reader, `{ events(limit: 500, types: "work_item.*") { items { id type data cursor subject { type id } } next } }`)).body
    expect(answer.errors).toBeUndefined()
    const items = (answer.data as { events: { items: FeedItem[] } }).events.items
    expect(items.map((item) => item.id)).toEqual(rest.items.filter((item) => item.type.startsWith('work_item.')).map((item) => item.id))
    const refused = (await graphql(t.app, reader, `{ events(after: "nope") { next } }`)).body
    expect(refused.errors?.[0]?.extensions).toMatchObject({ code: 'VALIDATION_FAILED' })
  })

  it('the OpenAPI document has each event type and the ping as a component and in its webhooks section, with the signature headers', async () => {
    const document = (await t.app.inject({ method: 'GET', url: '/docs/json' })).json()
    for (const type of EVENT_TYPES) {
      expect(document.components.schemas[eventComponentName(type)], type).toBeDefined()
      expect(document.webhooks[type].post.requestBody.content['application/json'].schema.$ref).toBe(`#/components/schemas/${eventComponentName(type)}`)
    }
    expect(document.webhooks.ping.post.requestBody.content['application/json'].schema.$ref).toBe('#/components/schemas/EventPing')
    const headers = (document.webhooks['message.sent'].post.parameters as { name: string; in: string }[]).filter((parameter) => parameter.in === 'header')
    expect(headers.map((header) => header.name)).toEqual(['webhook-id', 'webhook-timestamp', 'webhook-signature'])
    // A parameter with a default is filled in when left out: not required.
    const limit = (document.paths['/v1/events'].get.parameters as { name: string; required: boolean }[]).find((parameter) => parameter.name === 'limit')
    expect(limit?.required).toBe(false)
  })

  it.skipIf(!externalTestUrl)('never skips an event whose transaction commits after later ones (interleaved transactions on PostgreSQL)', async () => {
    const { next } = await readAll()
    const slow = postgres(t.db.url!, { max: 1, onnotice: () => {} })
    const fast = postgres(t.db.url!, { max: 1, onnotice: () => {} })
    const insert = (sql: postgres.Sql | postgres.TransactionSql, id: string) =>
      sql`insert into domain_events (id, type, subject_type, subject_id, payload) values (${id}, 'email.duplicate', 'inbound_email', ${randomUUID()}, ${sql.json({ emailId: randomUUID(), connectorId: randomUUID(), duplicateOf: randomUUID(), way: 'source' })})`
    // UUIDv7-like ordering would put the slow one first by id as well: give it the later id to be sure ids do not decide.
    const slowId = `ffffffff-${randomUUID().slice(9)}`
    const fastId = `00000000-${randomUUID().slice(9)}`
    let commitSlow!: () => void
    const slowMayCommit = new Promise<void>((resolve) => (commitSlow = resolve))
    let slowInserted!: () => void
    const inserted = new Promise<void>((resolve) => (slowInserted = resolve))
    try {
      const slowTx = slow.begin(async (tx) => {
        await insert(tx, slowId)
        slowInserted()
        await slowMayCommit
      })
      await inserted
      await fast.begin((tx) => insert(tx, fastId)) // begins later, commits first
      // The fast one is committed, but the feed holds it back while the slow one may still commit.
      const held = await feed(`?after=${next}`)
      expect(held.body.items).toEqual([])
      // A filtered reader is moved up to the horizon: still before the slow transaction's event.
      const filtered = await feed(`?after=${next}&types=message.sent`)
      commitSlow()
      await slowTx
      for (const cursor of [next, held.body.next]) {
        const both = await feed(`?after=${cursor}`)
        expect(both.body.items.map((item) => item.id)).toEqual([slowId, fastId])
      }
      const both = await feed(`?after=${filtered.body.next}&types=email.duplicate`)
      expect(both.body.items.map((item) => item.id)).toEqual([slowId, fastId])
    } finally {
      commitSlow()
      await slow.end()
      await fast.end()
    }
  })
})
