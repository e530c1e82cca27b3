import { createHash, randomUUID } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { eq, like } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { schema } from '../src/database/index.ts'
import { bearer, buildTestApp, type TestApp } from './support/app.ts'
import { FakeMicrosoft, type FakeTenant } from './support/fake-microsoft.ts'
import { mailSetup } from './support/mail.ts'
import { buildIngestWorld, CORPUS_TEST_ID, ingestRaw, SENT_MESSAGE_ID, type IngestWorld } from './support/ingest.ts'
import { rawMail } from './support/raw-mail.ts'
import { parseMime } from '../src/modules/inbound/mime.ts'
import { storable } from '../src/modules/inbound/parsed-mail.ts'

const fake = new FakeMicrosoft()
let t: TestApp
let world: IngestWorld
let tenant: FakeTenant
/** Subjects of mail the crash hook stops at a stage: `decided` (nothing written) or `stored` (stored as received). */
const crashAt = new Map<string, 'decided' | 'stored'>()

beforeAll(async () => {
  fake.start()
  t = await buildTestApp({
    ingest: {
      onStage: async (stage, email) => {
        if (crashAt.get(email.subject) === stage) throw new Error(`simulated crash at ${stage}`)
      },
    },
  })
  tenant = fake.addTenant()
  world = await buildIngestWorld(t, fake, tenant)
})
afterAll(async () => {
  await t.close()
  fake.stop()
})

const ingest = (raw: string | Buffer) => ingestRaw(t, world.ingestKey, world.connectorId, raw)
async function call(method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, payload?: unknown, key = t.adminKey) {
  const response = await t.app.inject({ method, url, headers: bearer(key), payload: payload as object })
  const json = String(response.headers['content-type'] ?? '').includes('json')
  return { status: response.statusCode, body: json ? response.json() : undefined, headers: response.headers, raw: response.rawPayload }
}
async function eventsFor(emailId: string) {
  // In the order they were recorded (ids are UUIDv7).
  return t.app.database.db
    .select({ type: schema.domainEvents.type, payload: schema.domainEvents.payload })
    .from(schema.domainEvents)
    .where(eq(schema.domainEvents.subjectId, emailId))
    .orderBy(schema.domainEvents.id)
}

describe('intake', () => {
  it('stores the source byte for byte and gives it back', async () => {
    const raw = rawMail({ subject: 'byte for byte', headers: ['X-Odd:   spaced   value  '] })
    const { status, body } = await ingest(raw)
    expect(status).toBe(201)
    expect(body.outcome).toBe('requested')
    const source = await call('GET', `/v1/inbound/${body.id}/raw`, undefined, world.readKey)
    expect(source.status).toBe(200)
    expect(source.headers['content-type']).toBe('message/rfc822')
    expect(source.raw.equals(Buffer.from(raw))).toBe(true)
  })

  it('answers 409 naming the state for a disabled or outgoing connector, 404 for an unknown one, and stores nothing', async () => {
    const before = (await call('GET', '/v1/inbound?limit=200')).body.items.length
    const disabled = await call('POST', `/v1/connectors/${world.connectorId}/disable`, {})
    expect(disabled.status).toBe(200)
    const refused = await ingest(rawMail())
    expect(refused.status).toBe(409)
    expect(refused.body).toMatchObject({ code: 'CONNECTOR_NOT_ACCEPTING_MAIL', state: 'disabled' })
    expect((await call('POST', `/v1/connectors/${world.connectorId}/enable`, {})).status).toBe(200)
    const unknown = await ingestRaw(t, world.ingestKey, randomUUID(), rawMail())
    expect(unknown.status).toBe(404)
    expect((await call('GET', '/v1/inbound?limit=200')).body.items.length).toBe(before)
  })

  it('needs the mail:ingest scope: mail:read is not enough', async () => {
    expect((await ingestRaw(t, world.readKey, world.connectorId, rawMail())).status).toBe(403)
  })

  it('refuses other content types with 415 and bodies over MESSAGE_SIZE_LIMIT with 413', async () => {
    const wrongType = await t.app.inject({ method: 'POST', url: `/v1/ingest?connectorId=${world.connectorId}`, headers: { ...bearer(world.ingestKey), 'content-type': 'text/plain' }, payload: rawMail() })
    expect(wrongType.statusCode).toBe(415)
    const huge = rawMail({ body: 'x'.repeat(36 * 1024 * 1024) })
    const tooLarge = await ingest(huge)
    expect(tooLarge.status).toBe(413)
    expect(tooLarge.body.code).toBe('PAYLOAD_TOO_LARGE')
  })

  it('takes Graph-shaped JSON through the same pipeline', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: `/v1/ingest?connectorId=${world.connectorId}`,
      headers: bearer(world.ingestKey),
      payload: {
        internetMessageId: `<${randomUUID()}@fabrikam.example>`,
        subject: 'Invoice 42 is wrong',
        from: { emailAddress: { address: 'Bob@Fabrikam.example', name: 'Bob' } },
        toRecipients: [{ emailAddress: { address: 'support@contoso.example' } }],
        body: { contentType: 'html', content: '<p>Please <b>fix</b> it<script>alert(1)</script></p>' },
        attachments: [{ '@odata.type': '#microsoft.graph.fileAttachment', name: 'invoice.pdf', contentType: 'application/pdf', contentBytes: Buffer.from('%PDF-1.4').toString('base64') }],
        receivedDateTime: '2026-11-30T09:00:00Z',
      },
    })
    expect(response.statusCode, response.body).toBe(201)
    const email = response.json()
    expect(email.from).toEqual({ address: 'bob@fabrikam.example', name: 'Bob' })
    expect(email.workItems.map((link: { routeId: string }) => link.routeId)).toEqual([world.routes.get('support-invoices')])
    expect(email.htmlBody).not.toContain('<script')
    const attachment = await call('GET', `/v1/inbound/${email.id}/attachments/0`, undefined, world.readKey)
    expect(attachment.raw.toString()).toBe('%PDF-1.4')
    expect(attachment.headers['content-disposition']).toContain('attachment; filename="invoice.pdf"')
  })
})

describe('hostile mail', () => {
  it('NUL characters anywhere, in MIME and in JSON, are stored as U+FFFD rather than refused', async () => {
    const mime = await ingest(rawMail({ subject: 'nul\u0000subject', body: 'body\u0000text', headers: ['X-Nul: a\u0000b'] }))
    expect(mime.status, JSON.stringify(mime.body)).toBe(201)
    expect(mime.body.subject).toBe('nul\uFFFDsubject')
    const json = await t.app.inject({
      method: 'POST',
      url: `/v1/ingest?connectorId=${world.connectorId}`,
      headers: bearer(world.ingestKey),
      payload: { subject: 'a\u0000b', body: { contentType: 'text', content: 'n\u0000ul' }, from: { emailAddress: { address: 'x\u0000@fabrikam.example' } }, internetMessageHeaders: [{ name: 'X-A', value: '\u0000' }] },
    })
    expect(json.statusCode, json.body).toBe(201)
  })

  it('unpaired surrogates (a UTF-16 encoded word, or JSON) are stored as U+FFFD rather than refused', async () => {
    const mime = await ingest(rawMail({ subject: '=?UTF-16BE?B?2AAAQQ==?=' }))
    expect(mime.status, JSON.stringify(mime.body)).toBe(201)
    const json = await t.app.inject({
      method: 'POST',
      url: `/v1/ingest?connectorId=${world.connectorId}`,
      headers: { ...bearer(world.ingestKey), 'content-type': 'application/json' },
      payload: '{"subject":"\\ud800 lone","internetMessageHeaders":[{"name":"X-A","value":"\\udc00"}],"toRecipients":[{"emailAddress":{"address":"support@contoso.example"}}]}',
    })
    expect(json.statusCode, json.body).toBe(201)
    expect(json.json().subject).toBe('\uFFFD lone')
  })

  it('HTML nested deeper than real mail is not sanitised on every read: the text body stands, and reads stay fast', async () => {
    const html = '<div>'.repeat(60_000) + 'deep' + '</div>'.repeat(60_000)
    const raw = ['From: a@adatum.example', 'To: support@contoso.example', 'Subject: deep html', 'MIME-Version: 1.0', 'Content-Type: text/html; charset=utf-8', '', html, ''].join('\r\n')
    const { status, body } = await ingest(raw)
    expect(status).toBe(201)
    expect(body.htmlBody).toBeNull()
    const read = await call('GET', `/v1/inbound/${body.id}`, undefined, world.readKey)
    expect(read.body.htmlBody).toBeNull()
    expect(read.body.textBody).toContain('deep')
  })

  it('a forged bounce naming an outbox id but no recipient is not believed', async () => {
    const raw = [
      'From: mailer-daemon@evil.example', 'Return-Path: <>', 'To: support@contoso.example', 'Subject: Undeliverable: hi', '', 'Your mail failed.',
      `X-Mailgate-Message: ${world.sentMessageId}`, `Message-ID: ${SENT_MESSAGE_ID}`, '',
    ].join('\r\n')
    const before = (await call('GET', `/v1/messages/${world.sentMessageId}`)).body.bounces.length
    const { body } = await ingest(raw)
    expect(body.automated?.kind).toBe('bounce')
    expect(body.steps).toContainEqual(expect.objectContaining({ step: 'bounce', result: 'unmatched' }))
    expect((await call('GET', `/v1/messages/${world.sentMessageId}`)).body.bounces.length).toBe(before)
  })

  it('a 10,000-part message is stored and processed, its attachment list capped with the reason', async () => {
    const parts = Array.from({ length: 10_000 }, (_, i) => `--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="f${i}.bin"\r\n\r\nAAAA\r\n`).join('')
    const raw = `From: a@adatum.example\r\nTo: support@contoso.example\r\nSubject: many parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n${parts}--b--\r\n`
    const { status, body } = await ingest(raw)
    expect(status).toBe(201)
    expect(body.outcome).toBe('requested')
    expect(body.attachments.length).toBeLessThan(10_000)
    expect(body.parseProblems.join(' ')).toMatch(/attachment parts/)
  })

  it('an attachment named ../../etc/passwd downloads as passwd, as an attachment, never rendered', async () => {
    const raw = [
      'From: a@adatum.example', 'To: support@contoso.example', 'Subject: traversal', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary=x', '',
      '--x', 'Content-Type: text/plain', '', 'see attached', '--x',
      'Content-Type: text/html; name="../../etc/passwd"', 'Content-Disposition: attachment; filename="../../etc/passwd"', 'Content-Transfer-Encoding: base64', '',
      Buffer.from('<script>alert(1)</script>').toString('base64'), '--x--', '',
    ].join('\r\n')
    const { body } = await ingest(raw)
    expect(body.attachments[0]).toMatchObject({ index: 0, name: 'passwd' })
    const download = await call('GET', `/v1/inbound/${body.id}/attachments/0`, undefined, world.readKey)
    expect(download.status).toBe(200)
    expect(download.headers['content-disposition']).toBe(`attachment; filename="passwd"; filename*=UTF-8''passwd`)
    expect(download.headers['content-type']).toBe('application/octet-stream')
    expect(download.raw.toString()).toBe('<script>alert(1)</script>')
    expect((await call('GET', `/v1/inbound/${body.id}/attachments/1`, undefined, world.readKey)).status).toBe(404)
  })

  it('mutated real mail (flipped bytes, cuts, repeated boundaries) is always stored or refused with a 4xx, never a 500', async () => {
    const dir = new URL('./fixtures/inbound/', import.meta.url)
    const files = readdirSync(dir).filter((file) => file.endsWith('.eml')).map((file) => readFileSync(new URL(file, dir)))
    let seed = 7
    const random = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n)
    const statuses = new Map<number, number>()
    for (let i = 0; i < 120; i++) {
      const source = Buffer.from(files[random(files.length)]!)
      const mutated = [
        () => { for (let k = 0; k < 20; k++) source[random(source.length)] = random(256) },
        () => source.subarray(0, random(source.length)),
        () => Buffer.concat([source, source.subarray(random(source.length))]),
        () => Buffer.from(source.toString('latin1').replace(/boundary="?([^";\r\n]+)"?/i, 'boundary=""')),
      ][random(4)]!()
      const { status } = await ingest(Buffer.isBuffer(mutated) ? mutated : source)
      statuses.set(status, (statuses.get(status) ?? 0) + 1)
    }
    expect([...statuses.keys()].every((status) => status === 200 || status === 201), JSON.stringify([...statuses])).toBe(true)
  })
})

describe('dedupe', () => {
  it('the same message posted twice, even racing, stores one email and one set of events', async () => {
    const raw = rawMail({ subject: 'racing twins' })
    const results = await Promise.all([ingest(raw), ingest(raw), ingest(raw)])
    expect(results.map((result) => result.status).sort()).toEqual([200, 200, 201])
    const original = results.find((result) => result.status === 201)!.body
    for (const duplicate of results.filter((result) => result.status === 200)) {
      expect(duplicate.body).toMatchObject({ duplicateOf: original.id, way: 'source' })
    }
    const stored = await t.app.database.db.select({ id: schema.inboundEmails.id }).from(schema.inboundEmails).where(eq(schema.inboundEmails.subject, 'racing twins'))
    expect(stored).toHaveLength(1)
    expect((await eventsFor(original.id)).map((event) => event.type)).toEqual(['work_item.requested'])
  })

  it('many mails decided at once, copies and own mail among them, are each stored once: written together, none holds up the others', async () => {
    const originals = Array.from({ length: 16 }, (_, n) => rawMail({ subject: `batch ${n}`, body: `batch body ${n}` }))
    // Another Message-ID and transport headers, the same content: a copy claims two of its three keys.
    const copies = Array.from({ length: 8 }, (_, n) => rawMail({ subject: `batch ${n}`, body: `batch body ${n}`, headers: ['Received: from relay.contoso.example by mx2.contoso.example'] }))
    // Mailgate's own mail coming back, by its outbox id and by its Message-ID: the store statement tells it.
    const own = [
      rawMail({ subject: 'batch own by outbox id', headers: [`X-Mailgate-Message: ${world.sentMessageId}`] }),
      rawMail({ subject: 'batch own by Message-ID', messageId: SENT_MESSAGE_ID.slice(1, -1) }),
    ]
    // Parsed and stored beforehand, so that the decisions come together and are written in groups.
    const prepared = await Promise.all(
      [...originals, ...copies, ...own].map(async (raw) => {
        const source = Buffer.from(raw)
        const blob = await t.app.services.attachments.write(t.app.database.db, source)
        const mail = storable(await parseMime((async function* () {
          yield source
        })()))
        return { blob, hash: createHash('sha256').update(source).digest('hex'), mail }
      }),
    )
    const results = await Promise.all(prepared.map(({ blob, hash, mail }) => t.app.services.inbound.accept(world.connectorId, 'mime', blob, hash, mail)))
    const bySubject = Map.groupBy(results, (result) => result.row.subject)
    for (const subject of ['batch own by outbox id', 'batch own by Message-ID']) {
      const [answer] = bySubject.get(subject)!
      expect(answer).toMatchObject({ status: 201, row: { outcome: 'ignored', outcomeReason: 'own_mail' } })
      expect(await eventsFor(answer!.row.id)).toEqual([])
      bySubject.delete(subject)
    }
    expect(bySubject.size).toBe(16)
    for (const [subject, answers] of bySubject) {
      const stored = answers.filter((answer) => answer.status === 201)
      // Of a mail and its copy, whichever was written first is stored and the other is its duplicate.
      expect(stored, subject).toHaveLength(1)
      expect(answers, subject).toHaveLength(Number(subject.split(' ')[1]) < 8 ? 2 : 1)
      const original = stored[0]!.row
      expect(original.outcome).toBe('requested')
      expect((await eventsFor(original.id)).map((event) => event.type)).toEqual(['work_item.requested'])
      for (const duplicate of answers.filter((answer) => answer.status === 200)) {
        expect(duplicate).toMatchObject({ duplicateOf: original.id, way: 'content' })
        expect((await eventsFor(duplicate.row.id)).map((event) => event.type)).toEqual(['email.duplicate'])
      }
    }
    const rows = await t.app.database.db.select({ outcome: schema.inboundEmails.outcome }).from(schema.inboundEmails).where(like(schema.inboundEmails.subject, 'batch %'))
    expect(rows.filter((row) => row.outcome === 'requested')).toHaveLength(16)
    expect(rows.filter((row) => row.outcome === 'duplicate')).toHaveLength(8)
  })

  it('a later mail with the same words is new work: the Date tells it from a copy', async () => {
    const first = await ingest(rawMail({ subject: 'Any update?', body: 'Any update?', date: 'Mon, 23 Nov 2026 09:00:00 +0000' }))
    const week = await ingest(rawMail({ subject: 'Any update?', body: 'Any update?', date: 'Mon, 30 Nov 2026 09:00:00 +0000' }))
    expect([first.status, week.status]).toEqual([201, 201])
    expect(week.body.outcome).toBe('requested')
  })

  it('the same content under other transport headers, and the same Message-ID with another body, are duplicates with an event', async () => {
    const messageId = `${randomUUID()}@fabrikam.example`
    const first = await ingest(rawMail({ subject: 'dup ways', messageId, body: 'first body' }))
    // Another Message-ID and transport headers: a copy through an alias keeps only the Date.
    const sameContent = await ingest(rawMail({ subject: 'dup ways', body: 'first body', headers: ['Received: from relay.contoso.example by mx2.contoso.example'] }))
    expect(sameContent.status).toBe(200)
    expect(sameContent.body).toMatchObject({ duplicateOf: first.body.id, way: 'content', email: { outcome: 'duplicate', duplicateOf: first.body.id } })
    const sameIdentity = await ingest(rawMail({ subject: 'dup ways', messageId, body: 'rewritten by a relay' }))
    expect(sameIdentity.body).toMatchObject({ duplicateOf: first.body.id, way: 'identity' })
    expect((await eventsFor(sameIdentity.body.email.id)).map((event) => event.type)).toEqual(['email.duplicate'])
  })
})

describe('dedupe scopes', () => {
  const mailToBoth = () => rawMail({ to: ['support@contoso.example', 'sales-team@contoso.example'], subject: `to both ${randomUUID()}` })

  it('global: the same mail reaching a second connector is a duplicate there', async () => {
    const second = await mailSetup(t).incoming(world.integrationId, 'sales-team@contoso.example', 'sales-team')
    const mail = mailToBoth()
    expect((await ingest(mail)).status).toBe(201)
    const again = await ingestRaw(t, world.ingestKey, second.connectorId, mail)
    expect(again.status).toBe(200)
    expect(again.body.way).toBe('source')
  })

  it('connector: each connector takes it once and requests work through its own routes, never twice', async () => {
    const app = await buildTestApp({ ingest: { dedupeScope: 'connector' } })
    const w = await buildIngestWorld(app, fake, fake.addTenant())
    const second = await mailSetup(app).incoming(w.integrationId, 'sales-team@contoso.example', 'sales-team')
    const mail = mailToBoth()
    const first = await ingestRaw(app, w.ingestKey, w.connectorId, mail)
    const other = await ingestRaw(app, w.ingestKey, second.connectorId, mail)
    expect([first.status, other.status]).toEqual([201, 201])
    expect(first.body.workItems.map((link: { routeId: string }) => link.routeId)).toEqual([w.routes.get('support')])
    expect(other.body.workItems.map((link: { routeId: string }) => link.routeId)).toEqual([second.fallbackRouteId])
    expect((await ingestRaw(app, w.ingestKey, second.connectorId, mail)).body).toMatchObject({ duplicateOf: other.body.id, way: 'source' })
    await app.close()
  })
})

describe('threading modes', () => {
  async function appWith(threadingMode: 'standard' | 'mixed' | 'plus_only') {
    const app = await buildTestApp({ ingest: { threadingMode } })
    const w = await buildIngestWorld(app, fake, fake.addTenant())
    const creator = await ingestRaw(app, w.ingestKey, w.connectorId, rawMail({ messageId: 'origin@fabrikam.example', subject: 'new work' }))
    const confirmed = await app.app.inject({ method: 'PUT', url: `/v1/inbound/${creator.body.id}/work-item`, headers: bearer(w.ingestKey), payload: { routeId: w.routes.get('support'), workItemRef: 'WI-1001' } })
    expect(confirmed.statusCode).toBe(200)
    const outcome = async (options: Parameters<typeof rawMail>[0]) => {
      const { body } = await ingestRaw(app, w.ingestKey, w.connectorId, rawMail(options))
      return body.workItems.find((link: { kind: string }) => link.kind === 'appended')?.workItemRef ?? body.outcome
    }
    return { app, outcome }
  }

  it('standard: headers, subject and body tokens; plus addresses are not looked at', async () => {
    const { app, outcome } = await appWith('standard')
    expect(await outcome({ inReplyTo: 'origin@fabrikam.example' })).toBe('WI-1001')
    expect(await outcome({ inReplyTo: SENT_MESSAGE_ID.slice(1, -1), from: 'customer@fabrikam.example' })).toBe('WI-2002')
    expect(await outcome({ subject: 'Re: [WI-1001] more' })).toBe('WI-1001')
    expect(await outcome({ body: 'About WI-1001: see [WI-1001]' })).toBe('WI-1001')
    expect(await outcome({ to: ['support+WI-2002@contoso.example'] })).toBe('requested')
    await app.close()
  })

  it('mixed: plus addresses first, then the standard ways', async () => {
    const { app, outcome } = await appWith('mixed')
    expect(await outcome({ to: ['support+WI-2002@contoso.example'], subject: 'Re: [WI-1001]' })).toBe('WI-2002')
    expect(await outcome({ subject: 'Re: [WI-1001]' })).toBe('WI-1001')
    await app.close()
  })

  it('plus_only: plus addresses and Message-IDs of received mail only', async () => {
    const { app, outcome } = await appWith('plus_only')
    expect(await outcome({ to: ['support+WI-2002@contoso.example'] })).toBe('WI-2002')
    expect(await outcome({ inReplyTo: 'origin@fabrikam.example' })).toBe('WI-1001')
    expect(await outcome({ inReplyTo: SENT_MESSAGE_ID.slice(1, -1), from: 'customer@fabrikam.example' })).toBe('requested')
    expect(await outcome({ subject: 'Re: [WI-1001]' })).toBe('requested')
    await app.close()
  })

  it('work that came in by BCC through a wildcard route threads by its headers (it has no address to look for)', async () => {
    const app = await buildTestApp()
    const w = await buildIngestWorld(app, fake, fake.addTenant())
    const bcc = await ingestRaw(app, w.ingestKey, w.connectorId, rawMail({ from: 'bob@partner.example', to: ['someone@elsewhere.example'], messageId: 'bcc-origin@partner.example' }))
    expect(bcc.body.workItems).toEqual([expect.objectContaining({ routeId: w.routes.get('partner'), address: '*' })])
    const confirm = await app.app.inject({ method: 'PUT', url: `/v1/inbound/${bcc.body.id}/work-item`, headers: bearer(w.ingestKey), payload: { routeId: w.routes.get('partner'), workItemRef: 'WI-3003' } })
    expect(confirm.statusCode).toBe(200)
    const reply = await ingestRaw(app, w.ingestKey, w.connectorId, rawMail({ from: 'someone@elsewhere.example', inReplyTo: 'bcc-origin@partner.example' }))
    expect(reply.body.workItems).toEqual([expect.objectContaining({ kind: 'appended', workItemRef: 'WI-3003' })])
    await app.close()
  })

  it('a reply whose work address was dropped from To/Cc is not threaded by its headers', async () => {
    const { app, outcome } = await appWith('mixed')
    expect(await outcome({ inReplyTo: 'origin@fabrikam.example', to: ['billing@contoso.example'] })).toBe('requested')
    expect(await outcome({ inReplyTo: 'origin@fabrikam.example', to: ['billing@contoso.example'], cc: ['support@contoso.example'] })).toBe('WI-1001')
    await app.close()
  })
})

describe('own mail and blocked senders', () => {
  it('mail naming a message Mailgate sent or a connection test it ran is ignored; unknown ids are not', async () => {
    const own = await ingest(rawMail({ headers: [`X-Mailgate-Message: ${world.sentMessageId}`] }))
    expect(own.body).toMatchObject({ outcome: 'ignored', outcomeReason: 'own_mail' })
    const forged = await ingest(rawMail({ headers: [`X-Mailgate-Message: ${randomUUID()}`] }))
    expect(forged.body.outcome).toBe('requested')
    const test = await ingest(rawMail({ headers: [`X-Mailgate-Test: ${CORPUS_TEST_ID}`] }))
    expect(test.body).toMatchObject({ outcome: 'ignored', outcomeReason: 'test_message' })
    const forgedTest = await ingest(rawMail({ headers: ['X-Mailgate-Test: whatever'] }))
    expect(forgedTest.body.outcome).toBe('requested')
  })

  it('when From and Sender match different entries, the strictest action wins', async () => {
    await call('POST', '/v1/blocked-addresses', { pattern: 'quiet@northwind.example', action: 'no_automated_replies' })
    await call('POST', '/v1/blocked-addresses', { pattern: 'relay@northwind.example', action: 'discard' })
    const { body } = await ingest(rawMail({ from: 'quiet@northwind.example', headers: ['Sender: relay@northwind.example'] }))
    expect(body).toMatchObject({ outcome: 'discarded', outcomeReason: 'blocked' })
  })

  it('intake remembers configuration briefly: a block applies here at once and on another instance within 1 s', async () => {
    const other = await buildTestApp({ database: t.db })
    try {
      const otherIngest = (raw: string) => ingestRaw(other, world.ingestKey, world.connectorId, raw)
      // The other instance has just read the blocked addresses and the routes, so it remembers them.
      expect((await otherIngest(rawMail({ from: 'later@northwind.example' }))).body.outcome).toBe('requested')
      const blockedAt = performance.now()
      const blocked = await call('POST', '/v1/blocked-addresses', { pattern: '*@northwind-late.example', action: 'discard' })
      expect((await ingest(rawMail({ from: 'x@northwind-late.example' }))).body.outcome).toBe('discarded')
      let outcome = 'requested'
      while (outcome === 'requested' && performance.now() - blockedAt < 3_000) {
        outcome = (await otherIngest(rawMail({ from: 'x@northwind-late.example' }))).body.outcome
      }
      expect(outcome).toBe('discarded')
      expect(performance.now() - blockedAt).toBeLessThan(1_000)
      expect((await call('DELETE', `/v1/blocked-addresses/${blocked.body.id}`)).status).toBe(204)
      expect((await ingest(rawMail({ from: 'x@northwind-late.example' }))).body.outcome).toBe('requested')

      // A connector disabled on one instance stops taking mail on the other within 1 s too.
      fake.addMailbox(tenant, 'late-team@contoso.example')
      const { connectorId } = await mailSetup(t).incoming(world.integrationId, 'late-team@contoso.example', 'late-team')
      const toLate = (raw: string) => ingestRaw(other, world.ingestKey, connectorId, raw)
      expect((await toLate(rawMail({ to: ['late-team@contoso.example'] }))).status).toBe(201)
      const disabledAt = performance.now()
      expect((await call('POST', `/v1/connectors/${connectorId}/disable`, {})).status).toBe(200)
      expect((await ingestRaw(t, world.ingestKey, connectorId, rawMail({ to: ['late-team@contoso.example'] }))).status).toBe(409)
      let status = 201
      while (status === 201 && performance.now() - disabledAt < 3_000) status = (await toLate(rawMail({ to: ['late-team@contoso.example'] }))).status
      expect(status).toBe(409)
      expect(performance.now() - disabledAt).toBeLessThan(1_000)
    } finally {
      await other.app.close()
    }
  })

  it('a discarded email is restored by reprocessing once its sender is unblocked', async () => {
    const blocked = await call('POST', '/v1/blocked-addresses', { pattern: 'pest@northwind.example', action: 'discard' })
    const { body } = await ingest(rawMail({ from: 'pest@northwind.example', subject: 'let me in' }))
    expect(body).toMatchObject({ outcome: 'discarded', outcomeReason: 'blocked' })
    expect((await eventsFor(body.id)).map((event) => event.type)).toEqual(['email.discarded'])
    expect((await call('GET', '/v1/inbound?outcome=discarded')).body.items.map((item: { id: string }) => item.id)).toContain(body.id)
    expect((await call('DELETE', `/v1/blocked-addresses/${blocked.body.id}`)).status).toBe(204)
    const again = await call('POST', `/v1/inbound/${body.id}/reprocess`, {}, world.ingestKey)
    expect(again.status).toBe(200)
    expect(again.body).toMatchObject({ before: 'discarded', email: { outcome: 'requested' } })
    expect((await eventsFor(body.id)).map((event) => event.type)).toEqual(['email.discarded', 'work_item.requested'])
  })
})

describe('unhandled mail', () => {
  it('creates a route from an unhandled email and re-applies it to the range, counting what changed', async () => {
    const since = new Date(Date.now() - 1000).toISOString()
    const strays = []
    for (let i = 0; i < 3; i++) {
      strays.push((await ingest(rawMail({ to: ['someone@elsewhere.example'], from: `vendor${i}@adatum.example`, subject: `bcc stray ${i}` }))).body)
    }
    expect(strays.map((email) => [email.outcome, email.outcomeReason])).toEqual(Array(3).fill(['unhandled', 'no_route']))
    const route = await call('POST', `/v1/inbound/${strays[0].id}/route`, {
      match: 'sender',
      workItemType: 'case',
      processId: 'adatum-vendor',
      reapply: { since, until: new Date(Date.now() + 1000).toISOString() },
    })
    expect(route.status, JSON.stringify(route.body)).toBe(201)
    // Only the first sender is covered by the new route.
    expect(route.body).toMatchObject({ reapplied: 3, changed: 1, nextAfterId: null })
    const first = (await call('GET', `/v1/inbound/${strays[0].id}`)).body
    expect(first).toMatchObject({ outcome: 'requested', workItems: [{ routeId: route.body.routeId }] })
    expect((await call('GET', `/v1/audit?resourceId=${route.body.routeId}`)).body.items.map((entry: { action: string }) => entry.action)).toContain('create')
    expect((await call('GET', `/v1/audit?resourceId=${world.connectorId}&action=reapply`)).body.items[0].diff.details).toMatchObject({ reapplied: 3, changed: 1 })

    // A second sender's route, then the range again on its own: only the one still unhandled changes.
    await call('POST', '/v1/routes', { connectorId: world.connectorId, name: 'vendor1', emailAddress: '*', workItemType: 'case', processId: 'adatum-vendor-1', rules: { senderIncludes: ['vendor1@adatum.example'] } })
    const again = await call('POST', '/v1/inbound/reapply', { connectorId: world.connectorId, since, until: new Date(Date.now() + 1000).toISOString() })
    expect(again.status, JSON.stringify(again.body)).toBe(200)
    expect(again.body).toMatchObject({ reapplied: 2, changed: 1, nextAfterId: null })
  })

  it('refuses a recipient route for an address the email was not sent to', async () => {
    const { body } = await ingest(rawMail({ to: ['someone@elsewhere.example'], from: 'x@adatum.example' }))
    const refused = await call('POST', `/v1/inbound/${body.id}/route`, { match: 'recipient', emailAddress: 'other@contoso.example', workItemType: 'ticket', processId: 'p' })
    expect(refused.status).toBe(422)
    expect(refused.body.code).toBe('RECIPIENT_NOT_ON_EMAIL')
  })
})

describe('confirming work items', () => {
  it('is idempotent for the same reference and 409 for another', async () => {
    const { body } = await ingest(rawMail({ subject: 'confirm me' }))
    const routeId = world.routes.get('support')
    const put = (workItemRef: string) => call('PUT', `/v1/inbound/${body.id}/work-item`, { routeId, workItemRef }, world.ingestKey)
    expect((await put('WI-7')).status).toBe(200)
    expect((await put('WI-7')).body.workItems[0]).toMatchObject({ workItemRef: 'WI-7' })
    const conflict = await put('WI-8')
    expect(conflict.status).toBe(409)
    expect(conflict.body.code).toBe('WORK_ITEM_ALREADY_CONFIRMED')
    const wrongRoute = await call('PUT', `/v1/inbound/${body.id}/work-item`, { routeId: world.routes.get('billing'), workItemRef: 'WI-9' }, world.ingestKey)
    expect(wrongRoute.status).toBe(422)
  })
})

describe('crash safety', () => {
  it('a crash after deciding and before writing stores nothing; the retry stores the email once', async () => {
    crashAt.set('crash before write', 'decided')
    const raw = rawMail({ subject: 'crash before write' })
    expect((await ingest(raw)).status).toBe(500)
    crashAt.delete('crash before write')
    const stored = () => t.app.database.db.select({ id: schema.inboundEmails.id }).from(schema.inboundEmails).where(eq(schema.inboundEmails.subject, 'crash before write'))
    expect(await stored()).toHaveLength(0)
    const retried = await ingest(raw)
    expect(retried.status).toBe(201)
    expect(await stored()).toHaveLength(1)
    expect((await eventsFor(retried.body.id)).map((event) => event.type)).toEqual(['work_item.requested'])
  })

  it('a bounce stored before a crash stays received; recovery records it on the sent message exactly once', async () => {
    const subject = 'Undeliverable: crash after store'
    const dsn = [
      'From: Mail Delivery System <MAILER-DAEMON@mx.fabrikam.example>',
      'To: support@contoso.example',
      `Subject: ${subject}`,
      'Auto-Submitted: auto-replied',
      'MIME-Version: 1.0',
      'Content-Type: multipart/report; report-type=delivery-status; boundary=r',
      '',
      '--r', 'Content-Type: text/plain', '', 'Your message could not be delivered.', '',
      '--r', 'Content-Type: message/delivery-status', '',
      'Reporting-MTA: dns; mx.fabrikam.example', '',
      'Final-Recipient: rfc822; customer@fabrikam.example', 'Action: failed', 'Status: 5.2.2', 'Diagnostic-Code: smtp; 552 mailbox full', '',
      '--r', 'Content-Type: text/rfc822-headers', '',
      `Message-ID: ${SENT_MESSAGE_ID}`, 'From: support@contoso.example', 'To: customer@fabrikam.example', 'Subject: Your printer', '',
      '--r--', '',
    ].join('\r\n')
    crashAt.set(subject, 'stored')
    expect((await ingest(dsn)).status).toBe(500)
    crashAt.delete(subject)
    const [stored] = await t.app.database.db.select().from(schema.inboundEmails).where(eq(schema.inboundEmails.subject, subject))
    expect(stored!.outcome).toBe('received')
    // Two instances recover at once: only one of them processes it.
    const finished = await Promise.all([t.app.inboundRecovery.runOnce({ olderThanMs: 0 }), t.app.inboundRecovery.runOnce({ olderThanMs: 0 })])
    expect(finished.reduce((a, b) => a + b, 0)).toBe(1)
    const email = (await call('GET', `/v1/inbound/${stored!.id}`)).body
    expect(email).toMatchObject({ outcome: 'unhandled', outcomeReason: 'automated', automated: { kind: 'bounce' } })
    expect((await eventsFor(stored!.id)).map((event) => event.type)).toEqual(['email.unhandled'])
    const message = (await call('GET', `/v1/messages/${world.sentMessageId}`)).body
    expect(message.status).toBe('bounced')
    expect(message.bounces.filter((bounce: { inboundEmailId: string }) => bounce.inboundEmailId === stored!.id)).toEqual([expect.objectContaining({ status: '5.2.2', recipient: 'customer@fabrikam.example' })])
    const bounced = await t.app.database.db.select({ payload: schema.domainEvents.payload }).from(schema.domainEvents).where(eq(schema.domainEvents.type, 'message.bounced'))
    expect(bounced.filter((event) => event.payload['inboundEmailId'] === stored!.id)).toHaveLength(1)
    expect(await t.app.inboundRecovery.runOnce({ olderThanMs: 0 })).toBe(0)
  })
})

describe('reading received mail', () => {
  it('counts emails by outcome in the metrics', async () => {
    const metrics = await t.app.inject({ method: 'GET', url: '/metrics', headers: bearer(t.adminKey) })
    const requested = Number(/mailgate_inbound_emails_total\{outcome="requested"\} (\d+)/.exec(metrics.body)?.[1])
    const stored = await t.app.database.db.select({ id: schema.inboundEmails.id }).from(schema.inboundEmails).where(eq(schema.inboundEmails.outcome, 'requested'))
    // Reprocessing and re-applying move some emails to requested without intake counting them again.
    expect(requested).toBeGreaterThan(0)
    expect(requested).toBeLessThanOrEqual(stored.length)
    expect(metrics.body).toMatch(/mailgate_inbound_emails_total\{outcome="duplicate"\} [1-9]/)
  })

  it('lists with filters and cursor pages, and GraphQL shows the same', async () => {
    const page1 = await call('GET', '/v1/inbound?limit=2', undefined, world.readKey)
    expect(page1.status).toBe(200)
    expect(page1.body.items).toHaveLength(2)
    const page2 = await call('GET', `/v1/inbound?limit=2&cursor=${page1.body.nextCursor}`, undefined, world.readKey)
    expect(page2.body.items[0].id < page1.body.items[1].id).toBe(true)
    expect(page1.body.items[0].headers).toBeUndefined()
    const unhandled = await call('GET', '/v1/inbound?outcome=unhandled', undefined, world.readKey)
    expect(unhandled.body.items.every((item: { outcome: string }) => item.outcome === 'unhandled')).toBe(true)
    const bad = await call('GET', '/v1/inbound?outcome=lost', undefined, world.readKey)
    expect(bad.status).toBe(400)
    const graphql = await t.app.inject({
      method: 'POST',
      url: '/graphql',
      headers: bearer(world.readKey),
      payload: { query: '{ inboundEmails(limit: 2) { items { id outcome steps { step result } } } }' },
    })
    expect(graphql.json().data.inboundEmails.items.map((item: { id: string }) => item.id)).toEqual(page1.body.items.map((item: { id: string }) => item.id))
  })
})
